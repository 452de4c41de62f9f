"""The forward convolution `C`, whose transpose this library computes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax_tconv import _safe_conv
from jax_tconv._padding_mode import pad
from jax_tconv._spec import ConvSpec, conv_spec
from jax_tconv._unbatched import batched
from jax_tconv.typing import (
    ArrayLike,
    DimensionNumbers,
    DTypeLike,
    IntOrSequence,
    Padding,
    Precision,
)


def conv(x: ArrayLike, w: ArrayLike, *, strides: IntOrSequence = 1, padding: Padding = 0,
         padding_mode: str = "zeros", dilation: IntOrSequence = 1, groups: int = 1,
         dimension_numbers: DimensionNumbers = None, precision: Precision = None,
         preferred_element_type: DTypeLike | None = None) -> jax.Array:
    """The forward convolution `C` that `conv_transpose` transposes.

    A thin, validated front end to `lax.conv_general_dilated` with the argument
    conventions of `conv_transpose`: PyTorch-style integer padding, ``groups``,
    and channels-last defaults chosen by rank.

    Args:
      x: input, ``(N, *spatial, C_in)`` by default.
      w: kernel, ``(*k, C_in // groups, C_out)`` by default (kernel spec ``...IO``).
      strides, dilation: an int or one int per spatial dimension.
      padding: an int, one int per spatial dimension, one ``(lo, hi)`` pair per
        spatial dimension, ``'VALID'`` or ``'SAME'`` (lax's SAME; any case).
      padding_mode: what the padding holds, as PyTorch's ``Conv*d(padding_mode=)``:
        ``"zeros"``, or values of `x`: ``"circular"`` (wrapped around; padding
        <= size), ``"reflect"`` (mirrored, edge not repeated; padding < size),
        ``"replicate"`` (the edge repeated). The convolution is then that of
        ``F.pad(x, padding, mode)`` without padding; SAME's padding amounts are
        lax's, filled by the mode; a negative amount crops, as in lax, after the
        other side is filled from the whole input.
      groups: feature groups; divides ``C_in`` and ``C_out``.
      dimension_numbers: as in `lax.conv_general_dilated`; default channels-last.
      precision, preferred_element_type: passed to lax. Integer x and w (int8,
        uint8, int16, int32: one dtype) accumulate exactly in an integer
        `preferred_element_type` of at least 32 bits, int32 by default, so an
        int8 call returns int32 (docs/quantized.md).

    Returns:
      ``(N, *out_spatial, C_out)`` by default, with
      ``out = floor((size + lo + hi - d*(k - 1) - 1) / s) + 1``.

    Example:
      >>> import jax.numpy as jnp, jax_tconv
      >>> jax_tconv.conv(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1))).shape
      (1, 2, 2, 1)
      >>> x = jnp.arange(4.0).reshape(1, 4, 1)
      >>> jax_tconv.conv(x, jnp.ones((3, 1, 1)), padding=1, padding_mode="circular")[0, :, 0]
      Array([4., 3., 6., 5.], dtype=float32)
    """
    x, w = jnp.asarray(x), jnp.asarray(w)
    b = batched("conv", x, w, dimension_numbers, transposed=False)
    spec = conv_spec("conv", b.x, w, strides=strides, padding=padding, dilation=dilation,
                     groups=groups, dimension_numbers=dimension_numbers, precision=precision,
                     preferred_element_type=preferred_element_type, padding_mode=padding_mode)
    return b.result(apply_conv(b.x, w, spec))


def apply_conv(x: jax.Array, w: jax.Array, spec: ConvSpec) -> jax.Array:
    """The convolution `spec` describes; a padding mode pads `x` first, then none."""
    padding = spec.padding
    if spec.padding_mode != "zeros":
        x = pad(x, spec.dn.lhs_spec[2:], padding, spec.padding_mode)
        padding = ((0, 0),) * len(padding)
    return _safe_conv.conv(
        x, w, spec.strides, padding, rhs_dilation=spec.dilation,
        dimension_numbers=spec.dn, feature_group_count=spec.groups,
        precision=spec.precision, preferred_element_type=spec.preferred_element_type)
