"""XLA's convolution operand swap, and how every formulation stays clear of it.

XLA's algebraic simplifier swaps the two operands of a convolution when the
kernel's spatial extent is larger than the input's
(``SwapConvolutionOperandsIfBeneficial`` in
``xla/hlo/transforms/simplifiers/conv_operand_swapper.cc``, called from
``AlgebraicSimplifierVisitor::SwapConvOperands`` in ``algebraic_simplifier.cc``;
XLA:CPU runs it). Before it compares sizes it sets aside the spatial dimensions
it may keep as they are: "pure contraction" dimensions (window as large as the
input, nothing else) and "group" dimensions, whose window is::

    size K >= 2, stride K - 1, base (lhs) dilation K, window dilation 1,
    no padding, no reversal

Both are copied into the swapped window unchanged. For a contraction dimension
that is right (the input is as large as the window). For a group dimension it is
right only when the input's size there is K too; otherwise the swapped
convolution fails shape inference ("Window dimensions do not match RHS shape")
and the simplifier's ``CHECK(computation->Accept(this).ok())`` aborts the process.
`swap_aborts` is that condition, written out for one convolution; it matched
XLA's aborts exactly on 3,000 convolutions drawn around it (docs/xla-bugs.md).

A transposed convolution is the pullback of a strided convolution C; its
derivatives, at any order, are convolutions too: JAX transposes a convolution
into another one with the roles of input, kernel and output exchanged
(`transpose_lhs`, `transpose_rhs`). Those with a base dilation (the pullback
itself, its kernel gradient, ...) can hold a group dimension: in the
pullback, a dimension with ``k = s = 2``, ``d = 1``, padding ``(1, 1 + op)``
is one. `family` closes C under both transposes; if no member of it makes XLA
abort, no forward, gradient or higher derivative of any formulation does
(``"dilated"``'s explicit zero insertion becomes the same windows once XLA folds
the pad into its convolution).

When some member does, the formulations compute the transposed convolution of
``Ĉ``, C on an input extended by ``e`` zero rows (`extension`), and crop those
rows off again: ``C = Ĉ ∘ pad_e``, so ``Cᵀ = crop_e ∘ Ĉᵀ`` exactly. Ĉ is C with
its padding reduced by ``e``; its windows are padded differently, and `extension`
picks the smallest ``e`` whose family is clear. Every derivative program is
then built from Ĉ (JAX transposes the crop into a zero pad), at the cost of
``e`` extra output rows (usually one) in the affected dimensions, and only there.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

from jax_tconv._safe_conv import crop
from jax_tconv._spec import Spec


@dataclasses.dataclass(frozen=True)
class Window:
    """One ``lax.conv_general_dilated`` as XLA's HLO sees it, per spatial dimension.

    Attributes:
      size: the input's (lhs) spatial sizes, before base dilation.
      k: the window's (rhs) spatial sizes, before window dilation.
      strides, padding, lhs_dilation, rhs_dilation: as in lax.
      groups: "feature" (feature_group_count > 1: XLA never swaps those), "batch"
        (batch_group_count > 1: XLA:CPU turns them into ungrouped convolutions
        first, so they are swapped like those), or "" (ungrouped).
    """

    size: tuple[int, ...]
    k: tuple[int, ...]
    strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    lhs_dilation: tuple[int, ...]
    rhs_dilation: tuple[int, ...]
    groups: str = ""

    @property
    def out(self) -> tuple[int, ...]:
        """``floor((D*(n - 1) + 1 + lo + hi - R*(K - 1) - 1) / S) + 1`` per dimension."""
        return tuple(
            (_dilate(n, dl) + lo + hi - _dilate(k, dr)) // s + 1
            for n, k, s, (lo, hi), dl, dr in zip(self.size, self.k, self.strides, self.padding,
                                                 self.lhs_dilation, self.rhs_dilation))


def _dilate(n: int, d: int) -> int:
    return 0 if n == 0 else d * (n - 1) + 1


def swap_aborts(c: Window) -> bool:
    """Whether XLA's operand swap turns `c` into an invalid convolution (and aborts).

    The swap skips feature-grouped convolutions; it sets aside group and contraction
    dimensions, and swaps when the product of the remaining window sizes exceeds
    that of the remaining input sizes (an input of size 1 whose window is padded
    by K - 1 on both sides counts as K). It breaks when it swaps while a group
    dimension's input size differs from its window size.
    """
    if c.groups == "feature" or 0 in c.size or 0 in c.k:
        return False
    window_product = input_product = 1
    broken = False
    for n, k, s, (lo, hi), dl, dr in zip(c.size, c.k, c.strides, c.padding, c.lhs_dilation,
                                         c.rhs_dilation):
        plain = lo == 0 and hi == 0 and dr == 1     # and no reversal: JAX reverses with `rev`
        if plain and dl == k and s == k - 1:         # a group dimension
            broken |= n != k
            continue
        if plain and n == k and dl == 1 and s == 1:  # a pure contraction dimension
            continue
        window_product *= k
        input_product *= k if (n == 1 and s == 1 and dr == 1 and lo == hi == k - 1) else n
    return broken and window_product > input_product


def transpose_lhs(c: Window) -> Window:
    """The convolution JAX emits for the VJP of `c` with respect to its input.

    Input: `c`'s output; window: `c`'s, reversed; strides and base dilation
    exchanged; padding as ``jax._src.lax.convolution._conv_general_vjp_lhs_padding``.
    Groups stay feature groups; batch groups become feature groups.
    """
    pads = []
    for n, k, s, (lo, _), dl, dr, o in zip(c.size, c.k, c.strides, c.padding, c.lhs_dilation,
                                           c.rhs_dilation, c.out):
        before = _dilate(k, dr) - lo - 1
        pads.append((before, _dilate(n, dl) + _dilate(k, dr) - 1 - _dilate(o, s) - before))
    return Window(c.out, c.k, c.lhs_dilation, tuple(pads), c.strides, c.rhs_dilation,
                  "feature" if c.groups else "")


def transpose_rhs(c: Window) -> Window:
    """The convolution JAX emits for the VJP of `c` with respect to its kernel.

    Input: `c`'s input; window: `c`'s output; strides and window dilation
    exchanged; padding as ``_conv_general_vjp_rhs_padding``. Feature groups
    become batch groups and batch groups feature groups.
    """
    pads = []
    for n, k, s, (lo, _), dl, dr, o in zip(c.size, c.k, c.strides, c.padding, c.lhs_dilation,
                                           c.rhs_dilation, c.out):
        pads.append((lo, _dilate(o, s) - _dilate(n, dl) + _dilate(k, dr) - lo - 1))
    groups = {"feature": "batch", "batch": "feature"}.get(c.groups, "")
    return Window(c.size, c.out, c.rhs_dilation, tuple(pads), c.lhs_dilation, c.strides, groups)


def family(c: Window) -> frozenset[Window]:
    """`c` and every convolution reached from it by `transpose_lhs` and `transpose_rhs`.

    At most 13 members over 20,000 random 1-3-D transposed convolutions: the three
    arrays can take the roles of input, window and output in six ways, and each way
    may come with its padding mirrored (JAX reverses the window with ``rev``) or
    trimmed by the rows a stride leaves unread.
    """
    seen, todo = {c}, [c]
    while todo:
        current = todo.pop()
        for t in (transpose_lhs(current), transpose_rhs(current)):
            if t not in seen and min(t.out, default=1) >= 1:
                seen.add(t)
                todo.append(t)
        if len(seen) > 1000:
            raise RuntimeError(f"jax_tconv: the transposes of {c} do not close")
    return frozenset(seen)


def forward_window(spec: Spec, ext=None) -> Window:
    """C, the forward conv from y to x (`forward_conv`), or Ĉ for the extension `ext`."""
    ext = ext or ((0, 0),) * spec.num_spatial
    return Window(
        tuple(o + a + b for o, (a, b) in zip(spec.out_spatial, ext)),
        spec.kernel_size, spec.strides,
        tuple((lo - a, hi - b) for (lo, hi), (a, b) in zip(spec.forward_padding, ext)),
        (1,) * spec.num_spatial, spec.dilation, "feature" if spec.groups > 1 else "")


def at_risk(spec: Spec, ext=None) -> bool:
    """Whether some convolution in the family of C (or Ĉ) makes XLA abort."""
    return any(swap_aborts(c) for c in family(forward_window(spec, ext)))


#: Extensions tried per spatial dimension, (rows below, rows above), fewest first.
_CHOICES = ((0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (2, 0))


@functools.lru_cache(maxsize=512)
def extension(spec: Spec) -> tuple[tuple[int, int], ...] | None:
    """The fewest zero rows (below, above) per dimension that clear C's family, or None.

    None when C's family is clear already: the common case, computed as before.
    """
    if not at_risk(spec):
        return None
    candidates = itertools.product(_CHOICES, repeat=spec.num_spatial)
    for ext in sorted(candidates, key=lambda e: (sum(map(sum, e)), [a for a, _ in e])):
        if not at_risk(spec, ext):
            return ext
    raise AssertionError(f"jax_tconv: no extension clears XLA's operand swap for {spec}")


def extended(spec: Spec, ext) -> Spec:
    """The spec of Ĉᵀ: output larger by `ext`, padding smaller by it (possibly negative)."""
    out_shape = list(spec.out_shape)
    for axis, o, (a, b) in zip(spec.dn.lhs_spec[2:], spec.out_spatial, ext):
        out_shape[axis] = o + a + b
    padding = tuple((lo - a, hi - b) for (lo, hi), (a, b) in zip(spec.padding, ext))
    return dataclasses.replace(spec, out_shape=tuple(out_shape), padding=padding)


def avoid_operand_swap(formulation):
    """`formulation(x, w, spec)`, computed as ``crop_e(formulation(x, w, Ĉ's spec))``
    when C's family holds a convolution XLA would abort on; unchanged otherwise."""

    @functools.wraps(formulation)
    def guarded(x, w, spec: Spec):
        ext = extension(spec)
        if ext is None:
            return formulation(x, w, spec)
        y = formulation(x, w, extended(spec, ext))
        start = [0] * y.ndim
        for axis, (a, _) in zip(spec.dn.lhs_spec[2:], ext):
            start[axis] = a
        return crop(y, {a: (b, y.shape[a] - b - n)
                        for a, (b, n) in enumerate(zip(start, spec.out_shape))})

    return guarded

