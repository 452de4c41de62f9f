"""Formulation 3: insert zeros into the input, then run an ordinary convolution.

Per spatial dimension, with the kernel flipped and its channel axes swapped
(`transposed_kernel`):

1. insert ``s - 1`` zeros between neighbouring input elements;
2. pad by ``d*(k - 1) - lo`` below and ``d*(k - 1) - hi + op`` above
   (a negative amount crops);
3. run a stride-1, unpadded convolution with dilation ``d``.

Step 1 makes ``(s^n - 1) / s^n`` of the multiply-adds multiply a zero; that is
the waste the phase formulation removes.

XLA's convolution has the zero insertion built in: a base (``lhs``) dilation
of ``s`` is step 1, and step 2 is its padding, so the formulation is one
``lax.conv_general_dilated`` call, handed to XLA in normal form (`_safe_conv`:
a negative amount of step 2 crops with a slice, never a negative padding).
On some valid shapes that convolution meets the operand swap XLA:CPU aborts
on (docs/xla-bugs.md); there the padding of step 2 grows by a row and the
extra output row is cropped (jax_tconv._operand_swap).

Derivatives are the forward conv C's own VJPs (`adjoint_derivatives`), as for
"vjp" and "phase": JAX's transposes of the dilated convolution would multiply
the inserted zeros again.
"""

from __future__ import annotations

from jax import lax

from jax_tconv._layout import transposed_kernel
from jax_tconv._safe_conv import conv
from jax_tconv._spec import Spec
from jax_tconv._vjp import adjoint_derivatives


def dilated(x, w, spec: Spec):
    """Steps 1-3 of the module docstring: one base-dilated convolution with the flipped kernel."""
    pads = [(d * (k - 1) - lo, d * (k - 1) - hi + op) for k, d, (lo, hi), op in
            zip(spec.kernel_size, spec.dilation, spec.padding, spec.output_padding)]
    kernel, rhs_spec = transposed_kernel(w, spec, flip=True)
    dn = lax.ConvDimensionNumbers(spec.dn.out_spec, rhs_spec, spec.dn.lhs_spec)
    return conv(x, kernel, (1,) * spec.num_spatial, pads, lhs_dilation=spec.strides,
                rhs_dilation=spec.dilation, dimension_numbers=dn, feature_group_count=spec.groups,
                precision=spec.precision, preferred_element_type=spec.preferred_element_type)


transpose_by_dilation = adjoint_derivatives(dilated)
