"""Formulation 4: phase (sub-pixel, polyphase) decomposition, no multiply by an inserted zero.

Shi et al., "Is the deconvolution layer the same as a convolutional layer?"
(arXiv 1609.07009). Per spatial dimension, write output position ``m`` as
``m = a*s + φ`` (phase ``φ`` in ``[0, s)``). In the uncropped output, input
``p`` and tap ``t`` meet at ``p*s + t*d = m + lo``, so output phase ``φ``
receives only the taps with ``t*d ≡ φ + lo (mod s)``, each from input
``p = a + c_t`` with the offset ``c_t = (φ + lo - t*d) / s``::

    y[a*s + φ] = Σ_{t ∈ T_φ} x[a + c_t] · w[t]

That is a stride-1 correlation of the *undilated* input with the sub-kernel
``w[T_φ]`` (consecutive offsets differ by ``d / gcd(s, d)``, its dilation).
The ``s^n`` phase outputs are interleaved (depth-to-space) into ``y``.

Three ways to run the phases, chosen per configuration (`Plan.form`):

- products: every input element times every tap first, as one matrix
  product, then each phase sums its taps' products at their offsets (no
  convolution at all; for small inputs with many channels: the forward of
  the "products" formulation, `jax_tconv._products`);
- fused: one convolution with ``s^n * C_out`` output channels; shorter
  sub-kernels are zero-filled to the longest, and each phase's outputs are cut
  out of the common output grid at their own offset (possible when
  ``d / gcd(s, d) == 1``; used only while no tap is zero-filled
  (`FUSED_MAX_WASTE`), i.e. when k is a multiple of s: never for k3 s2);
- separate: one exact convolution per phase (any ``d``; no zero taps at all).

Neither form inserts zeros into the input: every convolution here has stride 1
and no input dilation. Nor do the derivatives (`adjoint_derivatives`): the input
gradient is the strided forward conv and the kernel gradient either its kernel
VJP or the per-tap products of `kernel_gradient` (tests/test_phase.py checks
the lowered programs of the forward pass and both gradients). Their second
derivatives do hold input-dilated convolutions (JAX's transposes of the forward
conv); on the shapes where XLA:CPU would abort on one of those,
`adjoint_derivatives` runs this formulation on a zero-extended geometry and
crops the result (docs/xla-bugs.md).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_tconv._layout import transposed_kernel
from jax_tconv._products import (
    channels_last_array,
    inverse_permutation,
    products,
    result_dtype,
    tap_offsets,
)
from jax_tconv._safe_conv import conv, crop, zero_pad
from jax_tconv._spec import Spec
from jax_tconv._vjp import adjoint_derivatives, conv_kernel_gradient


@dataclasses.dataclass(frozen=True)
class DimPlan:
    """One spatial dimension: per phase, the taps (in correlation order) and the first offset."""

    s: int
    dilation: int                 # d / gcd(s, d): dilation of every sub-kernel
    taps: tuple[tuple[int, ...], ...]   # taps[φ]: kernel indices, increasing offset
    start: tuple[int, ...]        # start[φ]: input offset of taps[φ][0]
    size: tuple[int, ...]         # size[φ]: number of outputs ceil((o - φ) / s)
    n: int                        # ceil(o / s): length of every padded phase output
    i: int                        # input size
    o: int                        # output size


def _dim_plan(i, k, s, d, lo, o) -> DimPlan:
    taps, start = [], []
    for phi in range(s):
        ts = [t for t in range(k) if (t * d - phi - lo) % s == 0]
        ts.reverse()  # larger t = smaller offset: correlation order
        taps.append(tuple(ts))
        start.append((phi + lo - ts[0] * d) // s if ts else 0)
    sizes = tuple(max(0, -(-(o - phi) // s)) for phi in range(s))
    return DimPlan(s, d // math.gcd(s, d), tuple(taps), tuple(start), sizes, -(-o // s), i, o)


@dataclasses.dataclass(frozen=True)
class Plan:
    dims: tuple[DimPlan, ...]
    form: str  # "products", "fused" or "separate"


@functools.lru_cache(maxsize=256)
def plan(spec: Spec) -> Plan:
    dims = tuple(
        _dim_plan(i, k, s, d, lo, o)
        for i, k, s, d, (lo, _), o in zip(spec.in_spatial, spec.kernel_size, spec.strides,
                                         spec.dilation, spec.padding, spec.out_spatial))
    if (math.prod(spec.in_spatial) <= PRODUCTS_MAX_INPUT
            and spec.in_channels // spec.groups >= PRODUCTS_MIN_CHANNELS):
        form = "products"
    elif all(dp.dilation == 1 for dp in dims) and _fused_waste(dims) <= FUSED_MAX_WASTE:
        form = "fused"
    else:
        form = "separate"
    return Plan(dims, form)


#: The fused form zero-fills the shorter sub-kernels up to the longest; above this
#: fraction of zero taps the separate form runs instead. Zero: a zero-filled tap times
#: a NaN or Inf input is NaN, which would reach outputs whose window does not cover it.
FUSED_MAX_WASTE = 0.0
#: Small inputs with many channels (DCGAN's first layers) run as products-then-sums:
#: at most this many input positions per example, at least this many channels per group.
PRODUCTS_MAX_INPUT = 16
PRODUCTS_MIN_CHANNELS = 128


def _fused_waste(dims) -> float:
    """Fraction of the fused kernel's taps that are zero-filled."""
    useful = math.prod(sum(len(t) for t in dp.taps) for dp in dims)
    total = math.prod(dp.s * max(len(t) for t in dp.taps) for dp in dims)
    return 1 - useful / total


def _lowest(dp: DimPlan) -> int:
    """The lowest first offset over the phases that have taps."""
    return min((st for st, ts in zip(dp.start, dp.taps) if ts), default=0)


def _shifts(dp: DimPlan) -> tuple[int, ...]:
    """Where each phase's outputs start in the fused output: its first offset above the lowest."""
    return tuple(st - _lowest(dp) if ts else 0 for st, ts in zip(dp.start, dp.taps))


def phase(x, w, spec: Spec):
    """The phase decomposition (this module's docstring); derivatives by plain autodiff."""
    if x.size == 0 or w.size == 0:  # N = 0 or C_in = 0: a sum of no terms
        return jnp.zeros(spec.out_shape, result_dtype(x, spec))
    p = plan(spec)
    if p.form == "products":
        return products(x, w, spec)
    kernel, rhs_spec = transposed_kernel(w, spec, flip=False)
    form = _fused if p.form == "fused" else _separate
    return form(x, kernel, rhs_spec, spec, p)


def kernel_gradient(g, x, spec: Spec):
    """∂/∂w <T(x, w), g> by phases: each tap's gradient is one matrix product.

    Tap t of dimension j belongs to phase φ = (t*d - lo) mod s and reads input
    a + c_t for output a*s + φ, so ``dw[t] = Σ_{n, a} x[n, a + c_t] ⊗ g[n, a*s + φ]``,
    summed within each channel group: ``prod(k)`` products of (samples x
    C_in_g) by (samples x C_out_g) matrices, exactly the useful multiply-adds
    again, with no convolution at all. XLA:CPU runs these up to 10x faster
    than the forward conv's kernel VJP on 3-D layers.
    """
    if x.size == 0 or g.size == 0:  # N = 0 or C_in = 0: a sum of no terms
        return jnp.zeros(spec.kernel_shape, result_dtype(x, spec))
    p = plan(spec)
    n, grp = spec.num_spatial, spec.groups
    dn = spec.dn
    xc = channels_last_array(x, dn.out_spec)                   # (N, *i, C_in)
    gc = channels_last_array(g, dn.lhs_spec)                   # (N, *o, C_out)
    # g: pad o up to n*s and split it into (n, s): gc[:, a, φ] is output a*s + φ.
    gc = zero_pad(gc, {1 + j: (0, dp.n * dp.s - dp.o) for j, dp in enumerate(p.dims)})
    gc = gc.reshape(gc.shape[0], *(v for dp in p.dims for v in (dp.n, dp.s)), grp, -1)
    # x: pad so that a + c_t is in range for every a < n and every tap.
    offsets = [tap_offsets(k, dp.s, d, lo) for dp, k, d, (lo, _) in
               zip(p.dims, spec.kernel_size, spec.dilation, spec.padding)]
    below = [max(0, -min(c for _, c in offs)) for offs in offsets]
    above = [max(0, dp.n - 1 + max(c for _, c in offs) - (dp.i - 1))
             for dp, offs in zip(p.dims, offsets)]
    xc = zero_pad(xc, {1 + j: pair for j, pair in enumerate(zip(below, above))})
    xc = xc.reshape(*xc.shape[:-1], grp, -1)
    taps = []
    for t in itertools.product(*(range(k) for k in spec.kernel_size)):
        phases = [offsets[j][t[j]][0] for j in range(n)]
        starts = [offsets[j][t[j]][1] + below[j] for j in range(n)]
        x_slice = crop(xc, {1 + j: (st, xc.shape[1 + j] - st - dp.n)
                            for j, (st, dp) in enumerate(zip(starts, p.dims))})
        gs = crop(gc, {2 + 2 * j: (phi, dp.s - 1 - phi) for j, (phi, dp) in
                       enumerate(zip(phases, p.dims))})
        phase_axes = range(2, 2 + 2 * n, 2)   # each now of size 1
        gs = gs.reshape(*(v for ax, v in enumerate(gs.shape) if ax not in phase_axes))
        taps.append(jnp.einsum(x_slice, [0, *range(1, n + 1), n + 1, n + 2],
                               gs, [0, *range(1, n + 1), n + 1, n + 3], [n + 1, n + 3, n + 2],
                               precision=spec.precision,
                               preferred_element_type=spec.preferred_element_type))
    # (prod(k), groups, C_out_g, C_in_g) -> (*k, C_out_g, C_in) -> the user's kernel layout
    dw = jnp.stack(taps).transpose(0, 2, 1, 3).reshape(*spec.kernel_size, -1, x.shape[dn.out_spec[1]])
    rhs = dn.rhs_spec
    return jnp.transpose(dw, inverse_permutation((*rhs[2:], rhs[1], rhs[0])))


# The most taps whose products `fast_kernel_gradient` writes out one by one: the program
# grows with them (a 3-D k8 s4 layer's 512 products compile in 2.1 s, its kernel VJP in 0.2).
MAX_TAP_PRODUCTS = 64


def fast_kernel_gradient(g, x, spec: Spec):
    """The faster of the two kernel gradients on XLA:CPU, by rank and tap count.

    Measured over the benchmark suite (docs/performance.md): the per-tap
    products win on 3-D layers (5-12x) and where each phase holds at most one
    tap (k <= s: U-Net's k2 s2, the k16 s8 audio layer); elsewhere the forward
    conv's kernel VJP is as fast or faster (up to 2x on DCGAN's last layer).
    Beyond `MAX_TAP_PRODUCTS` taps the kernel VJP's one convolution is used
    anyway, so that compile time and program size stay bounded (3-D k8 s4: 3.4x
    slower to run, 10x faster to compile).
    """
    if math.prod(spec.kernel_size) > MAX_TAP_PRODUCTS:
        return conv_kernel_gradient(g, x, spec)
    if spec.num_spatial >= 3 or all(k <= s for k, s in zip(spec.kernel_size, spec.strides)):
        return kernel_gradient(g, x, spec)
    return conv_kernel_gradient(g, x, spec)


# JAX's own transposes of the phase convolutions are correct but XLA:CPU runs the
# kernel one up to 70x slower: take the input gradient from C and the kernel
# gradient from the faster of the forward conv's kernel VJP and the phase products.
transpose_by_phase = adjoint_derivatives(phase, kernel_gradient=fast_kernel_gradient)


def _conv(x, kernel, rhs_spec, spec: Spec, pads, dilation):
    """Stride-1 correlation of x (x's layout) with `kernel`, result in y's layout."""
    n = spec.num_spatial
    dn = lax.ConvDimensionNumbers(spec.dn.out_spec, rhs_spec, spec.dn.lhs_spec)
    return conv(
        x, kernel, (1,) * n, pads, rhs_dilation=dilation, dimension_numbers=dn,
        feature_group_count=spec.groups, precision=spec.precision,
        preferred_element_type=spec.preferred_element_type)


def _fused(x, kernel, rhs_spec, spec: Spec, p: Plan):
    """All phases in one convolution whose output channels are (group, *phases, C_out_g).

    Phase φ's sub-kernel sits at taps 0..len-1 (shorter ones zero-filled at the
    end); the input is padded for the lowest first offset, so phase φ's outputs
    start `shift[φ]` positions later in the fused output and are cut out there.
    """
    g, n = spec.groups, spec.num_spatial
    if rhs_spec[0] == n:  # roles swapped by dimension numbers: make them explicit
        kernel = jnp.swapaxes(kernel, n, n + 1)
    c_in_g, c_out = kernel.shape[n:]
    kernel = jnp.pad(kernel, [(0, 1)] * n + [(0, 0), (0, 0)])  # tap k: a zero
    pads = []
    for axis, (dp, k) in enumerate(zip(p.dims, spec.kernel_size)):
        length = max(len(ts) for ts in dp.taps)
        index = np.full((dp.s, length), k)
        for phi, ts in enumerate(dp.taps):
            index[phi, :len(ts)] = ts
        kernel = jnp.take(kernel, index, axis=2 * axis)      # (..., s, length, ...)
        lo = -_lowest(dp)
        pads.append((lo, dp.n + max(_shifts(dp)) + length - 1 - dp.i - lo))
    # (s1, J1, s2, J2, ..., C_in_g, C_out) -> (J1, J2, ..., C_in_g, g, s1, s2, ..., C_out_g)
    kernel = kernel.reshape(*kernel.shape[:-1], g, c_out // g)
    kernel = kernel.transpose(*(2 * j + 1 for j in range(n)), 2 * n, 2 * n + 1,
                              *(2 * j for j in range(n)), 2 * n + 2)
    kernel = kernel.reshape(*kernel.shape[:n], c_in_g, -1)
    y = _conv(x, kernel, (n + 1, n, *range(n)), spec, pads, (1,) * n)

    # Cut phase φ's n outputs out at its shift, one dimension at a time.
    c_axis = spec.dn.lhs_spec[1]
    shape = list(y.shape)
    y = y.reshape(shape[:c_axis] + [g, *(dp.s for dp in p.dims), c_out // g] + shape[c_axis + 1:])
    for j, dp in enumerate(p.dims):
        sp = spec.dn.lhs_spec[2 + j]
        sp += n + 1 if sp > c_axis else 0           # the channel axis became n + 2 axes
        ph = c_axis + 1 + j
        y = jnp.stack([lax.slice_in_dim(jnp.take(y, phi, axis=ph), sh, sh + dp.n,
                                        axis=sp - (sp > ph))
                       for phi, sh in enumerate(_shifts(dp))], axis=ph)
    y = y.reshape([*y.shape[:c_axis], -1, *y.shape[c_axis + n + 2:]])
    return _depth_to_space(y, spec, p, channel_order=("g", "phases", "c"))


def _separate(x, kernel, rhs_spec, spec: Spec, p: Plan):
    """One exact convolution per phase; outputs padded to ceil(o/s) and stacked as channels."""
    outs = []
    for phases in itertools.product(*(range(dp.s) for dp in p.dims)):
        taps = [dp.taps[phi] for dp, phi in zip(p.dims, phases)]
        sizes = [dp.size[phi] for dp, phi in zip(p.dims, phases)]
        if not all(taps) or not all(sizes):  # no tap reaches this phase: zeros
            outs.append(jnp.zeros(_phase_shape(spec, p), result_dtype(x, spec)))
            continue
        sub = kernel
        for axis, ts in enumerate(taps):  # taps are evenly spaced: a strided slice, reversed
            step = ts[0] - ts[1] if len(ts) > 1 else 1
            sub = lax.rev(lax.slice_in_dim(sub, ts[-1], ts[0] + 1, step, axis=axis), (axis,))
        pads = [(-dp.start[phi], size + dp.dilation * (len(ts) - 1) - dp.i + dp.start[phi])
                for dp, phi, ts, size in zip(p.dims, phases, taps, sizes)]
        y = _conv(x, sub, rhs_spec, spec, pads, tuple(dp.dilation for dp in p.dims))
        fill = [(0, 0)] * y.ndim
        for axis, dp, size in zip(spec.dn.lhs_spec[2:], p.dims, sizes):
            fill[axis] = (0, dp.n - size)
        outs.append(jnp.pad(y, fill))
    return _depth_to_space(jnp.concatenate(outs, axis=spec.dn.lhs_spec[1]), spec, p,
                           channel_order=("phases", "g", "c"))


def _phase_shape(spec: Spec, p: Plan):
    shape = list(spec.out_shape)
    for axis, dp in zip(spec.dn.lhs_spec[2:], p.dims):
        shape[axis] = dp.n
    return tuple(shape)


def _depth_to_space(y, spec: Spec, p: Plan, *, channel_order):
    """Interleave phases held in the channel axis into the spatial axes, then crop to o.

    `y` is in y's layout with spatial sizes ceil(o/s) and channels split, in
    `channel_order`, into groups "g", the phase of each dimension "phases",
    and the per-group output channels "c".
    """
    n = spec.num_spatial
    c_axis, sp_axes = spec.dn.lhs_spec[1], spec.dn.lhs_spec[2:]
    g, s = spec.groups, [dp.s for dp in p.dims]
    parts = {"g": [("g", g)], "phases": [(f"s{j}", s[j]) for j in range(n)],
             "c": [("c", spec.out_channels // g)]}
    split = [item for key in channel_order for item in parts[key]]
    # Name every axis after the split, reshape, then permute to (.., sp_j, s_j, .., g, c, ..).
    names, sizes = [], []
    for axis in range(y.ndim):
        if axis == c_axis:
            names += [nm for nm, _ in split]
            sizes += [sz for _, sz in split]
        else:
            names.append(f"a{axis}")
            sizes.append(y.shape[axis])
    y = y.reshape(sizes)
    order, merged = [], []
    for axis in range(len(spec.out_shape)):
        if axis == c_axis:
            group = ["g", "c"]
        elif axis in sp_axes:
            group = [f"a{axis}", f"s{sp_axes.index(axis)}"]
        else:
            group = [f"a{axis}"]
        order += [names.index(nm) for nm in group]
        merged.append(math.prod(sizes[names.index(nm)] for nm in group))
    y = y.transpose(order).reshape(merged)
    crop = [slice(None)] * y.ndim
    for axis, dp in zip(sp_axes, p.dims):
        crop[axis] = slice(0, dp.o)
    return y[tuple(crop)]
