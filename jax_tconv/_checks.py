"""The argument checks every public entry point shares: one home per rule.

Each check takes the name of the function (or layer) the user called, so its
message says where the bad value went in, states the rule, shows the value,
and raises `TypeError` for a wrong kind of value and `ValueError` for a value
out of range. `_spec` builds the geometry on top of these (the padding, the
dimension numbers and the dtypes are parsed here); the layers, initializers and
pixel shuffle call them directly.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

#: The formulations `method=` accepts besides "auto" and "tune", in a stable order.
METHODS = ("vjp", "matmul", "dilated", "phase", "products")
#: Everything `method=` accepts: "auto" (a fixed rule per backend), "tune" (measured
#: once per configuration, then cached) and the formulations.
ACCEPTED_METHODS = ("auto", "tune", *METHODS)

Pairs = tuple[tuple[int, int], ...]


def as_int(fn: str, name: str, value: Any) -> int:
    """`value` as an int; bools (and NumPy bools) are refused, as in lax."""
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{fn}: {name} must be an int, got the bool {value!r}.")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{fn}: {name} must be an int, got {value!r} of type {type(value).__name__}."
        ) from None


def positive_int(fn: str, name: str, value: Any) -> int:
    v = as_int(fn, name, value)
    if v < 1:
        raise ValueError(f"{fn}: {name} must be >= 1, got {v}.")
    return v


def is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def ints(fn: str, name: str, value: Any, n: int | None, *, minimum: int) -> tuple[int, ...]:
    """An int (broadcast to `n` dimensions), or a sequence of `n` ints; each >= minimum.

    With ``n=None`` the rank is not known yet, so `value` must be a sequence
    (its length sets the rank).
    """
    if is_sequence(value):
        if n is not None and len(value) != n:
            raise ValueError(
                f"{fn}: {name} must be an int or a sequence of {n} ints (one per "
                f"spatial dimension), got {value!r} of length {len(value)}."
            )
        out = tuple(as_int(fn, name, v) for v in value)
    elif n is None:
        raise ValueError(
            f"{fn}: with an int {name}={value!r} the number of spatial dimensions is "
            f"unknown; pass one value per spatial dimension (a tuple)."
        )
    else:
        out = (as_int(fn, name, value),) * n
    if not out or any(v < minimum for v in out):
        raise ValueError(f"{fn}: {name} must be >= {minimum} in every dimension, got {value!r}.")
    return out


def kernel_size(fn: str, value: Any) -> tuple[int, ...]:
    """A layer's `kernel_size`: a non-empty sequence of positive ints (it sets the rank)."""
    if not is_sequence(value) or not value:
        raise TypeError(
            f"{fn}: kernel_size must be a non-empty sequence of ints, one per spatial "
            f"dimension (its length sets the rank: (3,) for 1-D, (3, 3) for 2-D), got "
            f"{value!r}."
        )
    return tuple(positive_int(fn, "kernel_size", k) for k in value)


def groups(fn: str, value: Any, channels: dict[str, int | None]) -> int:
    """`groups` >= 1, dividing every channel count given (None: not known yet)."""
    g = positive_int(fn, "groups", value)
    for what, c in channels.items():
        if c is not None and c % g:
            raise ValueError(
                f"{fn}: groups={g} must divide {what}, but {c} is not divisible by {g}."
            )
    return g


def method(fn: str, value: Any) -> str:
    """'auto', 'tune' or one of `METHODS`."""
    if not isinstance(value, str) or value not in ACCEPTED_METHODS:
        raise ValueError(
            f"{fn}: unknown method {value!r}; choose 'auto', 'tune' or one of "
            f"{', '.join(map(repr, METHODS))}."
        )
    return value


#: What `padding_mode=` accepts: PyTorch's names for the values beyond the border.
PADDING_MODES = ("zeros", "circular", "reflect", "replicate")
# Other libraries' names for the same modes, named in the error message.
_MODE_ALIASES = {"constant": "zeros", "zero": "zeros", "wrap": "circular",
                 "periodic": "circular", "edge": "replicate", "symmetric": None}


def padding_mode(fn: str, value: Any, *, any_case: bool = False) -> str:
    """One of `PADDING_MODES`, spelled as PyTorch spells it.

    With `any_case` (the Equinox front end, whose own layers take 'ZEROS',
    'CIRCULAR', ...) a name in any case is accepted and returned in lower case.
    """
    valid = ", ".join(map(repr, PADDING_MODES))
    if not isinstance(value, str):
        raise TypeError(
            f"{fn}: padding_mode must be a string, one of {valid}, got {value!r} of type "
            f"{type(value).__name__}."
        )
    if value in PADDING_MODES:
        return value
    if any_case and value.lower() in PADDING_MODES:
        return value.lower()
    names = ("in any case: PyTorch's names, Equinox's 'ZEROS', 'CIRCULAR', ..."
             if any_case else "PyTorch's names")
    hint = ""
    near = value.lower() if value.lower() in PADDING_MODES else _MODE_ALIASES.get(value.lower())
    if near is not None:
        hint = f" ({value!r} is {near!r} here)"
    elif value.lower() in _MODE_ALIASES:
        hint = f" (NumPy's {value!r}, which repeats the edge element, has no equivalent)"
    raise ValueError(f"{fn}: unknown padding_mode {value!r}; choose one of {valid} "
                     f"({names}){hint}.")


def mode_padding(fn: str, mode: str, pads: Sequence[tuple[int, int]], sizes: Sequence[int],
                 what: str) -> None:
    """PyTorch's rules for padding with values from the array itself (`F.pad`'s).

    'reflect' mirrors without repeating the edge, so each side pads less than the
    size it pads; 'circular' wraps around once, so at most that size; 'replicate'
    any amount. A negative amount crops (as in lax) and is not limited. `what`
    names the padded array in the message (e.g. "the input").
    """
    if mode == "zeros":
        return
    for j, ((lo, hi), size) in enumerate(zip(pads, sizes)):
        if mode == "reflect" and max(lo, hi) >= size:
            rule = "< the size it pads"
        elif mode == "circular" and max(lo, hi) > size:
            rule = "<= the size it pads (one wrap-around)"
        else:
            continue
        raise ValueError(
            f"{fn}: padding_mode={mode!r} needs each padding {rule}, as PyTorch's F.pad; got "
            f"padding {(lo, hi)} in spatial dimension {j}, where {what} has size {size}. "
            f"Reduce the padding, or use padding_mode='replicate' (any padding)."
        )


def default_dimension_numbers(num_spatial: int) -> tuple[str, str, str]:
    """Channels-last specs for `num_spatial` dims: ('NHWC', 'HWIO', 'NHWC') in 2-D."""
    if num_spatial <= 3:
        sp = "DHW"[3 - num_spatial :]
    else:  # lax accepts any distinct letters; keep them readable.
        sp = "".join(chr(ord("a") + j) for j in range(num_spatial))
    return (f"N{sp}C", f"{sp}IO", f"N{sp}C")


# ----------------------------------------------------------------------------
# Validators of the arguments `_spec` parses (padding, layouts, dtypes). Each raises one
# message naming the function and argument.


def pairs(pads) -> Pairs:
    """lax's padding lists as a hashable tuple of ``(lo, hi)`` int pairs."""
    return tuple((int(lo), int(hi)) for lo, hi in pads)


def padding_pairs(fn: str, padding: Any, n: int, *, negative_ok: bool = False) -> Pairs | str:
    """'SAME'/'VALID' (upper-cased), or one (lo, hi) per dimension (>= 0 unless negative_ok)."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode not in ("SAME", "VALID"):
            raise ValueError(
                f"{fn}: padding string must be 'SAME' or 'VALID' (any case, as in lax), "
                f"got {padding!r}."
            )
        return mode
    if isinstance(padding, Sequence):
        if len(padding) != n:
            raise ValueError(
                f"{fn}: padding must be an int, 'SAME', 'VALID', or a sequence of {n} "
                f"ints or (lo, hi) pairs (one per spatial dimension), got {padding!r}."
            )
        pairs = []
        for p in padding:
            if isinstance(p, Sequence) and not isinstance(p, str):
                if len(p) != 2:
                    raise ValueError(
                        f"{fn}: each padding pair must be (lo, hi), got {p!r} in {padding!r}."
                    )
                pairs.append((as_int(fn, "padding", p[0]),
                              as_int(fn, "padding", p[1])))
            else:
                v = as_int(fn, "padding", p)
                pairs.append((v, v))
        out = tuple(pairs)
    else:
        v = as_int(fn, "padding", padding)
        out = ((v, v),) * n
    if not negative_ok and any(v < 0 for pair in out for v in pair):
        raise ValueError(f"{fn}: padding must be >= 0, got {padding!r}.")
    return out


def dimension_numbers(fn: str, dimension_numbers: Any, x_ndim: int, w_ndim: int):
    if x_ndim != w_ndim:
        raise ValueError(
            f"{fn}: x must have w's rank (batch + channel + spatial dims) or one axis "
            f"fewer (no batch axis, PyTorch's rule), got x.ndim={x_ndim} and "
            f"w.ndim={w_ndim}; w's rank sets the number of spatial dimensions "
            f"(w.ndim - 2)."
        )
    if x_ndim < 3:
        raise ValueError(
            f"{fn}: x must have rank >= 3 (batch, channels and at least one spatial "
            f"dimension), got rank {x_ndim}; add a batch axis with x[None] if needed."
        )
    if dimension_numbers is None:
        dimension_numbers = default_dimension_numbers(x_ndim - 2)
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        specs = tuple(dimension_numbers)
        if not all(sorted(s) == list(range(x_ndim)) for s in specs):
            raise ValueError(
                f"{fn}: dimension_numbers {dimension_numbers!r} must hold three "
                f"permutations of range({x_ndim})."
            )
        return dimension_numbers
    if (
        not isinstance(dimension_numbers, Sequence)
        or len(dimension_numbers) != 3
        or not all(isinstance(s, str) for s in dimension_numbers)
    ):
        raise TypeError(
            f"{fn}: dimension_numbers must be None, a lax.ConvDimensionNumbers, or a "
            f"tuple of three strings such as ('NHWC', 'HWIO', 'NHWC'), got {dimension_numbers!r}."
        )
    lhs, rhs, out = dimension_numbers
    ok = (
        all(len(s) == x_ndim for s in dimension_numbers)
        and len(set(lhs)) == len(lhs)
        and set(lhs) == set(out)
        and "N" in lhs and "C" in lhs
        and len(set(rhs)) == len(rhs)
        and "O" in rhs and "I" in rhs
        and set(rhs) - {"O", "I"} == set(lhs) - {"N", "C"}
    )
    if not ok:
        raise ValueError(
            f"{fn}: malformed dimension_numbers {tuple(dimension_numbers)!r} for rank-{x_ndim} "
            f"arrays. Rule: three strings of length {x_ndim}; the input and output specs "
            f"use 'N', 'C' and one letter per spatial dimension, the kernel spec 'O', 'I' "
            f"and the same spatial letters, e.g. {default_dimension_numbers(x_ndim - 2)!r}."
        )
    return lax.conv_dimension_numbers((0,) * x_ndim, (0,) * x_ndim, tuple(dimension_numbers))


def _kind(dtype) -> str | None:
    """'inexact' (floating point or complex), 'integer', or None (bool and the rest)."""
    if jnp.issubdtype(dtype, jnp.inexact):
        return "inexact"
    if jnp.issubdtype(dtype, jnp.integer):
        return "integer"
    return None


def dtypes(fn: str, x, w) -> None:
    """x and w: one dtype, floating point, complex or integer (lax's rule; no silent promotion)."""
    both = f"x.dtype={x.dtype} and w.dtype={w.dtype}"
    kinds = (_kind(x.dtype), _kind(w.dtype))
    if None in kinds:
        raise TypeError(
            f"{fn}: x and w must be floating point, complex or integer, got {both}; cast "
            f"a bool array to an integer or float dtype, e.g. x.astype(jnp.int8) or "
            f"x.astype(jnp.float32)."
        )
    if kinds[0] != kinds[1]:
        name = "x" if kinds[0] == "integer" else "w"
        raise TypeError(
            f"{fn}: x and w must both be floating point (or complex) or both integers, got "
            f"{both}; cast the integer one to a float dtype, e.g. {name}.astype(jnp.float32), "
            f"or quantize the float one (docs/quantized.md)."
        )
    if x.dtype != w.dtype:
        common = jnp.promote_types(x.dtype, w.dtype).name
        raise TypeError(
            f"{fn}: x and w must have the same dtype, got {both}; cast both to one, e.g. "
            f"x.astype(jnp.{common}) and w.astype(jnp.{common}). Use preferred_element_type "
            f"to choose the accumulation/output dtype."
        )


def preferred_element_type(fn: str, preferred_element_type, dtype) -> Any:
    """The accumulation and output dtype: `preferred_element_type` checked, or its default.

    Floating and complex operands: lax's rule, the same kind as x and at least as
    wide (default None: x's dtype). Integer operands: an integer dtype of at least
    32 bits, the sum of products (default int32, or x's dtype when wider), so that
    an int8 convolution returns int32 as `lax.conv_general_dilated` does with
    ``preferred_element_type=jnp.int32``; a float accumulator is refused (lax
    allows it, but rounds the integer sums above 2**24 in float32).
    """
    integer = jnp.issubdtype(dtype, jnp.integer)
    if preferred_element_type is None:
        return (jnp.dtype(jnp.int32) if dtype.itemsize < 4 else None) if integer else None
    try:
        pet = jnp.dtype(preferred_element_type)
    except TypeError:
        pet = None
    if integer:
        if pet is None or not jnp.issubdtype(pet, jnp.integer) or pet.itemsize < max(
                4, dtype.itemsize):
            raise TypeError(
                f"{fn}: with integer operands ({dtype}) preferred_element_type must be an "
                f"integer dtype of at least 32 bits (it sets the accumulation and output "
                f"dtype), got {preferred_element_type!r}; leave it None for int32, and "
                f"convert the integer result (y.astype(jnp.float32)) for a float one."
            )
        return pet
    kind = jnp.complexfloating if jnp.issubdtype(dtype, jnp.complexfloating) else jnp.floating
    if pet is None or not jnp.issubdtype(pet, kind) or pet.itemsize < dtype.itemsize:
        raise TypeError(
            f"{fn}: preferred_element_type must be a {kind.__name__} dtype at least as wide "
            f"as x's {dtype} (it sets the accumulation and output dtype), got "
            f"{preferred_element_type!r}."
        )
    return preferred_element_type


def layout_hint(dimension_numbers, n: int, *, transpose: bool) -> str:
    """How to fix a channel mismatch that comes from a layout mix-up."""
    if n > 3:
        return " Check w's layout against dimension_numbers."
    sp = "DHW"[3 - n:]
    torch_dn = (f"NC{sp}", f"OI{sp}", f"NC{sp}")
    given = (f"dimension_numbers={tuple(dimension_numbers)!r}" if dimension_numbers is not None
             else f"the default layout {default_dimension_numbers(n)!r}")
    what = "ConvTranspose" if transpose else "Conv"
    hint = (f" The arrays were read with {given}. If x is channels-first (PyTorch's layout) "
            f"and w a PyTorch {what}{n}d weight, pass dimension_numbers={torch_dn!r}")
    if transpose:
        hint += ("; for channels-last x, convert a PyTorch weight with "
                 "jax_tconv.interop.from_torch(weight, bias)['kernel']")
    return hint + "."
