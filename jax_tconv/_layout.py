"""Kernel layouts for the convolutions that *are* transposed convolutions.

XLA:CPU runs a convolution whose kernel is laid out spatial-first, ``(*k, I, O)``
(HWIO), about twice as fast as one laid out ``(O, I, *k)``, so the kernels built
here keep that order, and when ``groups == 1`` the channel roles are swapped by
dimension numbers alone, without moving any data.

The same holds for activations: XLA:CPU runs channels-first convolutions
(PyTorch's NCHW) 10-100x slower than channels-last ones, so "auto" runs every
layout through its channels-last form (`channels_last`): transposing x, w and
y costs far less than the convolution it speeds up.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jax import lax

from jax_tconv._spec import Spec, default_dimension_numbers


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


@dataclasses.dataclass(frozen=True)
class ChannelsLast:
    """`spec` re-expressed channels-last, and the transposes between the two layouts.

    Any `dimension_numbers` permutation describes the same operator; only the
    memory order differs. ``x_perm``/``w_perm`` take the user's x and w to
    ``(N, *i, C_in)`` and ``(*k, C_out // groups, C_in)``; ``y_perm`` takes the
    channels-last result ``(N, *o, C_out)`` back to the user's output layout.
    """

    spec: Spec
    x_perm: tuple[int, ...]
    w_perm: tuple[int, ...]
    y_perm: tuple[int, ...]

    @property
    def is_identity(self) -> bool:
        return all(p == tuple(range(len(p))) for p in (self.x_perm, self.w_perm, self.y_perm))


def channels_last(spec: Spec) -> ChannelsLast:
    """The channels-last form of `spec` (the layout XLA:CPU runs fastest; see the module doc)."""
    dn = spec.dn
    x_perm = (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1])
    w_perm = (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0])
    y_from = (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1])  # user y -> channels-last y
    y_perm = tuple(y_from.index(a) for a in range(len(y_from)))   # its inverse
    n = spec.num_spatial
    canonical = dataclasses.replace(
        spec,
        dn=lax.conv_dimension_numbers((0,) * (n + 2), (0,) * (n + 2),
                                      default_dimension_numbers(n)),
        in_shape=tuple(spec.in_shape[a] for a in x_perm),
        kernel_shape=tuple(spec.kernel_shape[a] for a in w_perm),
        out_shape=tuple(spec.out_shape[a] for a in y_from))
    return ChannelsLast(canonical, x_perm, w_perm, y_perm)
