"""Formulation 1: the transposed convolution is the VJP of the convolution.

``y = Cᵀ x`` is, by definition of the adjoint, the pullback of the cotangent
``x`` through the forward map ``y ↦ C y`` (`conv`). JAX's autodiff derives it.

Derivatives. The pullback is bilinear in (x, w), so its JVP is
``vjp(ẋ, w) + vjp(x, ẇ)``. The tangent in x is this formulation again; the
tangent in w is the same bilinear map evaluated by the dilated formulation.
That detour exists because XLA:CPU (jax 0.10.2) aborts the process with a
CHECK failure in its algebraic simplifier when compiling JAX's own kernel
transpose of the pullback's input-dilated convolution on some valid shapes
(e.g. 2-D, k=(3, 4), s=(3, 2), padding=(2, 3), output_padding=(1, 0), 3x3
input); the dilated form's kernel transpose is a plain stride-1 convolution
and compiles everywhere (tests/test_xla_crash.py hunts for such shapes).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from jax_tconv._dilated import transpose_by_dilation
from jax_tconv._spec import Spec


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
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


def _jvp(spec, primals, tangents):
    x, w = primals
    dx, dw = tangents
    y = transpose_by_vjp(x, w, spec)
    dy = jnp.zeros_like(y)
    if not isinstance(dx, SymbolicZero):
        dy = dy + transpose_by_vjp(dx, w, spec)
    if not isinstance(dw, SymbolicZero):
        dy = dy + transpose_by_dilation(x, dw, spec)
    return y, dy


transpose_by_vjp.defjvp(_jvp, symbolic_zeros=True)
