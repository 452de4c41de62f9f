"""What the linen and nnx modules share: their configs, batch handling, the layer math.

`jax_tconv.nn.linen` and `jax_tconv.nn.nnx` only own parameters. Each
normalises its arguments into one frozen config (`transpose_config`,
`sub_pixel_config`), checks it once at construction (`check_transpose`,
`check_sub_pixel`: the functional API's own checks under the class's name, on
a stand-in input), and at call time hands the config, the input and its
parameters to `conv_transpose_layer`, `resize_conv_layer` or
`sub_pixel_conv_layer`, which build the one `Spec` of the call from the real
input (errors under the layer's name) and run the formulation on it. The
APIs (linen, nnx, and Equinox, which moves the channel axis last around these
functions) cannot drift. `ConvGeometry` is what a conv layer and its adjoint
(`jax_tconv.nn.adjoint`) share.

Kernel layouts (channels last throughout)::

    ConvTranspose  (*k, C_out // groups, C_in)   conv_transpose's default '...IO'
    ResizeConv     (*k, C_in // groups, C_out)   an ordinary conv (flax.linen.Conv)
    SubPixelConv   (*k, C_in // groups, C_out * R), R = prod(upscale_factor)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from jax_tconv import _api, _checks
from jax_tconv._conv import apply_conv
from jax_tconv._checks import padding_pairs
from jax_tconv._resize import resize_conv, resize_geometry
from jax_tconv._spec import (
    ConvSpec,
    Pairs,
    Spec,
    conv_spec,
    forward_padding,
    transpose_spec,
)
from jax_tconv.nn._shuffle import pixel_shuffle

#: LeCun normal for the ``(*k, C_out // groups, C_in)`` layout: fan_in = C_in * prod(k),
#: as for Flax's own ConvTranspose kernel ``(*k, C_in, C_out)``.
transpose_kernel_init = jax.nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)
#: LeCun normal for forward-conv kernels ``(*k, C_in // groups, C_out)`` (Flax's Conv default).
conv_kernel_init = jax.nn.initializers.lecun_normal()
bias_init = jax.nn.initializers.zeros

# The spatial size of the stand-in input used to check arguments before any
# input is seen: large enough that no sensible padding empties the output.
# Input-size-dependent rules are checked on the real input at call time.
_PROBE_SIZE = 1 << 16


# ----------------------------------------------------------------------------
# Configs: normalised, hashable (nnx keeps them as static attributes).


@dataclasses.dataclass(frozen=True)
class TransposeConfig:
    """A ConvTranspose (or ResizeConv) layer's geometry."""

    name: str
    features: int
    kernel_size: tuple[int, ...]
    strides: Any
    padding: Any
    output_padding: Any
    dilation: Any
    groups: int
    precision: Any
    dtype: Any
    method: str = "auto"
    resize_method: Any = None
    padding_mode: str = "zeros"

    @property
    def num_spatial(self) -> int:
        return len(self.kernel_size)

    def spec(self, x, kernel_shape, output_shape=None) -> Spec:
        """The transposed convolution's `Spec` for `x` ``(N, *i, C_in)``; errors name the layer.

        `kernel_shape` is the ConvTranspose kernel's ``(*k, features // groups, C_in)``.
        A ResizeConv's spec sets only the output size: its padding mode applies
        to its own convolution (`resize_conv_layer`), so the spec pads with zeros.
        """
        w = jax.ShapeDtypeStruct(tuple(kernel_shape), x.dtype)
        mode = self.padding_mode if self.resize_method is None else "zeros"
        return transpose_spec(self.name, x, w, strides=self.strides, padding=self.padding,
                              output_padding=self.output_padding, output_shape=output_shape,
                              dilation=self.dilation, groups=self.groups,
                              dimension_numbers=None, precision=self.precision,
                              preferred_element_type=None, padding_mode=mode)


@dataclasses.dataclass(frozen=True)
class SubPixelConfig:
    """A SubPixelConv layer: stride-1 conv to ``features * R`` channels, then depth-to-space."""

    name: str
    features: int
    kernel_size: tuple[int, ...]
    upscale_factor: tuple[int, ...]
    padding: Any
    dilation: Any
    groups: int
    precision: Any
    dtype: Any

    @property
    def num_spatial(self) -> int:
        return len(self.kernel_size)

    @property
    def conv_features(self) -> int:
        return self.features * math.prod(self.upscale_factor)

    def spec(self, x, kernel_shape) -> ConvSpec:
        """The stride-1 convolution's `ConvSpec` for `x`; errors name the layer."""
        w = jax.ShapeDtypeStruct(tuple(kernel_shape), x.dtype)
        return conv_spec(self.name, x, w, strides=1, padding=self.padding,
                         dilation=self.dilation, groups=self.groups, dimension_numbers=None,
                         precision=self.precision, preferred_element_type=None)


def freeze(value):
    """Lists (and nested lists) to tuples, so configs hash."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def _check_resize_method(name: str, resize_method) -> None:
    if isinstance(resize_method, jax.image.ResizeMethod):
        return
    try:
        jax.image.ResizeMethod.from_string(resize_method)
    except (ValueError, AttributeError, TypeError):
        raise ValueError(
            f"{name}: resize_method must be a jax.image.resize method such as 'nearest' "
            f"or 'linear' (alias 'bilinear'), got {resize_method!r}."
        ) from None


def transpose_config(name, *, features, kernel_size, strides, padding, output_padding,
                     dilation, groups, precision, dtype, method="auto",
                     resize_method=None, padding_mode="zeros") -> TransposeConfig:
    """Normalise a ConvTranspose/ResizeConv configuration (no input needed)."""
    return TransposeConfig(name, _checks.positive_int(name, "features", features),
                           _checks.kernel_size(name, kernel_size), freeze(strides),
                           freeze(padding), freeze(output_padding), freeze(dilation),
                           _checks.positive_int(name, "groups", groups), freeze(precision),
                           dtype, method, resize_method,
                           _checks.padding_mode(name, padding_mode))


def sub_pixel_config(name, *, features, kernel_size, upscale_factor, padding, dilation, groups,
                     precision, dtype) -> SubPixelConfig:
    """Normalise a SubPixelConv configuration (no input needed)."""
    k = _checks.kernel_size(name, kernel_size)
    return SubPixelConfig(name, _checks.positive_int(name, "features", features), k,
                          _checks.ints(name, "upscale_factor", upscale_factor, len(k), minimum=1),
                          freeze(padding), freeze(dilation),
                          _checks.positive_int(name, "groups", groups), freeze(precision), dtype)


def _stand_in(config, in_features):
    """A stand-in input ``(1, *probe, C_in)`` and C_in (`groups` when not known yet)."""
    c_in = groups = config.groups
    if in_features is not None:
        c_in = _checks.positive_int(config.name, "in_features", in_features)
    _checks.groups(config.name, groups, {"features": config.features, "in_features": c_in
                                         if in_features is not None else None})
    x = jax.ShapeDtypeStruct((1, *(_PROBE_SIZE,) * config.num_spatial, c_in), jnp.float32)
    return x, c_in


def check_transpose(config: TransposeConfig, in_features=None) -> None:
    """Check a ConvTranspose/ResizeConv config at construction, before any input.

    Runs the functional API's own checks (`transpose_spec`, under the layer's
    name) on a stand-in input of spatial size `_PROBE_SIZE` with `in_features`
    channels (or `groups` when unknown, as in linen).
    """
    if config.resize_method is None:
        _checks.method(config.name, config.method)
    else:
        _check_resize_method(config.name, config.resize_method)
    x, c_in = _stand_in(config, in_features)
    config.spec(x, (*config.kernel_size, config.features // config.groups, c_in))


def check_sub_pixel(config: SubPixelConfig, in_features=None) -> None:
    """Check a SubPixelConv config at construction (see `check_transpose`)."""
    x, c_in = _stand_in(config, in_features)
    config.spec(x, (*config.kernel_size, c_in // config.groups, config.conv_features))


# ----------------------------------------------------------------------------
# Adjoints: the geometry a convolution and its transpose share.


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """The linear part of a forward convolution ``C``, normalised: what ``Cᵀ`` needs too.

    `padding` is ``'SAME'``, ``'VALID'`` or one ``(lo, hi)`` pair per spatial
    dimension, ``>= 0`` except that a ConvTranspose whose output padding reaches
    a stride (``d > s``) has a forward conv with a negative ``hi`` (lax crops).
    A ConvTranspose with these arguments (and no output padding) computes
    ``Cᵀ``; a forward conv with them computes ``C``. `padding_mode` is what
    the padding holds (jax_tconv's names: 'zeros', 'circular', 'reflect',
    'replicate').
    """

    kernel_size: tuple[int, ...]
    strides: tuple[int, ...]
    padding: str | Pairs
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str = "zeros"

    @property
    def num_spatial(self) -> int:
        return len(self.kernel_size)


def conv_geometry(name: str, layer: str, *, kernel_size, strides, padding, dilation,
                  groups, padding_mode: str = "zeros") -> ConvGeometry:
    """Normalise a forward conv's arguments (lax's meanings); errors name `name` and `layer`.

    Negative padding (lax crops) is refused: no ConvTranspose has it.
    """
    n = len(kernel_size)
    pads = padding_pairs(name, padding, n, negative_ok=True)
    if not isinstance(pads, str) and any(v < 0 for pair in pads for v in pair):
        raise ValueError(
            f"{name}: {layer} has negative padding {padding!r} (lax crops the input): its "
            f"adjoint would pad with zeros, which no ConvTranspose does."
        )
    return ConvGeometry(tuple(kernel_size), _checks.ints(name, "strides", strides, n, minimum=1),
                        pads, _checks.ints(name, "dilation", dilation, n, minimum=1),
                        _checks.positive_int(name, "groups", groups), padding_mode)


def transpose_geometry(config: TransposeConfig) -> ConvGeometry:
    """The forward conv ``C`` of a ConvTranspose layer: its transpose is the layer.

    The padding is the layer's (strings upper-cased), read by `forward_padding`
    (``hi`` reduced by ``s * (op // s)`` where the output padding reaches a
    stride), as `Spec.forward_padding` reads a spec's.
    """
    n = config.num_spatial
    s = _checks.ints(config.name, "strides", config.strides, n, minimum=1)
    op = _checks.ints(config.name, "output_padding", config.output_padding, n, minimum=0)
    pads = padding_pairs(config.name, config.padding, n)
    if not isinstance(pads, str):
        pads = forward_padding(pads, s, op)
    return ConvGeometry(config.kernel_size, s, pads,
                        _checks.ints(config.name, "dilation", config.dilation, n, minimum=1),
                        config.groups, config.padding_mode)


# ----------------------------------------------------------------------------
# Inputs: any number of leading batch axes (none included), channels last.


def input_features(name: str, x, num_spatial: int) -> int:
    """The channel count of `x`, after checking it is ``(*batch, *spatial, C)``."""
    shape = jnp.shape(x)
    if len(shape) < num_spatial + 1:
        raise ValueError(
            f"{name}: the input must be (*batch, *spatial, features) with {num_spatial} "
            f"spatial dimension(s) (= len(kernel_size)), got shape {tuple(shape)}."
        )
    return shape[-1]


def _flatten(x, n: int):
    """``(*B, *s, C) -> (prod(B), *s, C)`` and ``B``; no batch axis gives ``B = ()``."""
    batch = x.shape[: x.ndim - n - 1]
    return x.reshape(math.prod(batch), *x.shape[x.ndim - n - 1 :]), batch


def _flat_output_shape(name: str, output_shape, batch: tuple[int, ...], n: int):
    """A full layer output shape ``(*B, *o, C)`` as conv_transpose's ``(prod(B), *o, C)``.

    Spatial sizes (and anything malformed, which `transpose_spec` then
    refuses with its own message) pass through unchanged.
    """
    b = len(batch)
    if not _checks.is_sequence(output_shape) or len(output_shape) != b + n + 1:
        return output_shape
    if tuple(output_shape[:b]) != batch:
        raise ValueError(
            f"{name}: the full output_shape {tuple(output_shape)} must keep the input's "
            f"batch axes {batch}."
        )
    return (math.prod(batch), *output_shape[b:])


def _promote(dtype, *arrays):
    """Cast to `dtype`, or (None) to the arrays' common type, as Flax layers do."""
    present = [a for a in arrays if a is not None]
    dtype = jnp.result_type(*present) if dtype is None else dtype
    return tuple(None if a is None else jnp.asarray(a, dtype) for a in arrays)


def _prepare(config, x, c_in: int):
    """Check `x` against the layer, flatten its batch axes: ``(x, batch)``."""
    x = jnp.asarray(x)
    _checks.groups(config.name, config.groups,
                   {"in_features": input_features(config.name, x, config.num_spatial)})
    if x.shape[-1] != c_in:
        raise ValueError(
            f"{config.name}: the input has {x.shape[-1]} channels (last axis of shape "
            f"{tuple(x.shape)}) but the layer was built for in_features={c_in}. The layers "
            f"are channels-last: move PyTorch's NCHW channels last with jnp.moveaxis(x, 1, -1)."
        )
    return _flatten(x, config.num_spatial)


def _add_bias(y, bias):
    if bias is None:
        return y
    return y + bias.reshape((1,) * (y.ndim - 1) + (-1,))


# ----------------------------------------------------------------------------
# The layers' math: one Spec per call, built from the real input.


def conv_transpose_layer(config: TransposeConfig, x, kernel, bias, *, output_shape=None):
    """``conv_transpose(x, kernel) + bias`` for ``x`` of shape ``(*batch, *i, C_in)``.

    `kernel` is ``(*k, C_out // groups, C_in)``; the result ``(*batch, *o, C_out)``.
    """
    x, batch = _prepare(config, x, kernel.shape[-1])
    output_shape = _flat_output_shape(config.name, output_shape, batch, config.num_spatial)
    x, kernel, bias = _promote(config.dtype, x, kernel, bias)
    spec = config.spec(x, kernel.shape, output_shape)
    y = _add_bias(_api.apply(config.method, x, kernel, spec, fn=config.name), bias)
    return y.reshape(*batch, *y.shape[1:])


def resize_conv_layer(config: TransposeConfig, x, kernel, bias, *, output_shape=None):
    """Resize by the strides, then an ordinary stride-1 conv, to ConvTranspose's size.

    `kernel` is ``(*k, C_in // groups, C_out)``; see `jax_tconv._resize` for the padding,
    which the layer's padding mode fills (a negative amount, a crop, is none).
    """
    x, batch = _prepare(config, x, kernel.shape[-2] * config.groups)
    output_shape = _flat_output_shape(config.name, output_shape, batch, config.num_spatial)
    x, kernel, bias = _promote(config.dtype, x, kernel, bias)
    g = config.groups
    spec = config.spec(x, (*config.kernel_size, config.features // g, x.shape[-1]), output_shape)
    if config.padding_mode != "zeros":
        size, pads = resize_geometry(spec)   # a negative amount crops: no mode involved
        _checks.mode_padding(config.name, config.padding_mode, pads, size, "the resized input")
    y = _add_bias(resize_conv(x, kernel, spec, resize_method=config.resize_method,
                              padding_mode=config.padding_mode), bias)
    return y.reshape(*batch, *y.shape[1:])


def sub_pixel_conv_layer(config: SubPixelConfig, x, kernel, bias):
    """ESPCN: conv to ``features * R`` channels (+ bias), then `pixel_shuffle`.

    `kernel` is ``(*k, C_in // groups, features * R)`` and `bias` ``(features * R,)``.
    """
    x, batch = _prepare(config, x, kernel.shape[-2] * config.groups)
    x, kernel, bias = _promote(config.dtype, x, kernel, bias)
    y = _add_bias(apply_conv(x, kernel, config.spec(x, kernel.shape)), bias)
    y = pixel_shuffle(y, config.upscale_factor)
    return y.reshape(*batch, *y.shape[1:])


# ----------------------------------------------------------------------------
# What `jax_tconv.nn.adjoint` refuses, in every front end's words.

NOT_ONE_CONV = ("is a resize or a depth-to-space composed with a convolution, not one "
                "convolution; its adjoint is no single layer here")


def unsupported(what: str, layer: Any, reason: str) -> ValueError:
    """The error of `jax_tconv.nn.adjoint` for a `what` layer (a framework's name) it refuses."""
    return ValueError(f"adjoint: {what} {type(layer).__name__} {reason}.")
