"""Padding modes: the convolution of a padded input, and its transpose, for any formulation.

PyTorch's ``Conv*d(..., padding_mode=m)`` pads its input with values of the
input itself ('circular': wrap around; 'reflect': mirror, the edge element not
repeated; 'replicate': repeat the edge element) and then runs a valid
convolution: ``C = conv_valid ∘ pad_m``. Its transpose is therefore

    Cᵀ = pad_mᵀ ∘ conv_validᵀ

``conv_validᵀ`` is the zero-padding transposed convolution onto the whole
padded input (`Spec.uncropped`: padding (0, 0), nothing cropped), which every
formulation computes as it always does. ``pad_mᵀ``, the adjoint of the
padding, folds the overhanging border back onto the array: each padded
position adds its value to the position it was copied from. Per spatial
dimension, with ``o`` the unpadded size and ``(lo, hi)`` the padding, padded
position ``p`` (``-lo <= p < o + hi``) was copied from

    circular   p mod o                     (one wrap: lo, hi <= o)
    reflect    -p if p < 0; 2(o - 1) - p if p >= o     (lo, hi < o)
    replicate  min(max(p, 0), o - 1)       (any lo, hi)

The fold (`fold`) is written with slices, flips, zero pads and adds, one
dimension at a time (the padding is separable, so its adjoint is too). "vjp"
takes the adjoint by definition instead, as `jax.vjp` of the padding (`unpad`),
so the two agree only if both are right. Either way the derivatives stay
exact: the fold is linear, and JAX transposes it to the padding itself, so
the input gradient is the mode-padded convolution (`conv` with the same
mode) and the kernel gradient that of the uncropped formulation at the
padded cotangent. Both are written with `_safe_conv`'s crops and zero pads,
which JAX transposes into each other, so that no derivative hands XLA a
negative padding (docs/xla-bugs.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jax_tconv._safe_conv import crop, zero_pad
from jax_tconv._spec import Pairs, Spec
from jax_tconv._sharding import vary, varying

def pad(y: jax.Array, axes, pads: Pairs, mode: str) -> jax.Array:
    """`y` padded along `axes` by ``(lo, hi)`` each, with values of `y` (mode != 'zeros').

    A negative amount crops, as in lax (the forward padding of a transposed
    conv with op >= s has a negative ``hi``): the other side is filled from
    the whole of `y` first. PyTorch's rules (`_checks.mode_padding`) hold for
    the positive amounts.
    """
    for a, (lo, hi) in zip(axes, pads):
        y = _pad_axis(y, a, max(lo, 0), max(hi, 0), mode)
    return crop(y, {a: (max(-lo, 0), max(-hi, 0)) for a, (lo, hi) in zip(axes, pads)})


def _pad_axis(y, axis, lo, hi, mode):
    """`y` with `lo` and `hi` positions of `mode` added along `axis` (the table above)."""
    o = y.shape[axis]
    if mode == "circular":      # -lo .. -1 <- o - lo .. o - 1;  o .. o + hi - 1 <- 0 .. hi - 1
        left, right = _part(y, axis, o - lo, o), _part(y, axis, 0, hi)
    elif mode == "reflect":     # -lo .. -1 <- lo .. 1;  o .. o + hi - 1 <- o - 2 .. o - 1 - hi
        left = lax.rev(_part(y, axis, 1, lo + 1), (axis,))
        right = lax.rev(_part(y, axis, o - 1 - hi, o - 1), (axis,))
    elif mode == "replicate":   # the edge element, repeated
        left = jnp.repeat(_part(y, axis, 0, 1), lo, axis=axis)
        right = jnp.repeat(_part(y, axis, o - 1, o), hi, axis=axis)
    else:
        raise ValueError(f"padding_mode {mode!r}: expected 'circular', 'reflect' or 'replicate'")
    return lax.concatenate([p for p in (left, y, right) if p.shape[axis]], axis)


def _part(y, axis, start, stop):
    """Positions ``start .. stop - 1`` of `y` along `axis`."""
    return crop(y, {axis: (start, y.shape[axis] - stop)})


def fold(z: jax.Array, axes, pads: Pairs, mode: str) -> jax.Array:
    """The adjoint of `pad`: `z` (padded sizes) folded back to the unpadded sizes."""
    for a, (lo, hi) in zip(axes, pads):
        z = _fold_axis(z, a, lo, hi, mode)
    return z


def _fold_axis(z, axis, lo, hi, mode):
    if min(lo, hi) < 0:  # pad cropped there: its adjoint zero-extends
        z = zero_pad(z, {axis: (max(-lo, 0), max(-hi, 0))})
        lo, hi = max(lo, 0), max(hi, 0)
    o = z.shape[axis] - lo - hi
    y = _part(z, axis, lo, lo + o)
    left = _part(z, axis, 0, lo)                  # positions -lo .. -1
    right = _part(z, axis, lo + o, lo + o + hi)   # positions o .. o + hi - 1
    if mode == "circular":      # -lo .. -1 -> o - lo .. o - 1;  o .. o + hi - 1 -> 0 .. hi - 1
        terms = [(left, o - lo), (right, 0)]
    elif mode == "reflect":     # -lo .. -1 -> lo .. 1;  o .. o + hi - 1 -> o - 2 .. o - 1 - hi
        terms = [(lax.rev(left, (axis,)), 1), (lax.rev(right, (axis,)), o - 1 - hi)]
    elif mode == "replicate":   # everything beyond an edge onto that edge
        terms = [(jnp.sum(left, axis, keepdims=True), 0),
                 (jnp.sum(right, axis, keepdims=True), o - 1)]
    else:
        raise ValueError(f"padding_mode {mode!r}: expected 'circular', 'reflect' or 'replicate'")
    # (part, first position it adds onto); empty parts (a side without padding) drop out.
    terms = sorted((t for t in terms if t[0].shape[axis]), key=lambda t: t[1])
    if not terms:
        return y
    ends = [start + part.shape[axis] for part, start in terms]
    if all(end <= nxt for end, (_, nxt) in zip(ends, terms[1:])):
        # Disjoint targets (all but the smallest sizes): one add of the parts laid
        # end to end with zeros between, which XLA fuses into a single pass.
        pieces, at = [], 0
        for (part, start), end in zip(terms, ends):
            pieces += [_zeros_like_along(part, axis, start - at), part]
            at = end
        pieces.append(_zeros_like_along(y, axis, o - at))
        return y + lax.concatenate([q for q in pieces if q.shape[axis]], axis)
    for part, start in terms:   # overlapping targets: one zero-padded add each
        y = y + zero_pad(part, {axis: (start, o - start - part.shape[axis])})
    return y


def _zeros_like_along(a, axis, n):
    """Zeros shaped like `a` but `n` long along `axis`."""
    shape = list(a.shape)
    shape[axis] = n
    return jnp.zeros(shape, a.dtype)


def unpad(z: jax.Array, spec: Spec) -> jax.Array:
    """The adjoint of the padding by definition: `jax.vjp` of `pad` at the cotangent `z`.

    An integer `z` has no cotangent in JAX (its VJP is a float0 zero), so integers
    take the same adjoint written out, `fold`.
    """
    axes, pads, mode = spec.dn.lhs_spec[2:], spec.forward_padding, spec.padding_mode
    if jnp.issubdtype(z.dtype, jnp.integer):
        return fold(z, axes, pads, mode)
    y0 = vary(jnp.zeros(spec.out_shape, z.dtype), varying(z))  # shard_map: vary as z does
    _, pullback = jax.vjp(lambda y: pad(y, axes, pads, mode), y0)
    return pullback(z)[0]


def folded(spec: Spec):
    """`fold` with `spec`'s axes, forward padding and mode: ``z (uncropped) -> y``."""
    return lambda z: fold(z, spec.dn.lhs_spec[2:], spec.forward_padding, spec.padding_mode)


def with_padding_mode(formulation, *, adjoint: str = "fold"):
    """`formulation(x, w, spec)` for every padding mode.

    'zeros' runs `formulation` on `spec` as it is (the fast path is untouched);
    any other mode runs it on ``spec.uncropped`` and applies the padding's
    adjoint: the explicit `fold` (``adjoint="fold"``) or `jax.vjp` of the
    padding (``adjoint="vjp"``, `unpad`).
    """
    def run(x, w, spec: Spec):
        if spec.padding_mode == "zeros":
            return formulation(x, w, spec)
        z = formulation(x, w, spec.uncropped)
        return unpad(z, spec) if adjoint == "vjp" else folded(spec)(z)

    run.__name__ = getattr(formulation, "__name__", "formulation")
    run.__doc__ = formulation.__doc__
    return run
