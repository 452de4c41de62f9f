"""The textbook definition, in NumPy: every input element scatters value x kernel.

Deliberately independent of JAX and of the rest of jax_tconv (no lax, no
output-size formula shared with `_spec`): it is what the tests and the
self-check (``python -m jax_tconv``) measure every formulation against.

Layout: channels first, ``x: (N, C_in, *i)``, ``w`` in PyTorch's
``ConvTranspose`` layout ``(C_in, C_out // groups, *k)``; ``padding`` is one
``(lo, hi)`` pair per spatial dimension (the forward conv's padding).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from jax_tconv.typing import ArrayLike


def _pairs(x_shape, w_shape, strides, dilation, groups):
    """Yield (group slices, input position p, tap t, uncropped output position p*s + t*d)."""
    _, c_in, *i = x_shape
    _, c_out_g, *k = w_shape
    c_in_g = c_in // groups
    for g in range(groups):
        cin = slice(g * c_in_g, (g + 1) * c_in_g)
        cout = slice(g * c_out_g, (g + 1) * c_out_g)
        for p in itertools.product(*map(range, i)):
            for t in itertools.product(*map(range, k)):
                at = tuple(pj * s + tj * d for pj, tj, s, d in zip(p, t, strides, dilation))
                yield cin, cout, p, t, at


def _window(full_shape, padding, output_padding):
    """Slices of the uncropped output that form the output, and the zero-extension needed."""
    crop, extend = [], []
    for size, (lo, hi), op in zip(full_shape, padding, output_padding):
        o = size - lo - hi + op
        if o < 1:
            raise ValueError(f"reference: output size {o} < 1")
        crop.append(slice(lo, lo + o))
        extend.append((0, max(0, lo + o - size)))
    return crop, extend


def _setup(x, w, strides, dilation) -> tuple[np.ndarray, np.ndarray, type, list[int]]:
    x, w = np.asarray(x), np.asarray(w)
    dtype = np.complex128 if np.iscomplexobj(x) or np.iscomplexobj(w) else np.float64
    n, _, *i = x.shape
    _, c_out_g, *k = w.shape
    full = [(ij - 1) * s + d * (kj - 1) + 1 for ij, kj, s, d in zip(i, k, strides, dilation)]
    return x.astype(dtype), w.astype(dtype), dtype, full


def conv_transpose_reference(x: ArrayLike, w: ArrayLike, *, strides: Sequence[int],
                             padding: Sequence[tuple[int, int]], output_padding: Sequence[int],
                             dilation: Sequence[int], groups: int = 1) -> np.ndarray:
    """Transposed convolution by explicit scatter, in float64 (or complex128).

    Input element ``x[n, c, p]`` adds ``x[n, c, p] * w[c, :, t]`` to position
    ``p*s + t*d`` of an uncropped output of size ``(i - 1)*s + d*(k - 1) + 1``,
    which is then cropped by ``lo`` below and ``hi - output_padding`` above.

    Returns:
      ``(N, C_out, *o)``.
    """
    x, w, dtype, full = _setup(x, w, strides, dilation)
    n, c_out = x.shape[0], w.shape[1] * groups
    y = np.zeros((n, c_out, *full), dtype)
    for cin, cout, p, t, at in _pairs(x.shape, w.shape, strides, dilation, groups):
        y[(slice(None), cout, *at)] += x[(slice(None), cin, *p)] @ w[(cin, slice(None), *t)]
    crop, extend = _window(full, padding, output_padding)
    y = np.pad(y, [(0, 0), (0, 0), *extend])
    return y[(slice(None), slice(None), *crop)]


def conv_transpose_reference_vjp(x: ArrayLike, w: ArrayLike, g: ArrayLike, *,
                                 strides: Sequence[int], padding: Sequence[tuple[int, int]],
                                 output_padding: Sequence[int], dilation: Sequence[int],
                                 groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``sum(g * conv_transpose(x, w))`` with respect to x and w, by gather.

    The scatter is linear in each argument; its adjoint gathers the cotangent
    `g` (zero-filled back into the uncropped output) at the same positions.

    Returns:
      ``(dx, dw)`` shaped like ``x`` and ``w``.
    """
    x, w, dtype, full = _setup(x, w, strides, dilation)
    crop, _ = _window(full, padding, output_padding)
    g = np.asarray(g)
    g_full = np.zeros((*g.shape[:2], *(max(f, c.stop) for f, c in zip(full, crop))), dtype)
    g_full[(slice(None), slice(None), *crop)] = np.asarray(g)
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for cin, cout, p, t, at in _pairs(x.shape, w.shape, strides, dilation, groups):
        gv = g_full[(slice(None), cout, *at)]                   # (N, C_out_g)
        dx[(slice(None), cin, *p)] += gv @ w[(cin, slice(None), *t)].T
        dw[(cin, slice(None), *t)] += x[(slice(None), cin, *p)].T @ gv
    return dx, dw
