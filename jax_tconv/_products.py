"""Formulation 5: products first, then sums: the transposed convolution as matrix products.

Every input element meets every tap exactly once: input ``p`` and tap ``t``
land on output ``m = p*s + t*d - lo`` (per spatial dimension). So compute
all those products first, as *one* matrix product, and sum afterwards::

    P[n, p, t, :] = x[n, p, :] @ w[t]          (N·∏i, C_in) @ (C_in, ∏k·C_out)
    y[n, m, :]   = Σ_{p*s + t*d - lo = m} P[n, p, t, :]       (overlap-add)

The sum runs per output phase ``φ`` (``m = a*s + φ``): tap ``t`` lands on phase
``φ_t = (t*d - lo) mod s`` from input ``p = a + c_t``, with the offset
``c_t = (φ_t + lo - t*d) / s`` (`tap_offsets`), so each phase adds the slices
of its taps' products at their offsets, and the phases interleave.

The derivatives are matrix products too. The input gradient ``C_w(g)`` reads,
for every input position and tap, the output the pair landed on: gather
those into the patches ``D[n, p, t, :] = g[n, p*s + t*d - lo, :]`` (zero where
the output was cropped away; `patches`), then ``dx = D @ Wᵀ``; the kernel
gradient is ``Xᵀ @ D``. Three products with exactly the layer's useful
multiply-adds, the same three a matrix-product roofline of the layer times
(benchmarks/bench.py): no convolution emitter, no inserted zero.

Memory: ``P`` (forward) and ``D`` (backward) hold ``∏k · N·∏i · C_out``
elements, ``∏k / ∏s`` times the output's size (4x for k4 s2 in 2-D, 8x for
k4 s2 in 3-D, 1x for k2 s2), where a convolution needs no temporary of that
size. That is the price of reaching the machine's matrix-product rate;
docs/performance.md lists it per layer.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

from jax_tconv._safe_conv import crop, zero_pad
from jax_tconv._spec import Spec
from jax_tconv._vjp import adjoint_derivatives

__all__ = ["channels_last_array", "from_channels_last_array", "input_gradient",
           "inverse_permutation", "kernel_gradient", "patches", "products", "result_dtype",
           "tap_offsets", "transpose_by_products"]


def tap_offsets(k: int, s: int, d: int, lo: int) -> list[tuple[int, int]]:
    """Per tap t of one dimension: (its output phase φ_t, its input offset c_t), where
    output ``a*s + φ_t`` receives tap t from input ``a + c_t`` (the phase form's terms)."""
    return [((t * d - lo) % s, ((t * d - lo) % s + lo - t * d) // s) for t in range(k)]


def channels_last_array(a, spec_axes):
    """`a` in (N, *spatial, C) order, from a layout spec (batch, channel, *spatial)."""
    return jnp.transpose(a, (spec_axes[0], *spec_axes[2:], spec_axes[1]))


def from_channels_last_array(a, spec_axes):
    """`channels_last_array` undone: (N, *spatial, C) back into the layout spec's order."""
    return jnp.transpose(a, inverse_permutation((spec_axes[0], *spec_axes[2:], spec_axes[1])))


def _kernel(w, spec: Spec):
    """w as (*k, C_out_g, groups, C_in_g)."""
    rhs = spec.dn.rhs_spec
    wc = jnp.transpose(w, (*rhs[2:], rhs[1], rhs[0]))
    return wc.reshape(*wc.shape[:-1], spec.groups, -1)


def _einsum(spec: Spec, a, a_axes, b, b_axes, out_axes, g_ax, accumulate=None):
    """`jnp.einsum` in the spec's precision, its result in `accumulate` (default: the spec's
    preferred_element_type); the group axis (size 1 without groups) is left out of the
    product itself, so that XLA sees a plain matrix product whose result needs no relayout."""
    kw = dict(precision=spec.precision,
              preferred_element_type=accumulate or spec.preferred_element_type)
    if spec.groups != 1:
        return jnp.einsum(a, a_axes, b, b_axes, out_axes, **kw)
    drop = lambda axes: [v for v in axes if v != g_ax]  # noqa: E731
    out = jnp.einsum(jnp.squeeze(a, a_axes.index(g_ax)), drop(a_axes),
                     jnp.squeeze(b, b_axes.index(g_ax)), drop(b_axes), drop(out_axes), **kw)
    return jnp.expand_dims(out, out_axes.index(g_ax))


def result_dtype(x, spec: Spec):
    """The result's dtype: preferred_element_type, else the input's."""
    return spec.preferred_element_type or x.dtype


def products(x, w, spec: Spec):
    """The forward pass: P = x @ W (one product per group), then overlap-add by phases.

    Tap t of a dimension lands ``t*d = q_t*s + r_t`` past its input's first output:
    on phase ``r_t``, shifted by ``q_t`` whole strides. So each phase is a sum of
    the taps' products, each padded by its shift; the phases interleave into the
    uncropped output, which is cut to ``[lo, lo + o)``. Static pads and slices
    only: XLA fuses the whole sum into one pass over P. (This function is never
    transposed by JAX: its derivatives are `input_gradient` and `kernel_gradient`.)
    """
    if x.size == 0 or w.size == 0:  # N = 0 or C_in = 0: a sum of no terms
        return jnp.zeros(spec.out_shape, result_dtype(x, spec))
    n, dn = spec.num_spatial, spec.dn
    xc = channels_last_array(x, dn.out_spec)                       # (N, *i, C_in)
    xc = xc.reshape(*xc.shape[:-1], spec.groups, -1)
    sp_x, sp_k = list(range(1, n + 1)), list(range(n + 1, 2 * n + 1))
    g_ax, ci, co = 2 * n + 1, 2 * n + 2, 2 * n + 3
    # 16-bit inputs: the products and their sums in float32, rounded once at the end, as a
    # convolution accumulates (up to prod(k) / prod(s) products land on one output).
    wide = jnp.float32 if jnp.dtype(x.dtype).itemsize == 2 and jnp.issubdtype(
        x.dtype, jnp.floating) else None
    prods = _einsum(spec, xc, [0, *sp_x, g_ax, ci], _kernel(w, spec), [*sp_k, co, g_ax, ci],
                    [0, *sp_x, *sp_k, g_ax, co], g_ax,
                    accumulate=spec.preferred_element_type or wide)
    prods = prods.reshape(*prods.shape[:-2], -1)              # (N, *i, *k, C_out)
    strides, sizes = spec.strides, spec.in_spatial
    shifts = [[divmod(t * d, s) for t in range(k)]            # per tap: (q_t, r_t)
              for k, s, d in zip(spec.kernel_size, strides, spec.dilation)]
    q_max = [max(q for q, _ in qr) for qr in shifts]
    phases = []
    for r in itertools.product(*(range(s) for s in strides)):
        acc = None
        for t in itertools.product(*(range(k) for k in spec.kernel_size)):
            if any(shifts[j][t[j]][1] != r[j] for j in range(n)):
                continue
            q = [shifts[j][t[j]][0] for j in range(n)]
            part = jnp.pad(prods[(slice(None),) * (1 + n) + t],
                           [(0, 0), *((qj, qm - qj) for qj, qm in zip(q, q_max)), (0, 0)])
            acc = part if acc is None else acc + part
        if acc is None:    # no tap lands on this phase
            acc = jnp.zeros((prods.shape[0], *(i + qm for i, qm in zip(sizes, q_max)),
                             prods.shape[-1]), prods.dtype)
        phases.append(acc)
    # (s1, .., sn, N, m1, .., mn, C) -> (N, m1, s1, .., mn, sn, C): the uncropped output
    y = jnp.stack(phases).reshape(*strides, *phases[0].shape)
    y = y.transpose(n, *(v for j in range(n) for v in (n + 1 + j, j)), 2 * n + 1)
    full = [(i + qm) * s for i, qm, s in zip(sizes, q_max, strides)]
    y = y.reshape(y.shape[0], *full, y.shape[-1])
    # Cut [lo, lo + o) out of it (zeros where that reaches past either end).
    lo = [p for p, _ in spec.padding]
    widths = [(max(0, -a), max(0, a + o - f)) for a, o, f in zip(lo, spec.out_spatial, full)]
    y = jnp.pad(y, [(0, 0), *widths, (0, 0)])
    y = y[(slice(None), *(slice(a + b, a + b + o) for a, (b, _), o in
                          zip(lo, widths, spec.out_spatial)))]
    return from_channels_last_array(y.astype(result_dtype(x, spec)), dn.lhs_spec)


def patches(g, spec: Spec):
    """``D[n, p, t, :] = g[n, p*s + t*d - lo, :]`` (zero outside g), as (N, *i, *k, C_out).

    The adjoint of the overlap-add: each input position's view of the outputs
    its taps landed on. g is placed in the uncropped output's frame (``lo`` zeros
    before it), split into ``(m, s)`` so that position ``a*s + r`` is ``[a, r]``,
    and tap t of input p reads ``[p + q_t, r_t]`` (``t*d = q_t*s + r_t``): one
    static slice per tap.
    """
    n, dn = spec.num_spatial, spec.dn
    strides, sizes = spec.strides, spec.in_spatial
    shifts = [[divmod(t * d, s) for t in range(k)]
              for k, s, d in zip(spec.kernel_size, strides, spec.dilation)]
    q_max = [max(q for q, _ in qr) for qr in shifts]
    full = [(i + qm) * s for i, qm, s in zip(sizes, q_max, strides)]
    gc = channels_last_array(g, dn.lhs_spec)                          # (N, *o, C_out)
    # Into the uncropped frame [0, full): zeros before and after, crops where g reaches out.
    lo = [p for p, _ in spec.padding]
    before = {1 + j: (max(0, a), max(0, f - a - o)) for j, (a, o, f) in
              enumerate(zip(lo, spec.out_spatial, full))}
    cut = {1 + j: (max(0, -a), max(0, a + o - f)) for j, (a, o, f) in
           enumerate(zip(lo, spec.out_spatial, full))}
    gc = zero_pad(crop(gc, cut), before)
    gc = gc.reshape(gc.shape[0], *(v for f, s in zip(full, strides) for v in (f // s, s)), -1)
    cols = []
    for t in itertools.product(*(range(k) for k in spec.kernel_size)):
        index: list[slice | int] = [slice(None)]
        for j in range(n):
            q, r = shifts[j][t[j]]
            index += [slice(q, q + sizes[j]), r]
        cols.append(gc[tuple(index)])                         # (N, *i, C_out)
    d = jnp.stack(cols, axis=1 + n)                           # (N, *i, prod(k), C_out)
    return d.reshape(*d.shape[:1 + n], *spec.kernel_size, d.shape[-1])


def input_gradient(g, w, spec: Spec):
    """``C_w(g)``, the forward convolution, as ``patches(g) @ Wᵀ`` (per group)."""
    if g.size == 0 or w.size == 0:
        return jnp.zeros(spec.in_shape, result_dtype(g, spec))
    n = spec.num_spatial
    d = patches(g, spec)
    d = d.reshape(*d.shape[:-1], spec.groups, -1)            # (N, *i, *k, G, C_out_g)
    sp_x, sp_k = list(range(1, n + 1)), list(range(n + 1, 2 * n + 1))
    g_ax, ci, co = 2 * n + 1, 2 * n + 2, 2 * n + 3
    dx = _einsum(spec, d, [0, *sp_x, *sp_k, g_ax, co], _kernel(w, spec), [*sp_k, co, g_ax, ci],
                 [0, *sp_x, g_ax, ci], g_ax)
    return from_channels_last_array(dx.reshape(*dx.shape[:-2], -1), spec.dn.out_spec)


def kernel_gradient(g, x, spec: Spec):
    """∂/∂w <T(x, w), g> as ``Xᵀ @ patches(g)`` (per group)."""
    if x.size == 0 or g.size == 0:
        return jnp.zeros(spec.kernel_shape, result_dtype(x, spec))
    n, grp = spec.num_spatial, spec.groups
    xc = channels_last_array(x, spec.dn.out_spec)
    xc = xc.reshape(*xc.shape[:-1], grp, -1)                 # (N, *i, G, C_in_g)
    d = patches(g, spec)
    d = d.reshape(*d.shape[:-1], grp, -1)                    # (N, *i, *k, G, C_out_g)
    sp_x, sp_k = list(range(1, n + 1)), list(range(n + 1, 2 * n + 1))
    g_ax, ci, co = 2 * n + 1, 2 * n + 2, 2 * n + 3
    # The product's natural order (G, C_in_g, *k, C_out_g): XLA then transposes the small
    # result, not the patches (which are prod(k) / prod(s) times the output's size).
    dw = _einsum(spec, xc, [0, *sp_x, g_ax, ci], d, [0, *sp_x, *sp_k, g_ax, co],
                 [g_ax, ci, *sp_k, co], g_ax)
    dw = dw.reshape(-1, *spec.kernel_size, dw.shape[-1])    # (C_in, *k, C_out_g)
    rhs = spec.dn.rhs_spec
    return jnp.transpose(dw, inverse_permutation((rhs[0], *rhs[2:], rhs[1])))


def inverse_permutation(perm) -> tuple[int, ...]:
    """The inverse permutation: ``jnp.transpose(a, perm)`` undone."""
    return tuple(int(v) for v in np.argsort(perm))


transpose_by_products = adjoint_derivatives(products, kernel_gradient=kernel_gradient,
                                            input_gradient=input_gradient)
