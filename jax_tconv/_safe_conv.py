"""`lax.conv_general_dilated`, never handed a negative or a dead padding.

XLA:CPU misreads a convolution whose padding is negative at the low edge: on
some shapes it returns memory it never wrote (values up to 1e35, or NaN, that
change from run to run), in every layout (docs/xla-bugs.md has a JAX-only
reproduction). lax accepts such a padding, and JAX's own transposes of a
convolution produce one whenever the convolution's padding is wider than its
window or its stride leaves input rows unread. So every convolution this
library emits goes through `conv`, which first rewrites the geometry into a
*normal form* per spatial dimension, with the same result:

- no input row unread: rows past the last window are cut off (they multiply
  nothing), and high padding that no window reaches is dropped;
- no window made of padding alone: such outputs are zeros, concatenated onto
  the result instead of computed, so that ``lo, hi <= K - 1`` (``K`` the dilated
  window size);
- no negative padding: a negative amount crops the input with a slice.

The normal form is closed under JAX's transpose with respect to the input:
a convolution with ``0 <= lo, hi <= K - 1`` and no unread row transposes into
one with padding ``(K - 1 - lo, K - 1 - hi)`` and no unread row (the rules of
``jax._src.lax.convolution._conv_general_vjp_lhs_padding``), so the gradients
of a normal-form convolution hand XLA no negative padding either. The slices
and concatenations transpose into zero pads and slices. tests/test_safe_conv.py
checks values against lax on a clean geometry, and the lowered and compiled
programs of every method's derivatives.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax


@dataclasses.dataclass(frozen=True)
class Normal:
    """One spatial dimension's normal form: crop the input, convolve, add zero outputs.

    ``crop``: input rows removed (low, high); ``padding``: the non-negative
    padding the convolution then gets; ``zeros``: output rows (low, high) that
    only ever see padding, added as zeros; ``empty``: no output reads the input.
    """

    crop: tuple[int, int]
    padding: tuple[int, int]
    zeros: tuple[int, int]
    empty: bool = False


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def normal_form(n: int, k: int, s: int, lo: int, hi: int, lhs_dilation: int = 1,
                rhs_dilation: int = 1) -> Normal:
    """The normal form of one dimension: input size `n`, window `k`, stride `s`, padding."""
    big_d, window = lhs_dilation, rhs_dilation * (k - 1) + 1
    length = big_d * (n - 1) + 1 if n else 0          # the base-dilated input
    total = lo + length + hi
    out = (total - window) // s + 1
    if out <= 0:  # lax's own rule; nothing to normalise
        return Normal((0, 0), (lo, hi), (0, 0), empty=out == 0 or n == 0)
    hi -= (total - window) % s                         # rows past the last window
    z_lo = max(0, _ceil_div(lo - (window - 1), s))     # windows of low padding alone
    z_hi = max(0, _ceil_div(hi - (window - 1), s))     # windows of high padding alone
    lo, hi = lo - z_lo * s, hi - z_hi * s
    crop_lo = _ceil_div(-lo, big_d) if lo < 0 else 0   # real rows a negative padding drops
    crop_hi = _ceil_div(-hi, big_d) if hi < 0 else 0
    if z_lo + z_hi >= out or crop_lo + crop_hi >= n:
        return Normal((0, 0), (0, 0), (out, 0), empty=True)
    lo = lo + crop_lo * big_d
    hi = hi + crop_hi * big_d
    return Normal((crop_lo, crop_hi), (lo, hi), (z_lo, z_hi))


def conv(lhs, rhs, window_strides, padding, *, lhs_dilation=None, rhs_dilation=None,
         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
         preferred_element_type=None):
    """`lax.conv_general_dilated` with the same arguments and result, in normal form.

    `padding` is a sequence of ``(lo, hi)`` pairs (any sign); the other
    arguments are lax's.
    """
    n = len(window_strides)
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    lhs_dilation = tuple(lhs_dilation or (1,) * n)
    rhs_dilation = tuple(rhs_dilation or (1,) * n)
    forms = [normal_form(lhs.shape[dn.lhs_spec[2 + j]], rhs.shape[dn.rhs_spec[2 + j]],
                         window_strides[j], int(padding[j][0]), int(padding[j][1]),
                         lhs_dilation[j], rhs_dilation[j]) for j in range(n)]
    options = dict(lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation, dimension_numbers=dn,
                   feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                   precision=precision, preferred_element_type=preferred_element_type)
    if any(f.empty for f in forms):  # no output reads the input: zeros of lax's shape
        shaped = jax.eval_shape(lambda a, b: lax.conv_general_dilated(
            a, b, window_strides, padding, **options), lhs, rhs)
        return jnp.zeros(shaped.shape, shaped.dtype)
    lhs = crop(lhs, {dn.lhs_spec[2 + j]: f.crop for j, f in enumerate(forms)})
    y = lax.conv_general_dilated(lhs, rhs, window_strides, [f.padding for f in forms],
                                 **options)
    return zero_pad(y, {dn.out_spec[2 + j]: f.zeros for j, f in enumerate(forms)})


# Crops and zero pads that JAX transposes into each other. `lax.slice` transposes
# into a zero `pad`, but JAX transposes a `pad` into a *negative* one, which XLA may
# fold into a convolution's padding; a dynamic slice and a dynamic update of zeros
# transpose into each other at every order, and XLA turns both (constant offsets)
# into a plain slice and pad.
def crop(a, widths: dict[int, tuple[int, int]]):
    """`a` less ``widths[axis] = (lo, hi)`` elements at each end of each named axis."""
    if all(w == (0, 0) for w in widths.values()):
        return a
    starts, sizes = [0] * a.ndim, list(a.shape)
    for axis, (lo, hi) in widths.items():
        starts[axis], sizes[axis] = lo, a.shape[axis] - lo - hi
    return lax.dynamic_slice(a, starts, sizes)


def zero_pad(a, widths: dict[int, tuple[int, int]]):
    """`a` with ``widths[axis] = (lo, hi)`` zeros added at each end of each named axis."""
    if all(w == (0, 0) for w in widths.values()):
        return a
    starts, shape = [0] * a.ndim, list(a.shape)
    for axis, (lo, hi) in widths.items():
        starts[axis], shape[axis] = lo, a.shape[axis] + lo + hi
    return lax.dynamic_update_slice(jnp.zeros(shape, a.dtype), a, starts)
