"""The forward convolution `C`, whose transpose this library computes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jax_tconv._spec import ConvSpec, conv_spec
from jax_tconv.typing import (
    ArrayLike,
    DimensionNumbers,
    DTypeLike,
    IntOrSequence,
    Padding,
    Precision,
)


def conv(x: ArrayLike, w: ArrayLike, *, strides: IntOrSequence = 1, padding: Padding = 0,
         dilation: IntOrSequence = 1, groups: int = 1,
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
      groups: feature groups; divides ``C_in`` and ``C_out``.
      dimension_numbers: as in `lax.conv_general_dilated`; default channels-last.
      precision, preferred_element_type: passed to lax.

    Returns:
      ``(N, *out_spatial, C_out)`` by default, with
      ``out = floor((size + lo + hi - d*(k - 1) - 1) / s) + 1``.

    Example:
      >>> import jax.numpy as jnp, jax_tconv
      >>> jax_tconv.conv(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1))).shape
      (1, 2, 2, 1)
    """
    x, w = jnp.asarray(x), jnp.asarray(w)
    spec = conv_spec("conv", x, w, strides=strides, padding=padding, dilation=dilation,
                     groups=groups, dimension_numbers=dimension_numbers, precision=precision,
                     preferred_element_type=preferred_element_type)
    return apply_conv(x, w, spec)


def apply_conv(x: jax.Array, w: jax.Array, spec: ConvSpec) -> jax.Array:
    return lax.conv_general_dilated(
        x, w, spec.strides, spec.padding, rhs_dilation=spec.dilation,
        dimension_numbers=spec.dn, feature_group_count=spec.groups,
        precision=spec.precision, preferred_element_type=spec.preferred_element_type)
