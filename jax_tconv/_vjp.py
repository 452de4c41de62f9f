"""Formulation 1: the transposed convolution is the VJP of the convolution.

``y = Cᵀ x`` is, by definition of the adjoint, the pullback of the cotangent
``x`` through the forward map ``y ↦ C y`` (`conv`). JAX's autodiff derives it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jax_tconv._spec import Spec


def transpose_by_vjp(x, w, spec: Spec):
    pet = spec.preferred_element_type
    if pet is not None and jnp.dtype(pet) != x.dtype:
        # A VJP returns the primal's dtype, so run the primal in the requested
        # dtype; the up-cast is exact, so the products are exactly those of
        # lax's own mixed-precision path and they accumulate in `pet`.
        x, w = x.astype(pet), w.astype(pet)

    def forward(y):  # C: the conv from y's shape to x's shape
        return lax.conv_general_dilated(
            y, w, spec.strides, spec.forward_padding, rhs_dilation=spec.dilation,
            dimension_numbers=spec.dn, feature_group_count=spec.groups,
            precision=spec.precision)

    _, pullback = jax.vjp(forward, jnp.zeros(spec.out_shape, x.dtype))
    (y,) = pullback(x)
    return y
