"""Kernel layouts for the convolutions that *are* transposed convolutions.

XLA:CPU runs a convolution whose kernel is laid out spatial-first, ``(*k, I, O)``
(HWIO), about twice as fast as one laid out ``(O, I, *k)``, so the kernels built
here keep that order, and when ``groups == 1`` the channel roles are swapped by
dimension numbers alone, without moving any data.
"""

from __future__ import annotations

import jax.numpy as jnp

from jax_tconv._spec import Spec


def transposed_kernel(w, spec: Spec, *, flip: bool):
    """The kernel of the convolution from x to y, and its kernel spec.

    Within each group the input and output channel axes swap roles (x's
    channels become the contraction, y's the result); with ``flip`` the
    spatial taps are reversed too (correlation with the flipped kernel equals
    the scatter of the unflipped one).

    Returns:
      ``(kernel, rhs_spec)``: `kernel` is ``(*k, a, b)`` and `rhs_spec` the
      ``(output-feature axis, input-feature axis, *spatial axes)`` that
      `lax.ConvDimensionNumbers` wants; output features are ``C_out``
      (group-major), input features ``C_in // groups``.
    """
    n = spec.num_spatial
    rhs = spec.dn.rhs_spec
    w = jnp.transpose(w, (*rhs[2:], rhs[1], rhs[0]))  # (*k, C_out/g, C_in): a no-op for '...IO'
    if flip:
        w = jnp.flip(w, axis=tuple(range(n)))
    g = spec.groups
    if g == 1:
        return w, (n, n + 1, *range(n))
    *k, i, o = w.shape
    w = w.reshape(*k, i, g, o // g).transpose(*range(n), n + 2, n + 1, n)
    return w.reshape(*k, o // g, g * i), (n + 1, n, *range(n))
