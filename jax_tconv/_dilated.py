"""Formulation 3: insert zeros into the input, then run an ordinary convolution.

Per spatial dimension, with the kernel flipped and its channel axes swapped
(`transposed_kernel`):

1. insert ``s - 1`` zeros between neighbouring input elements;
2. pad by ``d*(k - 1) - lo`` below and ``d*(k - 1) - hi + op`` above
   (a negative amount crops);
3. run a stride-1, unpadded convolution with dilation ``d``.

Step 1 makes ``(s^n - 1) / s^n`` of the multiply-adds multiply a zero; that is
the waste the phase formulation removes.

XLA folds the zero insertion into its convolution as a base dilation, which on
some valid shapes meets the operand swap XLA:CPU aborts on (docs/xla-aborts.md);
there the padding of step 2 grows by a row and the extra output row is cropped
(jax_tconv._operand_swap), which keeps this formulation's own derivatives clear too.
"""

from __future__ import annotations

from jax import lax

from jax_tconv._layout import transposed_kernel
from jax_tconv._operand_swap import avoid_operand_swap
from jax_tconv._spec import Spec


@avoid_operand_swap
def transpose_by_dilation(x, w, spec: Spec):
    pads = [(0, 0, 0)] * x.ndim
    for axis, k, s, d, (lo, hi), op in zip(spec.dn.out_spec[2:], spec.kernel_size, spec.strides,
                                          spec.dilation, spec.padding, spec.output_padding):
        pads[axis] = (d * (k - 1) - lo, d * (k - 1) - hi + op, s - 1)
    x_dilated = lax.pad(x, lax.full((), 0, x.dtype), pads)
    n = spec.num_spatial
    kernel, rhs_spec = transposed_kernel(w, spec, flip=True)
    dn = lax.ConvDimensionNumbers(spec.dn.out_spec, rhs_spec, spec.dn.lhs_spec)
    return lax.conv_general_dilated(
        x_dilated, kernel, (1,) * n, ((0, 0),) * n,
        rhs_dilation=spec.dilation, dimension_numbers=dn, feature_group_count=spec.groups,
        precision=spec.precision, preferred_element_type=spec.preferred_element_type)
