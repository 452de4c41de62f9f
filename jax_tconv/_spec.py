"""Argument normalisation: the one place that knows the geometry.

Every public entry point turns its user arguments into a `Spec` (for
``conv_transpose`` and its formulations) or a `ConvSpec` (for the forward
``conv``). Formulations only ever read a spec; none re-parses user input.

Notation, per spatial dimension (Dumoulin & Visin, "A guide to convolution
arithmetic for deep learning", arXiv 1603.07285, Relationship 14 and the
PyTorch ``ConvTranspose`` docs)::

    i   input size of the transposed conv   (= output size of the forward conv)
    o   output size of the transposed conv  (= input size of the forward conv)
    k   kernel size, s stride, d dilation, (lo, hi) the forward conv's padding
    op  output padding

    o = (i - 1) * s - lo - hi + d * (k - 1) + 1 + op,    0 <= op < max(s, d)

A padding mode other than 'zeros' fills the forward conv's padding with
values of its input (PyTorch's ``padding_mode``): the forward conv is then
``conv_valid ∘ pad_mode``, and its transpose the zero-padding transposed conv
onto the whole padded input (`Spec.uncropped`) followed by the padding's
adjoint (`jax_tconv._padding_mode`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jax_tconv import _checks
from jax_tconv._checks import Pairs as Pairs
from jax_tconv._checks import default_dimension_numbers as default_dimension_numbers


def forward_padding(padding: Pairs, strides: Sequence[int],
                    output_padding: Sequence[int]) -> Pairs:
    """The forward conv's padding, for which its output is exactly the transposed conv's input.

    ``(lo, hi - s * (op // s))`` per dimension: where the output padding
    reaches a stride (possible when d > s), the forward conv of the padded
    size sees ``op // s`` extra output rows, and trimming ``hi`` by ``s`` for
    each one removes them without touching the taps of the others.
    """
    return tuple((lo, hi - s * (op // s))
                 for (lo, hi), s, op in zip(padding, strides, output_padding))


def maybe_broadcast(value: Any, n: int) -> tuple[int, ...]:
    """Flax's reading of a per-dimension option: None is 1, an int is one per dimension."""
    if value is None:
        return (1,) * n
    if isinstance(value, int):
        return (value,) * n
    return tuple(value)


def shaped(a: Any) -> Any:
    """`a` as an array, or as it is if it is a `jax.ShapeDtypeStruct` (only its shape is read)."""
    return a if isinstance(a, jax.ShapeDtypeStruct) else jnp.asarray(a)


@dataclasses.dataclass(frozen=True)
class Spec:
    """A fully normalised transposed convolution (hashable, so jit-static).

    Shapes are the arrays' own shapes: `in_shape` is x's (laid out by
    ``dn.out_spec``, x being the forward conv's output) and `out_shape` is
    y's (laid out by ``dn.lhs_spec``, y being the forward conv's input).
    """

    dn: lax.ConvDimensionNumbers
    in_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    strides: tuple[int, ...]
    padding: Pairs
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    precision: Any = None
    preferred_element_type: Any = None
    padding_mode: str = "zeros"

    @property
    def num_spatial(self) -> int:
        return len(self.strides)

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return tuple(self.kernel_shape[a] for a in self.dn.rhs_spec[2:])

    @property
    def in_spatial(self) -> tuple[int, ...]:
        return tuple(self.in_shape[a] for a in self.dn.out_spec[2:])

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return tuple(self.out_shape[a] for a in self.dn.lhs_spec[2:])

    @property
    def in_channels(self) -> int:
        return self.in_shape[self.dn.out_spec[1]]

    @property
    def out_channels(self) -> int:
        return self.out_shape[self.dn.lhs_spec[1]]

    @property
    def forward_padding(self) -> Pairs:
        """Padding of the forward conv from `out_shape` whose output is exactly `in_shape`.

        Equal to `padding` unless op >= s (possible when d > s): the forward conv
        then sees op // s extra output rows, and trimming hi by s for each one
        removes them without touching the taps of the others.
        """
        return forward_padding(self.padding, self.strides, self.output_padding)

    @property
    def uncropped(self) -> Spec:
        """The zero-padding transposed conv onto the whole padded input (any padding mode).

        The forward conv is ``conv_valid ∘ pad`` (pad by `forward_padding`), so
        its transpose is ``padᵀ ∘ conv_validᵀ``. This is ``conv_validᵀ``: padding
        (0, 0), output size ``o + lo + hi`` (hi from `forward_padding`), which is
        the natural size ``(i - 1)*s + d*(k - 1) + 1`` plus ``op mod s``, so its
        output padding is ``op mod s``; padding_mode 'zeros'. Its output, folded
        by the padding's adjoint, is this spec's.
        """
        size = tuple(o + lo + hi for o, (lo, hi) in zip(self.out_spatial, self.forward_padding))
        out_shape = list(self.out_shape)
        for a, v in zip(self.dn.lhs_spec[2:], size):
            out_shape[a] = v
        return dataclasses.replace(
            self, out_shape=tuple(out_shape), padding=((0, 0),) * self.num_spatial,
            output_padding=tuple(op % s for op, s in zip(self.output_padding, self.strides)),
            padding_mode="zeros")


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """A fully normalised forward convolution."""

    dn: lax.ConvDimensionNumbers
    strides: tuple[int, ...]
    padding: Pairs
    dilation: tuple[int, ...]
    groups: int
    precision: Any = None
    preferred_element_type: Any = None
    padding_mode: str = "zeros"


# ----------------------------------------------------------------------------
# The two spec builders.


def conv_spec(fn, x, w, *, strides, padding, dilation, groups, dimension_numbers,
              precision, preferred_element_type, padding_mode="zeros") -> ConvSpec:
    """Normalise the arguments of the forward `conv`.

    With a `padding_mode` other than 'zeros' the padding (SAME's too) is filled
    from the input by that mode, under PyTorch's rules (`_checks.mode_padding`).
    """
    mode = _checks.padding_mode(fn, padding_mode)
    _checks.dtypes(fn, x, w)
    preferred_element_type = _checks.preferred_element_type(fn, preferred_element_type, x.dtype)
    dn = _checks.dimension_numbers(fn, dimension_numbers, x.ndim, w.ndim)
    n = x.ndim - 2
    s = _checks.ints(fn, "strides", strides, n, minimum=1)
    d = _checks.ints(fn, "dilation", dilation, n, minimum=1)
    c_in = x.shape[dn.lhs_spec[1]]
    i_per_group, c_out = w.shape[dn.rhs_spec[1]], w.shape[dn.rhs_spec[0]]
    g = _checks.groups(fn, groups, {"the kernel's output channels (O)": c_out})
    if c_in != i_per_group * g:
        raise ValueError(
            f"{fn}: x has {c_in} input channels (axis {dn.lhs_spec[1]} of x.shape="
            f"{tuple(x.shape)}) but w expects {i_per_group} per group (axis {dn.rhs_spec[1]} "
            f"of w.shape={tuple(w.shape)}) x groups={g} = {i_per_group * g}."
            + _checks.layout_hint(dimension_numbers, n, transpose=False)
        )
    size = tuple(x.shape[a] for a in dn.lhs_spec[2:])
    k = tuple(w.shape[a] for a in dn.rhs_spec[2:])
    pad = _checks.padding_pairs(fn, padding, n, negative_ok=True)  # as lax: negative crops
    eff_k = tuple(dj * (kj - 1) + 1 for dj, kj in zip(d, k))
    if isinstance(pad, str):
        pad = _checks.pairs(lax.padtype_to_pads(size, eff_k, s, pad))
    for j, (ij, (lo, hi), kj) in enumerate(zip(size, pad, eff_k)):
        if ij + lo + hi < kj:
            raise ValueError(
                f"{fn}: in spatial dimension {j} the padded input ({ij} + {lo} + {hi}) is "
                f"smaller than the dilated kernel ({kj}); add padding or use a smaller kernel."
            )
    _checks.mode_padding(fn, mode, pad, size, "the input")
    return ConvSpec(dn, s, pad, d, g, precision, preferred_element_type, mode)


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Per spatial dimension: input i, kernel k, stride s, dilation d (all tuples)."""

    i: tuple[int, ...]
    k: tuple[int, ...]
    s: tuple[int, ...]
    d: tuple[int, ...]

    @property
    def reach(self) -> tuple[int, ...]:
        """The dilated kernel's extent, ``d*(k - 1) + 1``."""
        return tuple(dj * (kj - 1) + 1 for dj, kj in zip(self.d, self.k))

    def natural(self, pad: Pairs) -> tuple[int, ...]:
        """The output size before output padding, ``(i - 1)*s - lo - hi + d*(k - 1) + 1``."""
        return tuple((ij - 1) * sj - lo - hi + rj
                     for ij, sj, (lo, hi), rj in zip(self.i, self.s, pad, self.reach))


def transpose_spec(fn, x, w, *, strides, padding, output_padding, output_shape, dilation,
                   groups, dimension_numbers, precision, preferred_element_type,
                   padding_mode="zeros") -> Spec:
    """Normalise the arguments of `conv_transpose` (see the module docstring).

    Steps: the padding mode's name; dtypes; layout; channels and groups; the
    per-dimension geometry; the target size (`output_shape`, if given);
    padding (SAME/VALID resolved against the target); output padding (from
    the target, if given); the output size rules; the output shape; the
    padding mode's rule, against the output size ``o`` (the size the forward
    conv pads).
    """
    mode = _checks.padding_mode(fn, padding_mode)
    _checks.dtypes(fn, x, w)
    preferred_element_type = _checks.preferred_element_type(fn, preferred_element_type, x.dtype)
    dn = _checks.dimension_numbers(fn, dimension_numbers, x.ndim, w.ndim)
    n = x.ndim - 2
    batch, c_in, c_out, g = _transpose_channels(fn, x, w, dn, groups, dimension_numbers)
    geo = _Geometry(i=tuple(x.shape[a] for a in dn.out_spec[2:]),
                    k=tuple(w.shape[a] for a in dn.rhs_spec[2:]),
                    s=_checks.ints(fn, "strides", strides, n, minimum=1),
                    d=_checks.ints(fn, "dilation", dilation, n, minimum=1))
    op = _checks.ints(fn, "output_padding", output_padding, n, minimum=0)
    if min(geo.i + geo.k) < 1:
        raise ValueError(f"{fn}: spatial sizes must be >= 1, got input {geo.i} and kernel {geo.k}.")
    target = None
    if output_shape is not None:
        if any(op):
            raise ValueError(
                f"{fn}: give output_padding or output_shape, not both (got "
                f"output_padding={output_padding!r} and output_shape={output_shape!r})."
            )
        target = _output_shape(fn, output_shape, n, dn, batch, c_out)
    given = _checks.padding_pairs(fn, padding, n)
    if given == "SAME":
        if any(op):
            raise ValueError(
                f"{fn}: padding='SAME' fixes the output size at input * stride; pass "
                f"output_shape instead of output_padding={output_padding!r} to pick "
                f"another size."
            )
        target = target or tuple(ij * sj for ij, sj in zip(geo.i, geo.s))
        pad = _same_padding(fn, geo, target)
    elif isinstance(given, str):  # 'VALID'
        pad = ((0, 0),) * n
    else:
        pad = given
    if target is not None:
        op = _output_padding_for(fn, geo, pad, target)
    o = _output_size(fn, geo, pad, op)
    _checks.mode_padding(fn, mode, pad, o, "the output (the forward conv's input)")

    out_shape = [0] * x.ndim
    out_shape[dn.lhs_spec[0]], out_shape[dn.lhs_spec[1]] = batch, c_out
    for a, oj in zip(dn.lhs_spec[2:], o):
        out_shape[a] = oj
    return Spec(dn, tuple(x.shape), tuple(w.shape), tuple(out_shape), geo.s, pad, op, geo.d, g,
                precision, preferred_element_type, mode)


def _transpose_channels(fn, x, w, dn, groups, dimension_numbers):
    """``(batch, C_in, C_out, groups)``; x's channels must be w's 'O' axis."""
    batch, c_in = x.shape[dn.out_spec[0]], x.shape[dn.out_spec[1]]
    w_o, w_i = w.shape[dn.rhs_spec[0]], w.shape[dn.rhs_spec[1]]
    n = x.ndim - 2
    if w_o != c_in:
        raise ValueError(
            f"{fn}: x has {c_in} channels (axis {dn.out_spec[1]} of x.shape="
            f"{tuple(x.shape)}) but w's 'O' axis (axis {dn.rhs_spec[0]} of w.shape="
            f"{tuple(w.shape)}: the forward conv's output channels, i.e. conv_transpose's "
            f"input channels) has size {w_o}."
            + _checks.layout_hint(dimension_numbers, n, transpose=True)
        )
    g = _checks.groups(fn, groups, {"the input channels": c_in})
    return batch, c_in, w_i * g, g


def _same_padding(fn, geo: _Geometry, target) -> Pairs:
    """The forward conv's SAME padding for an input of the target size."""
    for j, (oj, ij, sj) in enumerate(zip(target, geo.i, geo.s)):
        if -(-oj // sj) != ij:
            raise ValueError(
                f"{fn}: with padding='SAME' the output size in dimension {j} must "
                f"satisfy ceil(o / stride) == input size, i.e. {(ij - 1) * sj + 1} <= o "
                f"<= {ij * sj}; got output_shape {oj} for input {ij} and stride {sj}."
            )
    return _checks.pairs(lax.padtype_to_pads(target, geo.reach, geo.s, "SAME"))


def _output_padding_for(fn, geo: _Geometry, pad: Pairs, target) -> tuple[int, ...]:
    """The output padding that reaches `target`; refused when none in range does."""
    natural = geo.natural(pad)
    for j, (t, nat, sj, dj) in enumerate(zip(target, natural, geo.s, geo.d)):
        if not 0 <= t - nat < max(sj, dj):
            raise ValueError(
                f"{fn}: output_shape is unreachable in spatial dimension {j}: got "
                f"{t}, but input {geo.i[j]}, kernel {geo.k[j]}, stride {sj}, dilation {dj} "
                f"and padding {pad[j]} reach only sizes {nat} to {nat + max(sj, dj) - 1}."
            )
    return tuple(t - nat for t, nat in zip(target, natural))


def _output_size(fn, geo: _Geometry, pad: Pairs, op) -> tuple[int, ...]:
    """``o = natural + op``, with PyTorch's rules: ``op < max(s, d)`` and ``o >= 1``."""
    natural = geo.natural(pad)
    for j, (opj, sj, dj) in enumerate(zip(op, geo.s, geo.d)):
        if opj >= max(sj, dj):
            raise ValueError(
                f"{fn}: output_padding must be smaller than max(stride, dilation) in each "
                f"dimension, got output_padding={opj} with stride={sj} and dilation={dj} in "
                f"spatial dimension {j}."
            )
    for j, nat in enumerate(natural):
        if nat + op[j] < 1:  # PyTorch's rule: output_padding counts towards o >= 1
            (lo, hi), ij, sj, dj, kj = pad[j], geo.i[j], geo.s[j], geo.d[j], geo.k[j]
            plus_op = f" + {op[j]}" if op[j] else ""
            raise ValueError(
                f"{fn}: padding {pad[j]} is too large in spatial dimension {j}: the output "
                f"size (i - 1)*s - lo - hi + d*(k - 1) + 1{' + op' if op[j] else ''} = "
                f"({ij} - 1)*{sj} - {lo} - {hi} + {dj}*({kj} - 1) + 1{plus_op} would be "
                f"{nat + op[j]}; reduce padding."
            )
    return tuple(nat + opj for nat, opj in zip(natural, op))


def _output_shape(fn, output_shape, n, dn, batch, c_out) -> tuple[int, ...]:
    """Spatial sizes from `output_shape`: n spatial sizes, or the full output shape."""
    if not _checks.is_sequence(output_shape) or len(output_shape) not in (n, n + 2):
        raise ValueError(
            f"{fn}: output_shape must be a sequence of {n} spatial sizes or the full "
            f"{n + 2}-dim output shape, got {output_shape!r}."
        )
    shape = tuple(_checks.as_int(fn, "output_shape", v) for v in output_shape)
    if len(shape) == n:
        return shape
    if shape[dn.lhs_spec[0]] != batch or shape[dn.lhs_spec[1]] != c_out:
        raise ValueError(
            f"{fn}: full output_shape {shape} disagrees with the batch size {batch} or the "
            f"output channels {c_out} (kernel 'I' size x groups)."
        )
    return tuple(shape[a] for a in dn.lhs_spec[2:])
