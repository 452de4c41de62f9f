"""Checkerboard analysis: how much of the input reaches each output of an upsampling layer.

Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts" (Distill,
2016): a transposed convolution whose kernel size is not divisible by its
stride gives neighbouring outputs different numbers of contributions (uneven
overlap), a checkerboard pattern even in a trained network. Resize-then-conv
gives every output the same number.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_tconv import _checks
from jax_tconv._api import apply
from jax_tconv._resize import resize_conv
from jax_tconv._spec import transpose_spec
from jax_tconv.typing import IntOrSequence, Padding

__all__ = ["overlap_map"]

_KINDS = ("transpose", "resize")


def overlap_map(kernel_size: Sequence[int], strides: IntOrSequence, *,
                dilation: IntOrSequence = 1, padding: Padding = 0,
                output_padding: IntOrSequence = 0, input_shape: Sequence[int],
                kind: str = "transpose") -> np.ndarray:
    """Number of contributions to each output of a ConvTranspose or ResizeConv.

    A contribution is one (input element, kernel tap) pair. For the transposed
    convolution (``kind="transpose"``) an input element reaches an output through
    at most one tap, so the count is the number of input elements contributing
    to each output: ``conv_transpose`` of ones with a ones kernel, i.e. the
    number of ``(p, t)`` with ``p*s - lo + d*t == o`` per dimension. For
    ``kind="resize"`` it is the number of kernel taps of the
    nearest-resize-then-conv (`jax_tconv.nn.linen.ResizeConv`, same output size)
    that land inside the resized input; one input element may be read by
    several taps.

    Interior values that vary from output to output are the checkerboard: for
    k=3, s=2 they alternate 1, 2; for k=4, s=2 they are all 2; for ResizeConv
    all ``prod(kernel_size)``.

    Args:
      kernel_size: one int per spatial dimension (sets the rank).
      strides, dilation, padding, output_padding: as `jax_tconv.conv_transpose`.
      input_shape: the input's spatial sizes, one per dimension.
      kind: ``"transpose"`` (default) or ``"resize"``.

    Returns:
      An int64 NumPy array of the output's spatial shape.

    Example:
      >>> from jax_tconv.checkerboard import overlap_map
      >>> overlap_map((3,), 2, padding=1, output_padding=1, input_shape=(4,)).tolist()
      [1, 2, 1, 2, 1, 2, 1, 1]
      >>> overlap_map((4,), 2, padding=1, input_shape=(4,)).tolist()
      [1, 2, 2, 2, 2, 2, 2, 1]
    """
    fn = "overlap_map"
    if kind not in _KINDS:
        raise ValueError(f"{fn}: kind must be one of {_KINDS}, got {kind!r}.")
    k = _checks.kernel_size(fn, kernel_size)
    n = len(k)
    if not _checks.is_sequence(input_shape) or len(input_shape) != n:
        raise ValueError(
            f"{fn}: input_shape must hold {n} spatial sizes (len(kernel_size) = {n}), "
            f"got {input_shape!r}."
        )
    i = tuple(_checks.positive_int(fn, "input_shape", v) for v in input_shape)
    x = jnp.ones((1, *i, 1), jnp.float32)
    w = jnp.ones((*k, 1, 1), jnp.float32)
    spec = transpose_spec(fn, x, w, strides=strides, padding=padding,
                          output_padding=output_padding, output_shape=None, dilation=dilation,
                          groups=1, dimension_numbers=None, precision=lax.Precision.HIGHEST,
                          preferred_element_type=None)
    if kind == "transpose":
        y = apply("auto", x, w, spec)
    else:
        y = resize_conv(x, w, spec, resize_method="nearest")
    return np.rint(np.asarray(y[0, ..., 0])).astype(np.int64)
