"""One public function per formulation: `conv_transpose` with `method` fixed.

Each has `conv_transpose`'s contract and arguments (less `method`); errors
name the function called.
"""

from __future__ import annotations

import jax

from jax_tconv._api import transpose
from jax_tconv.typing import (
    ArrayLike,
    DimensionNumbers,
    DTypeLike,
    IntOrSequence,
    Padding,
    Precision,
)


def conv_transpose_vjp(x: ArrayLike, w: ArrayLike, *, strides: IntOrSequence = 1,
                       padding: Padding = 0, padding_mode: str = "zeros",
                       output_padding: IntOrSequence = 0,
                       output_shape: tuple[int, ...] | None = None,
                       dilation: IntOrSequence = 1, groups: int = 1,
                       dimension_numbers: DimensionNumbers = None, precision: Precision = None,
                       preferred_element_type: DTypeLike | None = None) -> jax.Array:
    """Transposed convolution as `jax.vjp` of `conv` with respect to its input.

    With a padding mode other than 'zeros', `jax.vjp` of the padding (``jnp.pad``)
    after the transposed conv of the uncropped output: the chain rule of
    ``conv_valid ∘ pad``.

    Same contract as `conv_transpose` with ``method='vjp'``.
    """
    return transpose("conv_transpose_vjp", "vjp", x, w, strides=strides, padding=padding,
                     padding_mode=padding_mode, output_padding=output_padding,
                     output_shape=output_shape, dilation=dilation, groups=groups,
                     dimension_numbers=dimension_numbers, precision=precision,
                     preferred_element_type=preferred_element_type)


def conv_transpose_matmul(x: ArrayLike, w: ArrayLike, *, strides: IntOrSequence = 1,
                          padding: Padding = 0, padding_mode: str = "zeros",
                          output_padding: IntOrSequence = 0,
                          output_shape: tuple[int, ...] | None = None,
                          dilation: IntOrSequence = 1, groups: int = 1,
                          dimension_numbers: DimensionNumbers = None, precision: Precision = None,
                          preferred_element_type: DTypeLike | None = None) -> jax.Array:
    """Transposed convolution as ``Cᵀ @ vec(x)`` with the dense `conv_matrix` C.

    Builds C per example (refusing, with a ValueError, above `MATMUL_MAX_BYTES`).
    Every output is a sum over *all* inputs, so one NaN or Inf input makes every
    output of its example NaN (0 * NaN), unlike the convolution methods. A
    padding mode other than 'zeros' is built into C (several taps of a row may
    read one column).

    Same contract as `conv_transpose` with ``method='matmul'``.
    """
    return transpose("conv_transpose_matmul", "matmul", x, w, strides=strides, padding=padding,
                     padding_mode=padding_mode, output_padding=output_padding,
                     output_shape=output_shape, dilation=dilation, groups=groups,
                     dimension_numbers=dimension_numbers, precision=precision,
                     preferred_element_type=preferred_element_type)


def conv_transpose_dilated(x: ArrayLike, w: ArrayLike, *, strides: IntOrSequence = 1,
                           padding: Padding = 0, padding_mode: str = "zeros",
                           output_padding: IntOrSequence = 0,
                           output_shape: tuple[int, ...] | None = None,
                           dilation: IntOrSequence = 1, groups: int = 1,
                           dimension_numbers: DimensionNumbers = None, precision: Precision = None,
                           preferred_element_type: DTypeLike | None = None) -> jax.Array:
    """Transposed convolution as a stride-1 conv of the zero-dilated input with the flipped kernel.

    With a padding mode other than 'zeros', onto the uncropped output, whose
    border is then folded back in (the padding's adjoint).

    Same contract as `conv_transpose` with ``method='dilated'``.
    """
    return transpose("conv_transpose_dilated", "dilated", x, w, strides=strides, padding=padding,
                     padding_mode=padding_mode, output_padding=output_padding,
                     output_shape=output_shape, dilation=dilation, groups=groups,
                     dimension_numbers=dimension_numbers, precision=precision,
                     preferred_element_type=preferred_element_type)


def conv_transpose_phase(x: ArrayLike, w: ArrayLike, *, strides: IntOrSequence = 1,
                         padding: Padding = 0, padding_mode: str = "zeros",
                         output_padding: IntOrSequence = 0,
                         output_shape: tuple[int, ...] | None = None,
                         dilation: IntOrSequence = 1, groups: int = 1,
                         dimension_numbers: DimensionNumbers = None, precision: Precision = None,
                         preferred_element_type: DTypeLike | None = None) -> jax.Array:
    """Transposed convolution by phase (sub-pixel) decomposition.

    Stride-1 convs of the undilated input with the ``s**n`` sub-kernels,
    interleaved; no multiply by an inserted zero. With a padding mode other
    than 'zeros', onto the uncropped output, whose border is then folded back in.

    Same contract as `conv_transpose` with ``method='phase'``.
    """
    return transpose("conv_transpose_phase", "phase", x, w, strides=strides, padding=padding,
                     padding_mode=padding_mode, output_padding=output_padding,
                     output_shape=output_shape, dilation=dilation, groups=groups,
                     dimension_numbers=dimension_numbers, precision=precision,
                     preferred_element_type=preferred_element_type)
