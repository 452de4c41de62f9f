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

Pairs = tuple[tuple[int, int], ...]

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


def default_dimension_numbers(num_spatial: int) -> tuple[str, str, str]:
    """Channels-last specs for `num_spatial` dims: ('NHWC', 'HWIO', 'NHWC') in 2-D."""
    if num_spatial <= 3:
        sp = "DHW"[3 - num_spatial :]
    else:  # lax accepts any distinct letters; keep them readable.
        sp = "".join(chr(ord("a") + j) for j in range(num_spatial))
    return (f"N{sp}C", f"{sp}IO", f"N{sp}C")


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
# Validators of the geometry. Each raises one message naming the function and argument.


def _pairs(pads) -> Pairs:
    """lax's padding lists as a hashable tuple of ``(lo, hi)`` int pairs."""
    return tuple((int(lo), int(hi)) for lo, hi in pads)


def padding_pairs(fn: str, padding: Any, n: int, *, negative_ok: bool = False) -> Pairs | str:
    """'SAME'/'VALID' (upper-cased), or one (lo, hi) per dimension (>= 0 unless negative_ok)."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode not in ("SAME", "VALID"):
            raise ValueError(
                f"{fn}: padding string must be 'SAME' or 'VALID' (any case, as in lax), "
                f"got {padding!r}."
            )
        return mode
    if isinstance(padding, Sequence):
        if len(padding) != n:
            raise ValueError(
                f"{fn}: padding must be an int, 'SAME', 'VALID', or a sequence of {n} "
                f"ints or (lo, hi) pairs (one per spatial dimension), got {padding!r}."
            )
        pairs = []
        for p in padding:
            if isinstance(p, Sequence) and not isinstance(p, str):
                if len(p) != 2:
                    raise ValueError(
                        f"{fn}: each padding pair must be (lo, hi), got {p!r} in {padding!r}."
                    )
                pairs.append((_checks.as_int(fn, "padding", p[0]),
                              _checks.as_int(fn, "padding", p[1])))
            else:
                v = _checks.as_int(fn, "padding", p)
                pairs.append((v, v))
        out = tuple(pairs)
    else:
        v = _checks.as_int(fn, "padding", padding)
        out = ((v, v),) * n
    if not negative_ok and any(v < 0 for pair in out for v in pair):
        raise ValueError(f"{fn}: padding must be >= 0, got {padding!r}.")
    return out


def _dimension_numbers(fn: str, dimension_numbers: Any, x_ndim: int, w_ndim: int):
    if x_ndim != w_ndim:
        raise ValueError(
            f"{fn}: x and w must have the same rank (batch + channel + spatial dims), "
            f"got x.ndim={x_ndim} and w.ndim={w_ndim}."
        )
    if x_ndim < 3:
        raise ValueError(
            f"{fn}: x must have rank >= 3 (batch, channels and at least one spatial "
            f"dimension), got rank {x_ndim}; add a batch axis with x[None] if needed."
        )
    if dimension_numbers is None:
        dimension_numbers = default_dimension_numbers(x_ndim - 2)
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        specs = tuple(dimension_numbers)
        if not all(sorted(s) == list(range(x_ndim)) for s in specs):
            raise ValueError(
                f"{fn}: dimension_numbers {dimension_numbers!r} must hold three "
                f"permutations of range({x_ndim})."
            )
        return dimension_numbers
    if (
        not isinstance(dimension_numbers, Sequence)
        or len(dimension_numbers) != 3
        or not all(isinstance(s, str) for s in dimension_numbers)
    ):
        raise TypeError(
            f"{fn}: dimension_numbers must be None, a lax.ConvDimensionNumbers, or a "
            f"tuple of three strings such as ('NHWC', 'HWIO', 'NHWC'), got {dimension_numbers!r}."
        )
    lhs, rhs, out = dimension_numbers
    ok = (
        all(len(s) == x_ndim for s in dimension_numbers)
        and len(set(lhs)) == len(lhs)
        and set(lhs) == set(out)
        and "N" in lhs and "C" in lhs
        and len(set(rhs)) == len(rhs)
        and "O" in rhs and "I" in rhs
        and set(rhs) - {"O", "I"} == set(lhs) - {"N", "C"}
    )
    if not ok:
        raise ValueError(
            f"{fn}: malformed dimension_numbers {tuple(dimension_numbers)!r} for rank-{x_ndim} "
            f"arrays. Rule: three strings of length {x_ndim}; the input and output specs "
            f"use 'N', 'C' and one letter per spatial dimension, the kernel spec 'O', 'I' "
            f"and the same spatial letters, e.g. {default_dimension_numbers(x_ndim - 2)!r}."
        )
    return lax.conv_dimension_numbers((0,) * x_ndim, (0,) * x_ndim, tuple(dimension_numbers))


def _check_dtypes(fn: str, x, w) -> None:
    """x and w: one floating-point or complex dtype (lax's rule; no silent promotion)."""
    both = f"x.dtype={x.dtype} and w.dtype={w.dtype}"
    if not (jnp.issubdtype(x.dtype, jnp.inexact) and jnp.issubdtype(w.dtype, jnp.inexact)):
        raise TypeError(
            f"{fn}: x and w must be floating point or complex, got {both}; cast the "
            f"integer one(s) to a float dtype, e.g. x.astype(jnp.float32)."
        )
    if x.dtype != w.dtype:
        common = jnp.promote_types(x.dtype, w.dtype).name
        raise TypeError(
            f"{fn}: x and w must have the same dtype, got {both}; cast both to one, e.g. "
            f"x.astype(jnp.{common}) and w.astype(jnp.{common}). Use preferred_element_type "
            f"to choose the accumulation/output dtype."
        )


def _check_preferred(fn: str, preferred_element_type, dtype) -> None:
    """lax's rule: the same kind (floating or complex) as x and at least as wide."""
    if preferred_element_type is None:
        return
    kind = jnp.complexfloating if jnp.issubdtype(dtype, jnp.complexfloating) else jnp.floating
    try:
        pet = jnp.dtype(preferred_element_type)
    except TypeError:
        pet = None
    if pet is None or not jnp.issubdtype(pet, kind) or pet.itemsize < dtype.itemsize:
        raise TypeError(
            f"{fn}: preferred_element_type must be a {kind.__name__} dtype at least as wide "
            f"as x's {dtype} (it sets the accumulation and output dtype), got "
            f"{preferred_element_type!r}."
        )


def _layout_hint(dimension_numbers, n: int, *, transpose: bool) -> str:
    """How to fix a channel mismatch that comes from a layout mix-up."""
    if n > 3:
        return " Check w's layout against dimension_numbers."
    sp = "DHW"[3 - n:]
    torch_dn = (f"NC{sp}", f"OI{sp}", f"NC{sp}")
    given = (f"dimension_numbers={tuple(dimension_numbers)!r}" if dimension_numbers is not None
             else f"the default layout {default_dimension_numbers(n)!r}")
    what = "ConvTranspose" if transpose else "Conv"
    hint = (f" The arrays were read with {given}. If x is channels-first (PyTorch's layout) "
            f"and w a PyTorch {what}{n}d weight, pass dimension_numbers={torch_dn!r}")
    if transpose:
        hint += ("; for channels-last x, convert a PyTorch weight with "
                 "jax_tconv.interop.from_torch(weight, bias)['kernel']")
    return hint + "."


# ----------------------------------------------------------------------------
# The two spec builders.


def conv_spec(fn, x, w, *, strides, padding, dilation, groups, dimension_numbers,
              precision, preferred_element_type, padding_mode="zeros") -> ConvSpec:
    """Normalise the arguments of the forward `conv`.

    With a `padding_mode` other than 'zeros' the padding (SAME's too) is filled
    from the input by that mode, under PyTorch's rules (`_checks.mode_padding`).
    """
    mode = _checks.padding_mode(fn, padding_mode)
    _check_dtypes(fn, x, w)
    dn = _dimension_numbers(fn, dimension_numbers, x.ndim, w.ndim)
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
            + _layout_hint(dimension_numbers, n, transpose=False)
        )
    size = tuple(x.shape[a] for a in dn.lhs_spec[2:])
    k = tuple(w.shape[a] for a in dn.rhs_spec[2:])
    pad = padding_pairs(fn, padding, n, negative_ok=True)  # as lax: negative crops
    eff_k = tuple(dj * (kj - 1) + 1 for dj, kj in zip(d, k))
    if isinstance(pad, str):
        pad = _pairs(lax.padtype_to_pads(size, eff_k, s, pad))
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
    _check_dtypes(fn, x, w)
    _check_preferred(fn, preferred_element_type, x.dtype)
    dn = _dimension_numbers(fn, dimension_numbers, x.ndim, w.ndim)
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
    given = padding_pairs(fn, padding, n)
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
            + _layout_hint(dimension_numbers, n, transpose=True)
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
    return _pairs(lax.padtype_to_pads(target, geo.reach, geo.s, "SAME"))


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
