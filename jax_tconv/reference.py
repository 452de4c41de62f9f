"""The textbook definition, in NumPy: every input element scatters value x kernel.

Deliberately independent of JAX and of the rest of jax_tconv (no lax, no
output-size formula shared with `_spec`): it is what the tests and the
self-check (``python -m jax_tconv``) measure every formulation against.

Layout: channels first, ``x: (N, C_in, *i)``, ``w`` in PyTorch's
``ConvTranspose`` layout ``(C_in, C_out // groups, *k)``; ``padding`` is one
``(lo, hi)`` pair per spatial dimension (the forward conv's padding).

Padding modes: the uncropped output's position ``q`` is position ``p = q - lo``
of the forward conv's padded input. With ``padding_mode='zeros'`` the
positions outside ``[0, o)`` are dropped (cropped); otherwise each adds its
value to the input position the padding copied into it (`_source`: wrapped,
mirrored or clamped), which is the padding's adjoint by definition.
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


_MODES = ("zeros", "circular", "reflect", "replicate")


def _source(p: int, o: int, mode: str, fn: str) -> int | None:
    """The position of the size-`o` input that padded position `p` holds (None: a zero)."""
    if 0 <= p < o:
        return p
    if mode == "circular":
        src = p + o if p < 0 else p - o
    elif mode == "reflect":
        src = -p if p < 0 else 2 * (o - 1) - p
    elif mode == "replicate":
        src = 0 if p < 0 else o - 1
    else:
        return None
    if not 0 <= src < o:
        raise ValueError(f"{fn}: padding_mode={mode!r} cannot fill position {p} from "
                         f"a size-{o} input (PyTorch's F.pad rule)")
    return src


def _folds(full_shape, padding, output_padding, padding_mode, fn,
           dtype=np.float64) -> list[np.ndarray]:
    """Per spatial dimension the 0/1 matrix ``M (o, full)``: output = M @ uncropped output."""
    if padding_mode not in _MODES:
        raise ValueError(f"{fn}: padding_mode must be one of {_MODES}, got {padding_mode!r}")
    mats = []
    for size, (lo, hi), op in zip(full_shape, padding, output_padding):
        o = size - lo - hi + op
        if o < 1:
            raise ValueError(f"{fn}: the output size {o} is < 1; reduce padding or add "
                             f"output_padding")
        m = np.zeros((o, size), dtype)
        for q in range(size):
            src = _source(q - lo, o, padding_mode, fn)
            if src is not None:
                m[src, q] += 1
        mats.append(m)
    return mats


def _along(a: np.ndarray, mats) -> np.ndarray:
    """Apply ``mats[j]`` along spatial axis ``2 + j`` of ``a (N, C, *spatial)``."""
    for j, m in enumerate(mats):
        a = np.moveaxis(np.tensordot(m, a, axes=([1], [2 + j])), 0, 2 + j)
    return a


def _setup(x, w, strides, dilation) -> tuple[np.ndarray, np.ndarray, type, list[int]]:
    x, w = np.asarray(x), np.asarray(w)
    if np.issubdtype(x.dtype, np.integer) and np.issubdtype(w.dtype, np.integer):
        dtype: type = np.int64   # exact: every sum of integer products
    else:
        dtype = np.complex128 if np.iscomplexobj(x) or np.iscomplexobj(w) else np.float64
    n, _, *i = x.shape
    _, c_out_g, *k = w.shape
    full = [(ij - 1) * s + d * (kj - 1) + 1 for ij, kj, s, d in zip(i, k, strides, dilation)]
    return x.astype(dtype), w.astype(dtype), dtype, full


def conv_transpose_reference(x: ArrayLike, w: ArrayLike, *, strides: Sequence[int],
                             padding: Sequence[tuple[int, int]], output_padding: Sequence[int],
                             dilation: Sequence[int], groups: int = 1,
                             padding_mode: str = "zeros") -> np.ndarray:
    """Transposed convolution by explicit scatter, in float64 (complex128; int64 for integers).

    Input element ``x[n, c, p]`` adds ``x[n, c, p] * w[c, :, t]`` to position
    ``p*s + t*d`` of an uncropped output of size ``(i - 1)*s + d*(k - 1) + 1``,
    which is then cropped by ``lo`` below and ``hi - output_padding`` above
    (zero-extended where that is negative); with a `padding_mode` other than
    'zeros' the border beyond the crop is added onto the positions it was
    padded from instead of dropped.

    Returns:
      ``(N, C_out, *o)``.
    """
    x, w, dtype, full = _setup(x, w, strides, dilation)
    n, c_out = x.shape[0], w.shape[1] * groups
    y: np.ndarray = np.zeros((n, c_out, *full), dtype)
    for cin, cout, p, t, at in _pairs(x.shape, w.shape, strides, dilation, groups):
        y[(slice(None), cout, *at)] += x[(slice(None), cin, *p)] @ w[(cin, slice(None), *t)]
    return _along(y, _folds(full, padding, output_padding, padding_mode,
                            "conv_transpose_reference", dtype))


def conv_transpose_reference_vjp(x: ArrayLike, w: ArrayLike, g: ArrayLike, *,
                                 strides: Sequence[int], padding: Sequence[tuple[int, int]],
                                 output_padding: Sequence[int], dilation: Sequence[int],
                                 groups: int = 1, padding_mode: str = "zeros",
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``sum(g * conv_transpose(x, w))`` with respect to x and w, by gather.

    The scatter is linear in each argument; its adjoint gathers the cotangent
    `g`, carried back to the uncropped output (zero-filled beyond the crop, or
    padded by `padding_mode`), at the same positions.

    Returns:
      ``(dx, dw)`` shaped like ``x`` and ``w``.
    """
    x, w, dtype, full = _setup(x, w, strides, dilation)
    mats = _folds(full, padding, output_padding, padding_mode, "conv_transpose_reference_vjp",
                  dtype)
    g_full = _along(np.asarray(g).astype(dtype), [m.T for m in mats])
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for cin, cout, p, t, at in _pairs(x.shape, w.shape, strides, dilation, groups):
        gv = g_full[(slice(None), cout, *at)]                   # (N, C_out_g)
        dx[(slice(None), cin, *p)] += gv @ w[(cin, slice(None), *t)].T
        dw[(cin, slice(None), *t)] += x[(slice(None), cin, *p)].T @ gv
    return dx, dw
