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

__all__ = ["input_gradient", "kernel_gradient", "patches", "products", "tap_offsets",
           "transpose_by_products"]


def tap_offsets(k: int, s: int, d: int, lo: int) -> list[tuple[int, int]]:
    """Per tap t of one dimension: (its output phase φ_t, its input offset c_t)."""
    return [((t * d - lo) % s, ((t * d - lo) % s + lo - t * d) // s) for t in range(k)]


def _dims(spec: Spec):
    """Per spatial dimension: (s, i, o, n = ceil(o / s), the taps' (φ, c))."""
    return [(s, i, o, -(-o // s), tap_offsets(k, s, d, lo)) for i, k, s, d, (lo, _), o in
            zip(spec.in_spatial, spec.kernel_size, spec.strides, spec.dilation, spec.padding,
                spec.out_spatial)]


def _channels_last(a, spec_axes):
    """`a` in (N, *spatial, C) order, from a layout spec (batch, channel, *spatial)."""
    return jnp.transpose(a, (spec_axes[0], *spec_axes[2:], spec_axes[1]))


def _from_channels_last(a, spec_axes):
    return jnp.transpose(a, _inverse((spec_axes[0], *spec_axes[2:], spec_axes[1])))


def _kernel(w, spec: Spec):
    """w as (*k, C_out_g, groups, C_in_g)."""
    rhs = spec.dn.rhs_spec
    wc = jnp.transpose(w, (*rhs[2:], rhs[1], rhs[0]))
    return wc.reshape(*wc.shape[:-1], spec.groups, -1)


def _result_dtype(x, spec: Spec):
    return spec.preferred_element_type or x.dtype


def products(x, w, spec: Spec):
    """The forward pass: P = x @ W (one product per group), then overlap-add by phases."""
    if x.size == 0 or w.size == 0:  # N = 0 or C_in = 0: a sum of no terms
        return jnp.zeros(spec.out_shape, _result_dtype(x, spec))
    n, dn = spec.num_spatial, spec.dn
    xc = _channels_last(x, dn.out_spec)                       # (N, *i, C_in)
    xc = xc.reshape(*xc.shape[:-1], spec.groups, -1)
    sp_x, sp_k = list(range(1, n + 1)), list(range(n + 1, 2 * n + 1))
    g_ax, ci, co = 2 * n + 1, 2 * n + 2, 2 * n + 3
    prods = jnp.einsum(xc, [0, *sp_x, g_ax, ci], _kernel(w, spec), [*sp_k, co, g_ax, ci],
                       [0, *sp_x, *sp_k, g_ax, co], precision=spec.precision,
                       preferred_element_type=spec.preferred_element_type)
    prods = prods.reshape(*prods.shape[:-2], -1)              # (N, *i, *k, C_out)
    dims = _dims(spec)
    # Pad the input axes so that every tap's slice a + c_t, a < n, is in range.
    below = [max(0, -min(c for _, c in offs)) for *_, offs in dims]
    above = [max(0, nn - 1 + max(c for _, c in offs) - (i - 1))
             for (_, i, _, nn, offs) in dims]
    prods = zero_pad(prods, {1 + j: pair for j, pair in enumerate(zip(below, above))})
    outs = []
    for phases in itertools.product(*(range(s) for s, *_ in dims)):
        acc = None
        for t in itertools.product(*(range(k) for k in spec.kernel_size)):
            if any(dims[j][4][t[j]][0] != phases[j] for j in range(n)):
                continue
            part = prods[(slice(None), *(slice(None),) * n, *t)]
            part = crop(part, {1 + j: (dims[j][4][t[j]][1] + below[j],
                                       part.shape[1 + j] - dims[j][4][t[j]][1] - below[j]
                                       - dims[j][3]) for j in range(n)})
            acc = part if acc is None else acc + part
        if acc is None:    # no tap lands on this phase
            acc = jnp.zeros((prods.shape[0], *(nn for *_, nn, _ in dims), prods.shape[-1]),
                            prods.dtype)
        outs.append(acc)
    # (s1, .., sn, N, n1, .., nn, C) -> (N, n1, s1, .., nn, sn, C) -> crop to o -> y's layout
    y = jnp.stack(outs).reshape(*(s for s, *_ in dims), *outs[0].shape)
    y = y.transpose(n, *(v for j in range(n) for v in (n + 1 + j, j)), 2 * n + 1)
    y = y.reshape(y.shape[0], *(nn * s for s, _, _, nn, _ in dims), y.shape[-1])
    y = crop(y, {1 + j: (0, nn * s - o) for j, (s, _, o, nn, _) in enumerate(dims)})
    return _from_channels_last(y, dn.lhs_spec)


def patches(g, spec: Spec):
    """``D[n, p, t, :] = g[n, p*s + t*d - lo, :]`` (zero outside g), as (N, *i, *k, C_out).

    The adjoint of the overlap-add: each input position's view of the outputs
    its taps landed on, read per phase. g is padded to ``n*s`` outputs and split
    into ``(n, s)``, so output ``a*s + φ`` is ``g[a, φ]``, and tap t of input p
    reads ``g[p - c_t, φ_t]``.
    """
    n, dn = spec.num_spatial, spec.dn
    dims = _dims(spec)
    gc = _channels_last(g, dn.lhs_spec)                          # (N, *o, C_out)
    gc = zero_pad(gc, {1 + j: (0, nn * s - o) for j, (s, _, o, nn, _) in enumerate(dims)})
    gc = gc.reshape(gc.shape[0], *(v for s, _, _, nn, _ in dims for v in (nn, s)), -1)
    # Pad each a-axis so that p - c_t is in range for every p < i and every tap.
    below = [max(0, max(c for _, c in offs)) for *_, offs in dims]
    above = [max(0, i - 1 - min(c for _, c in offs) - (nn - 1)) for (_, i, _, nn, offs) in dims]
    gc = zero_pad(gc, {1 + 2 * j: pair for j, pair in enumerate(zip(below, above))})
    cols = []
    for t in itertools.product(*(range(k) for k in spec.kernel_size)):
        widths = {}
        for j, (s, i, _, _, offs) in enumerate(dims):
            phi, c = offs[t[j]]
            start = below[j] - c
            widths[1 + 2 * j] = (start, gc.shape[1 + 2 * j] - start - i)
            widths[2 + 2 * j] = (phi, s - 1 - phi)
        col = crop(gc, widths)
        cols.append(col.reshape(col.shape[0], *spec.in_spatial, col.shape[-1]))
    d = jnp.stack(cols, axis=1 + n)                             # (N, *i, prod(k), C_out)
    return d.reshape(*d.shape[:1 + n], *spec.kernel_size, d.shape[-1])


def input_gradient(g, w, spec: Spec):
    """``C_w(g)``, the forward convolution, as ``patches(g) @ Wᵀ`` (per group)."""
    if g.size == 0 or w.size == 0:
        return jnp.zeros(spec.in_shape, _result_dtype(g, spec))
    n = spec.num_spatial
    d = patches(g, spec)
    d = d.reshape(*d.shape[:-1], spec.groups, -1)            # (N, *i, *k, G, C_out_g)
    sp_x, sp_k = list(range(1, n + 1)), list(range(n + 1, 2 * n + 1))
    g_ax, ci, co = 2 * n + 1, 2 * n + 2, 2 * n + 3
    dx = jnp.einsum(d, [0, *sp_x, *sp_k, g_ax, co], _kernel(w, spec), [*sp_k, co, g_ax, ci],
                    [0, *sp_x, g_ax, ci], precision=spec.precision,
                    preferred_element_type=spec.preferred_element_type)
    return _from_channels_last(dx.reshape(*dx.shape[:-2], -1), spec.dn.out_spec)


def kernel_gradient(g, x, spec: Spec):
    """∂/∂w <T(x, w), g> as ``Xᵀ @ patches(g)`` (per group)."""
    if x.size == 0 or g.size == 0:
        return jnp.zeros(spec.kernel_shape, _result_dtype(x, spec))
    n, grp = spec.num_spatial, spec.groups
    xc = _channels_last(x, spec.dn.out_spec)
    xc = xc.reshape(*xc.shape[:-1], grp, -1)                 # (N, *i, G, C_in_g)
    d = patches(g, spec)
    d = d.reshape(*d.shape[:-1], grp, -1)                    # (N, *i, *k, G, C_out_g)
    sp_x, sp_k = list(range(1, n + 1)), list(range(n + 1, 2 * n + 1))
    g_ax, ci, co = 2 * n + 1, 2 * n + 2, 2 * n + 3
    dw = jnp.einsum(xc, [0, *sp_x, g_ax, ci], d, [0, *sp_x, *sp_k, g_ax, co],
                    [*sp_k, co, g_ax, ci], precision=spec.precision,
                    preferred_element_type=spec.preferred_element_type)
    dw = dw.reshape(*spec.kernel_size, dw.shape[n], -1)     # (*k, C_out_g, C_in)
    rhs = spec.dn.rhs_spec
    return jnp.transpose(dw, _inverse((*rhs[2:], rhs[1], rhs[0])))


def _inverse(perm) -> tuple[int, ...]:
    """The inverse permutation: ``jnp.transpose(a, perm)`` undone."""
    return tuple(int(v) for v in np.argsort(perm))


transpose_by_products = adjoint_derivatives(products, kernel_gradient=kernel_gradient,
                                            input_gradient=input_gradient)
