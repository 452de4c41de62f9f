"""Type aliases of jax_tconv's public signatures, in the spirit of `jax.typing`.

They document what each argument accepts and let a type checker hold callers
to it; nothing here is checked at run time (`jax_tconv`'s own validation does
that, with messages that name the argument).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import jax
from jax import lax

#: Anything `jax.numpy.asarray` takes: a JAX or NumPy array, a Python scalar.
ArrayLike: TypeAlias = jax.typing.ArrayLike
#: A dtype, or anything `jax.numpy.dtype` takes (``jnp.float32``, ``"bfloat16"``).
DTypeLike: TypeAlias = jax.typing.DTypeLike
#: One int for every spatial dimension, or one int per spatial dimension.
IntOrSequence: TypeAlias = int | Sequence[int]
#: ``'SAME'`` or ``'VALID'`` (any case, as in lax), an int, one int per spatial
#: dimension, or one ``(lo, hi)`` pair per spatial dimension.
Padding: TypeAlias = str | int | Sequence[int] | Sequence[tuple[int, int]]
#: None (channels-last by rank), a ``lax.ConvDimensionNumbers``, or three spec
#: strings such as ``('NCHW', 'OIHW', 'NCHW')``.
DimensionNumbers: TypeAlias = lax.ConvDimensionNumbers | tuple[str, str, str] | None
#: What lax's ``precision=`` takes: None, a ``lax.Precision`` or its name, or a pair.
Precision: TypeAlias = (
    str | lax.Precision | tuple[str, str] | tuple[lax.Precision, lax.Precision] | None
)
#: A Flax/JAX initializer, ``init(key, shape, dtype) -> array``.
Initializer: TypeAlias = Callable[..., Any]

__all__ = [
    "ArrayLike",
    "DTypeLike",
    "DimensionNumbers",
    "Initializer",
    "IntOrSequence",
    "Padding",
    "Precision",
]
