"""Formulation 2: write the convolution as a matrix `C`, multiply by its transpose.

Each row of `C` belongs to one element of the forward conv's output and holds
the kernel values that produce it, zero-padded into the columns of the input
elements they touch. For a 4x4 input and a 3x3 kernel (stride 1, no padding,
one channel) `C` is 4x16; ``Cᵀ`` sends each of the 4 values of a 2x2 input to
the 9 outputs its row touches.

With a padding mode other than 'zeros' a tap that lands in the padding reads
the input element the padding copied (wrapped, mirrored or clamped into the
input) instead of being dropped, so several taps of one row may read the same
column: their kernel values add up in that entry of `C`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import sparse as jsparse

from jax_tconv._spec import ConvSpec, Spec, conv_spec
from jax_tconv.typing import ArrayLike, DimensionNumbers, IntOrSequence, Padding

#: Largest dense convolution matrix, in bytes, that "matmul" will build (256 MiB).
MATMUL_MAX_BYTES = 1 << 28


def conv_matrix(w: ArrayLike, input_shape: Sequence[int], *, strides: IntOrSequence = 1,
                padding: Padding = 0, padding_mode: str = "zeros",
                dilation: IntOrSequence = 1, groups: int = 1,
                dimension_numbers: DimensionNumbers = None,
                sparse: bool = False) -> jax.Array | jsparse.BCOO:
    """The matrix `C` of the forward `conv` on inputs of shape `input_shape`.

    ``conv(x, w, ...).reshape(-1) == conv_matrix(w, x.shape, ...) @ x.reshape(-1)``:
    rows follow the flattened forward output (the transposed conv's input),
    columns the flattened forward input, each in its layout's own (row-major)
    order. The transposed convolution is ``conv_matrix(...).T``.

    Args:
      w: the kernel, laid out by the kernel spec of `dimension_numbers`.
      input_shape: the full shape of the forward conv's input (batch included;
        use batch 1 for the per-example matrix).
      strides, padding, padding_mode, dilation, groups, dimension_numbers: as in
        `conv` (a padding mode other than 'zeros' is built into the matrix).
      sparse: return a `jax.experimental.sparse.BCOO` holding only the
        structural non-zeros instead of a dense array.

    Returns:
      ``(prod(out_shape), prod(input_shape))``, dense or BCOO, of `w`'s dtype
      (int32 for a narrower integer `w` with a padding mode, whose summed taps
      could wrap in it).

    Raises:
      ValueError: dense `C` would exceed `MATMUL_MAX_BYTES`, or the usual
        argument errors of `conv`.

    Example:
      >>> import jax.numpy as jnp, jax_tconv
      >>> jax_tconv.conv_matrix(jnp.ones((3, 3, 1, 1)), (1, 4, 4, 1)).shape
      (4, 16)
      >>> jax_tconv.conv_matrix(jnp.ones((3, 1, 1)), (1, 4, 1), padding=1,
      ...                       padding_mode="circular")[0]    # row 0 wraps to column 3
      Array([1., 1., 0., 1.], dtype=float32)
    """
    w = jnp.asarray(w)
    x = jax.ShapeDtypeStruct(tuple(input_shape), w.dtype)
    spec = conv_spec("conv_matrix", x, w, strides=strides, padding=padding, dilation=dilation,
                     groups=groups, dimension_numbers=dimension_numbers, precision=None,
                     preferred_element_type=None, padding_mode=padding_mode)
    if padding_mode != "zeros" and jnp.issubdtype(w.dtype, jnp.integer) and w.dtype.itemsize < 4:
        # Taps that read one element add up in its entry: in int32, as `conv` sums them.
        w = w.astype(jnp.int32)
    return _matrix("conv_matrix", w, tuple(x.shape), spec, sparse=sparse)


def transpose_by_matmul(x, w, spec: Spec):
    """``y = Cᵀ x``, one example at a time (one matrix for the whole batch)."""
    cspec = ConvSpec(spec.dn, spec.strides, spec.forward_padding, spec.dilation, spec.groups,
                     padding_mode=spec.padding_mode)
    n_axis_x, n_axis_y = spec.dn.out_spec[0], spec.dn.lhs_spec[0]
    example = list(spec.out_shape)
    example[n_axis_y] = 1
    if spec.padding_mode != "zeros" and spec.preferred_element_type is not None:
        # Several taps may add up in one entry of C: add them in the accumulation dtype
        # (int8 would wrap, float8 round), as the other formulations sum their products.
        w = w.astype(spec.preferred_element_type)
    c = _matrix("conv_transpose", w, tuple(example), cspec, sparse=False)
    batch = x.shape[n_axis_x]
    rows = jnp.moveaxis(x, n_axis_x, 0).reshape(batch, c.shape[0])  # each: one example's vec(x)
    y = lax.dot_general(rows, c, (((1,), (0,)), ((), ())), precision=spec.precision,
                        preferred_element_type=spec.preferred_element_type)
    del example[n_axis_y]
    return jnp.moveaxis(y.reshape(batch, *example), 0, n_axis_y)


def _matrix(fn, w, input_shape, spec: ConvSpec, *, sparse):
    out_shape = _output_shape(input_shape, tuple(w.shape), spec)
    shape = (math.prod(out_shape), math.prod(input_shape))
    if max(shape) >= 2**31:
        raise ValueError(f"{fn}: the convolution matrix {shape} has over 2**31 rows or columns.")
    nbytes = shape[0] * shape[1] * w.dtype.itemsize
    if not sparse and nbytes > MATMUL_MAX_BYTES:
        raise ValueError(
            f"{fn}: the dense convolution matrix would be {shape[0]} x {shape[1]} = "
            f"{nbytes:,} bytes, over MATMUL_MAX_BYTES = {MATMUL_MAX_BYTES:,}; use "
            f"method='vjp' or method='dilated' (or conv_matrix(..., sparse=True))."
        )
    rows, cols, taps = _structure(input_shape, tuple(w.shape), spec)
    values = w.reshape(-1)[taps]
    if sparse:
        indices = jnp.asarray(np.stack([rows, cols], axis=1))
        c = jsparse.BCOO((values, indices), shape=shape)
        if spec.padding_mode == "zeros":
            return c
        # Repeated (row, column) pairs (taps reading one element) add up, as in C.
        return c.sum_duplicates(nse=_nse(rows, cols), remove_zeros=False)
    # A scatter-add into zeros (not a set: Taylor mode, `jax_tconv.jet`, has a rule for it).
    # With zero padding no two taps land on one entry, so the indices are unique.
    return jnp.zeros(shape, w.dtype).at[rows, cols].add(
        values, unique_indices=spec.padding_mode == "zeros")


def _nse(rows, cols) -> int:
    """The number of distinct (row, column) pairs: the structural non-zeros of C."""
    return len(np.unique(np.stack([rows, cols]), axis=1)[0]) if len(rows) else 0


def _output_shape(input_shape, kernel_shape, spec: ConvSpec) -> tuple[int, ...]:
    """The forward conv's output shape, ``o = floor((i + lo + hi - d*(k - 1) - 1) / s) + 1``."""
    dn = spec.dn
    out = [0] * len(input_shape)
    out[dn.out_spec[0]] = input_shape[dn.lhs_spec[0]]
    out[dn.out_spec[1]] = kernel_shape[dn.rhs_spec[0]]
    for a_in, a_k, a_out, s, d, (lo, hi) in zip(dn.lhs_spec[2:], dn.rhs_spec[2:], dn.out_spec[2:],
                                               spec.strides, spec.dilation, spec.padding):
        out[a_out] = (input_shape[a_in] + lo + hi - d * (kernel_shape[a_k] - 1) - 1) // s + 1
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _structure(input_shape, kernel_shape, spec: ConvSpec):
    """Row, column and kernel-tap index of every structural non-zero of `C`.

    Output element (n, o, j) of the forward conv reads input element
    (n, g*I + i, j*s - lo + t*d) with kernel value w[o, i, t], where
    g = o // (O / groups) is o's group; taps that land in the padding are
    dropped ('zeros') or read the element the padding mode copied there.
    """
    dn = spec.dn
    out_shape = _output_shape(input_shape, kernel_shape, spec)
    size = [input_shape[a] for a in dn.lhs_spec[2:]]
    k = [kernel_shape[a] for a in dn.rhs_spec[2:]]
    out = [out_shape[a] for a in dn.out_spec[2:]]
    batch = input_shape[dn.lhs_spec[0]]
    c_out, i_g = kernel_shape[dn.rhs_spec[0]], kernel_shape[dn.rhs_spec[1]]
    ns = len(size)

    n, o, i, *jt = np.meshgrid(np.arange(batch), np.arange(c_out), np.arange(i_g),
                               *(np.arange(v) for v in out), *(np.arange(v) for v in k),
                               indexing="ij")
    j, t = jt[:ns], jt[ns:]
    c_in = (o // (c_out // spec.groups)) * i_g + i
    pos = [j[a] * spec.strides[a] - spec.padding[a][0] + t[a] * spec.dilation[a] for a in range(ns)]
    if spec.padding_mode == "zeros":
        keep = np.all(np.stack([(p >= 0) & (p < sz) for p, sz in zip(pos, size)] + [n >= 0]),
                      axis=0)
        pos = [np.clip(p, 0, sz - 1) for p, sz in zip(pos, size)]
    else:
        keep = np.ones(n.shape, bool)
        pos = [_source(p, sz, spec.padding_mode) for p, sz in zip(pos, size)]

    def flat(spec_axes, shape, values):
        index = [None] * len(shape)
        for a, v in zip(spec_axes, values):
            index[a] = v[keep]
        return np.ravel_multi_index(tuple(index), shape).astype(np.int32)

    rows = flat(dn.out_spec, out_shape, (n, o, *j))
    cols = flat(dn.lhs_spec, input_shape, (n, c_in, *pos))
    taps = flat(dn.rhs_spec, kernel_shape, (o, i, *t))
    return rows, cols, taps


def _source(p, size: int, mode: str):
    """The input position the padding copied to position `p` (-lo <= p < size + hi)."""
    if mode == "circular":
        return np.mod(p, size)
    if mode == "reflect":
        return np.where(p < 0, -p, np.where(p >= size, 2 * (size - 1) - p, p))
    return np.clip(p, 0, size - 1)   # replicate
