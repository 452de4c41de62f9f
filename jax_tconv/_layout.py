"""Kernel layouts: moving `w` between its user layout and the canonical (O, I, *k)."""

from __future__ import annotations

import jax.numpy as jnp

from jax_tconv._spec import Spec


def canonical_kernel(w, spec: Spec):
    """`w` as ``(O, I, *k)``: O = conv_transpose's input channels, I = output channels / groups."""
    return jnp.transpose(w, spec.dn.rhs_spec)


def transposed_kernel(w, spec: Spec):
    """The kernel of the convolution that *is* the transpose: ``(C_out, C_in // groups, *k)``.

    Within each group the input and output channel axes swap roles, and the
    spatial taps are reversed (correlation with the flipped kernel equals the
    scatter of the unflipped one).
    """
    w = canonical_kernel(w, spec)
    o, i, *k = w.shape
    g = spec.groups
    w = w.reshape(g, o // g, i, *k).swapaxes(1, 2).reshape(g * i, o // g, *k)
    return jnp.flip(w, axis=tuple(range(2, w.ndim)))
