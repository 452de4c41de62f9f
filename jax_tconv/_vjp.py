"""Formulation 1: the transposed convolution is the VJP of the convolution.

``y = Cᵀ x`` is, by definition of the adjoint, the pullback of the cotangent
``x`` through the forward map ``y ↦ C y`` (`conv`). JAX's autodiff derives it.
Integers have no cotangents in JAX, so for integer operands `integer_pullback`
writes out the convolution JAX's transpose rule would emit.

Derivatives. The pullback is bilinear in (x, w), so its JVP is
``T(ẋ, w) + T(x, ẇ)``. The tangent in x is this formulation again (its
transpose, a reverse-mode gradient, is the forward conv itself). The tangent
in w is `kernel_tangent`, written as the transpose of the forward conv's
kernel gradient, so a reverse-mode kernel gradient is exactly that: the
kernel VJP of the forward conv at (g, x). Left to JAX, the kernel gradient
would be the kernel-transpose of the pullback's input-dilated convolution,
which runs several times slower on XLA:CPU.

An XLA abort, avoided. The pullback is an input-dilated convolution, and on
some valid shapes XLA:CPU's operand swap turns it, or a convolution among the
derivatives (the forward conv's transposes, and theirs), into an invalid one
and aborts the process (docs/xla-bugs.md). On those shapes
`adjoint_derivatives` (so "vjp", "phase" and "auto") computes the same result
from the forward conv read on an input a zero row larger, and crops that row
(jax_tconv._operand_swap): the VJP is still JAX's, of that larger conv, and
every derivative is built from it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from jax_tconv._layout import transposed_kernel
from jax_tconv._operand_swap import avoid_operand_swap
from jax_tconv._sharding import vary, varying
from jax_tconv._safe_conv import conv
from jax_tconv._spec import Spec


def forward_conv(y, w, spec: Spec):
    """C: the forward conv from y's shape to exactly x's shape."""
    return conv(
        y, w, spec.strides, spec.forward_padding, rhs_dilation=spec.dilation,
        dimension_numbers=spec.dn, feature_group_count=spec.groups, precision=spec.precision)


def adjoint_derivatives(primal, *, kernel_gradient=None, input_gradient=None):
    """`primal(x, w, spec)` with derivatives taken from the forward conv C's own VJPs.

    T(x, w) is bilinear, so its tangent is T(ẋ, w) + T(x, ẇ). Both terms are
    written so that their transposes, the two gradients of a training step,
    are C's VJPs: the cotangent g maps to ``C_w(g)`` (a strided conv) and to
    the kernel VJP of C at (g, x) (`kernel_tangent`), or to
    ``kernel_gradient(g, x, spec)`` when given (any function computing the
    same ∂/∂w <T(x, w), g>); likewise ``input_gradient(g, w, spec)``, when
    given, computes ``C_w(g)`` in place of the strided convolution (the
    "products" formulation's matrix products). Neither multiplies an inserted zero, and XLA:CPU
    runs both far faster than JAX's transposes of the formulations themselves
    (docs/performance.md).

    Where a convolution among C's transposes would make XLA abort, the result
    is ``crop(f(x, w, Ŝ))`` with Ŝ the spec of C on a zero-extended input
    (`avoid_operand_swap`), so C, its VJPs and their derivatives are Ŝ's.
    """
    f = jax.custom_jvp(primal, nondiff_argnums=(2,))
    gradient = kernel_gradient or conv_kernel_gradient

    def jvp(spec, primals, tangents):
        x, w = primals
        dx, dw = tangents
        y = f(x, w, spec)
        dy = jnp.zeros_like(y)
        if not isinstance(dx, SymbolicZero):
            if input_gradient is None:
                dy = dy + transpose_by_vjp(dx, w, spec)   # transpose: C_w itself
            else:
                dy = dy + transposed_gradient(dx, w, spec, input_gradient)
        if not isinstance(dw, SymbolicZero):
            dy = dy + kernel_tangent(x, dw, spec, gradient)  # transpose: the kernel gradient
        return y, dy

    f.defjvp(jvp, symbolic_zeros=True)
    return avoid_operand_swap(f)


def pullback(x, w, spec: Spec):
    """Cᵀ x as `jax.vjp` of C at the cotangent x (integers: `integer_pullback`)."""
    if jnp.issubdtype(x.dtype, jnp.integer):
        return integer_pullback(x, w, spec)
    pet = spec.preferred_element_type
    if pet is not None and jnp.dtype(pet) != x.dtype:
        # A VJP returns the primal's dtype, so run the primal in the requested
        # dtype; the up-cast is exact, so the products are exactly those of
        # lax's own mixed-precision path and they accumulate in `pet`.
        x, w = x.astype(pet), w.astype(pet)
    axes = varying(x, w)
    y0 = vary(jnp.zeros(spec.out_shape, x.dtype), axes)
    _, vjp_fn = jax.vjp(lambda y: forward_conv(y, w, spec), y0)
    (y,) = vjp_fn(vary(x, axes))
    return y


def integer_pullback(x, w, spec: Spec):
    """Cᵀ x for integer x and w, which `jax.vjp` cannot give (integers have no cotangents).

    The convolution JAX's transpose rule emits for the VJP of C with respect to its
    input (``_conv_general_dilated_transpose_lhs`` in jax/_src/lax/convolution.py),
    written out: x dilated by the strides, the kernel flipped and its channel roles
    swapped (`transposed_kernel`), padded per dimension by
    ``_conv_general_vjp_lhs_padding``'s amounts::

        before = d*(k - 1) - lo,    after = o + d*(k - 1) - ((i - 1)*s + 1) - before

    and accumulated in `preferred_element_type` (int32 by default), so every sum is exact.
    """
    kernel, rhs_spec = transposed_kernel(w, spec, flip=True)
    pads = []
    for i, k, s, d, (lo, _), o in zip(spec.in_spatial, spec.kernel_size, spec.strides,
                                     spec.dilation, spec.forward_padding, spec.out_spatial):
        before = d * (k - 1) - lo
        pads.append((before, o + d * (k - 1) - ((i - 1) * s + 1) - before))
    dn = lax.ConvDimensionNumbers(spec.dn.out_spec, rhs_spec, spec.dn.lhs_spec)
    return conv(x, kernel, (1,) * spec.num_spatial, pads, lhs_dilation=spec.strides,
                rhs_dilation=spec.dilation, dimension_numbers=dn, feature_group_count=spec.groups,
                precision=spec.precision, preferred_element_type=spec.preferred_element_type)


def conv_kernel_gradient(g, x, spec: Spec):
    """∂/∂w <T(x, w), g> = ∂/∂w <C_w(g), x>: the kernel VJP of the forward conv at (g, x)."""
    axes = varying(g, x)   # the local (per-device) gradient varies as g and x do
    w_like = vary(jnp.zeros(spec.kernel_shape, x.dtype), axes)
    return jax.linear_transpose(lambda w: forward_conv(g, w, spec), w_like)(vary(x, axes))[0]


def transposed_gradient(tangent, fixed, spec: Spec, gradient):
    """T's tangent along one operand, the other `fixed`, written as the transpose of the
    linear map g ↦ gradient(g, fixed, spec): with `gradient` the kernel gradient, T(x, ẇ)
    (`tangent` = ẇ, `fixed` = x); with it ``C_w``, T(ẋ, w). Reverse mode then runs
    `gradient` itself."""
    pet = spec.preferred_element_type
    if pet is not None and jnp.dtype(pet) != fixed.dtype:
        tangent, fixed = tangent.astype(pet), fixed.astype(pet)
    y_like = vary(jnp.zeros(spec.out_shape, fixed.dtype), varying(tangent, fixed))
    axes = varying(tangent)

    def transposed(g):
        # An operand the same on every device (axes lacks an axis g or `fixed` varies over)
        # gets the sum of the per-device gradients, as JAX gives any replicated input.
        d = gradient(g, fixed, spec)
        summed = tuple(sorted(varying(d) - axes))
        return vary(lax.psum(d, summed) if summed else d, axes)

    return jax.linear_transpose(transposed, y_like)(tangent)[0]


def kernel_tangent(x, dw, spec: Spec, kernel_gradient=conv_kernel_gradient):
    """T(x, ẇ), written as the transpose of the linear map g ↦ kernel_gradient(g, x)."""
    return transposed_gradient(dw, x, spec, kernel_gradient)


transpose_by_vjp = adjoint_derivatives(pullback)
