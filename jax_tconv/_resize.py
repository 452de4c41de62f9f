"""Resize, then convolve: the checkerboard-free stand-in for a transposed convolution.

Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts" (Distill,
2016). The input ``(N, *i, C_in)`` is resized to ``i * s`` with
`jax.image.resize`, then convolved (stride 1, dilation d, groups) so that the
output has exactly the size ``o`` of the transposed convolution with the same
arguments. That needs a total padding of ``t = o - i*s + d*(k - 1)`` per
dimension: ``t // 2`` before and the rest after (lax's 'SAME' split; a
negative ``t`` crops). A padding mode other than 'zeros' fills that padding
from the resized input (PyTorch's ``Conv*d(padding_mode=)``); a crop stays a crop.
"""

from __future__ import annotations

import jax
from jax_tconv._padding_mode import pad
from jax_tconv._safe_conv import conv
from jax_tconv._spec import Pairs, Spec


def resize_geometry(spec: Spec) -> tuple[tuple[int, ...], Pairs]:
    """``(resized spatial size i*s, conv padding)`` for the transposed conv `spec`."""
    pads = []
    for oj, ij, sj, dj, kj in zip(spec.out_spatial, spec.in_spatial, spec.strides,
                                  spec.dilation, spec.kernel_size):
        t = oj - ij * sj + dj * (kj - 1)
        pads.append((t // 2, t - t // 2))
    return tuple(ij * sj for ij, sj in zip(spec.in_spatial, spec.strides)), tuple(pads)


def resize_conv(x: jax.Array, w: jax.Array, spec: Spec, *, resize_method,
                padding_mode: str = "zeros") -> jax.Array:
    """Resize-convolution of channels-last `x` to `spec`'s output size.

    `spec` is the matching transposed convolution's (default channels-last
    layout); `w` is an ordinary conv kernel ``(*k, C_in // groups, C_out)``;
    `padding_mode` fills the convolution's padding (checked by the caller).
    """
    size, pads = resize_geometry(spec)
    up = jax.image.resize(x, (x.shape[0], *size, x.shape[-1]), method=resize_method)
    n = spec.num_spatial
    if padding_mode != "zeros":   # filled by the mode (a negative amount crops)
        up = pad(up, spec.dn.lhs_spec[2:], pads, padding_mode)
        pads = ((0, 0),) * n
    return conv(up, w, (1,) * n, pads, rhs_dilation=spec.dilation, dimension_numbers=spec.dn,
                feature_group_count=spec.groups, precision=spec.precision)
