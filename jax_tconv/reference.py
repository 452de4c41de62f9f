"""The textbook definition, in NumPy: every input element scatters value x kernel.

Deliberately independent of JAX and of the rest of jax_tconv (no lax, no
output-size formula shared with `_spec`): it is what the tests and the
self-check (`python -m jax_tconv`) measure every formulation against.
"""

from __future__ import annotations

import itertools

import numpy as np


def conv_transpose_reference(x, w, *, strides, padding, output_padding, dilation, groups=1):
    """Transposed convolution by explicit scatter, channels-first, in float64/complex128.

    Args:
      x: ``(N, C_in, *i)``.
      w: PyTorch's ``ConvTranspose`` layout ``(C_in, C_out // groups, *k)``.
      strides, dilation, output_padding: one int per spatial dimension.
      padding: one ``(lo, hi)`` pair per spatial dimension (the forward conv's).
      groups: channel groups.

    Returns:
      ``(N, C_out, *o)``: input element ``x[n, c, p]`` adds ``x[n, c, p] * w[c, :, t]``
      to position ``p*s + t*d`` of an uncropped output, which is then cropped
      by ``lo`` below and ``hi - output_padding`` above.
    """
    x, w = np.asarray(x), np.asarray(w)
    dtype = np.complex128 if np.iscomplexobj(x) or np.iscomplexobj(w) else np.float64
    x, w = x.astype(dtype), w.astype(dtype)
    n, c_in, *i = x.shape
    _, c_out_g, *k = w.shape
    c_in_g = c_in // groups
    full = [(ij - 1) * s + d * (kj - 1) + 1 for ij, kj, s, d in zip(i, k, strides, dilation)]
    y = np.zeros((n, c_out_g * groups, *full), dtype)
    for g in range(groups):
        xg = x[:, g * c_in_g:(g + 1) * c_in_g]
        wg = w[g * c_in_g:(g + 1) * c_in_g]
        yg = y[:, g * c_out_g:(g + 1) * c_out_g]
        for p in itertools.product(*map(range, i)):
            value = xg[(slice(None), slice(None), *p)]           # (N, C_in_g)
            for t in itertools.product(*map(range, k)):
                at = tuple(pj * s + tj * d for pj, tj, s, d in zip(p, t, strides, dilation))
                yg[(slice(None), slice(None), *at)] += value @ wg[(slice(None), slice(None), *t)]
    # Crop: lo below, hi - output_padding above (a negative crop extends with zeros).
    out = y
    for axis, ((lo, hi), op) in enumerate(zip(padding, output_padding), start=2):
        size = out.shape[axis] - lo - hi + op
        if size < 1:
            raise ValueError(f"reference: output size {size} < 1 in axis {axis}")
        if out.shape[axis] < lo + size:  # extend with zeros at the high end
            extra = [(0, 0)] * out.ndim
            extra[axis] = (0, lo + size - out.shape[axis])
            out = np.pad(out, extra)
        out = np.take(out, np.arange(lo, lo + size), axis=axis)
    return out
