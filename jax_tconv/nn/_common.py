"""What the linen and nnx modules share: argument checks, batch handling, the layer math.

`jax_tconv.nn.linen` and `jax_tconv.nn.nnx` only own parameters. Each builds
one frozen config here at construction (so bad arguments fail early, with the
functional API's messages under the class's name) and hands it, with the
input and its parameters, to one of `conv_transpose_layer`,
`resize_conv_layer` or `sub_pixel_conv_layer`. The two APIs cannot drift.

Kernel layouts (channels last throughout)::

    ConvTranspose  (*k, C_out // groups, C_in)   conv_transpose's default '...IO'
    ResizeConv     (*k, C_in // groups, C_out)   an ordinary conv (flax.linen.Conv)
    SubPixelConv   (*k, C_in // groups, C_out * R), R = prod(upscale_factor)
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_tconv import _api
from jax_tconv._conv import apply_conv
from jax_tconv._spec import conv_spec, default_dimension_numbers, transpose_spec
from jax_tconv.nn._shuffle import _factors, pixel_shuffle

#: LeCun normal for the ``(*k, C_out // groups, C_in)`` layout: fan_in = C_in * prod(k),
#: as for Flax's own ConvTranspose kernel ``(*k, C_in, C_out)``.
transpose_kernel_init = jax.nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)
#: LeCun normal for forward-conv kernels ``(*k, C_in // groups, C_out)`` (Flax's Conv default).
conv_kernel_init = jax.nn.initializers.lecun_normal()
bias_init = jax.nn.initializers.zeros

# The spatial size of the stand-in input used to check arguments before any
# input is seen: large enough that no sensible padding empties the output.
# Input-size-dependent rules are checked again, on the real input, at call time.
_PROBE_SIZE = 1 << 16


# ----------------------------------------------------------------------------
# Configs: normalised, hashable (nnx keeps them as static attributes).


@dataclasses.dataclass(frozen=True)
class TransposeConfig:
    """A ConvTranspose (or ResizeConv) layer's geometry, checked at construction."""

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
    resize_method: str | None = None

    @property
    def num_spatial(self) -> int:
        return len(self.kernel_size)

    def transpose_kwargs(self, output_shape=None) -> dict:
        return dict(strides=self.strides, padding=self.padding,
                    output_padding=self.output_padding, output_shape=output_shape,
                    dilation=self.dilation, groups=self.groups, precision=self.precision)


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


def freeze(value):
    """Lists (and nested lists) to tuples, so configs hash."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def positive_int(name: str, arg: str, value) -> int:
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{name}: {arg} must be an int, got the bool {value!r}.")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name}: {arg} must be an int, got {value!r} of type {type(value).__name__}."
        ) from None
    if v < 1:
        raise ValueError(f"{name}: {arg} must be >= 1, got {v}.")
    return v


def kernel_size_tuple(name: str, kernel_size) -> tuple[int, ...]:
    """`kernel_size` as a tuple; its length is the number of spatial dimensions."""
    if not isinstance(kernel_size, Sequence) or isinstance(kernel_size, str) or not kernel_size:
        raise TypeError(
            f"{name}: kernel_size must be a non-empty sequence of ints, one per spatial "
            f"dimension (its length sets the rank: (3,) for 1-D, (3, 3) for 2-D), got "
            f"{kernel_size!r}."
        )
    return tuple(positive_int(name, "kernel_size", k) for k in kernel_size)


def _check_method(name: str, method) -> str:
    methods = _api.METHODS  # read at call time: the list may grow
    if not isinstance(method, str) or (method != "auto" and method not in methods):
        raise ValueError(
            f"{name}: unknown method {method!r}; choose 'auto' or one of "
            f"{', '.join(map(repr, methods))}."
        )
    return method


def _check_groups(name: str, groups, channels: dict[str, int | None]) -> int:
    g = positive_int(name, "groups", groups)
    for arg, c in channels.items():
        if c is not None and c % g:
            raise ValueError(
                f"{name}: groups={g} must divide {arg}, but {c} is not divisible by {g}."
            )
    return g


def _probe(shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


def _check_resize_method(name: str, resize_method) -> str:
    if isinstance(resize_method, jax.image.ResizeMethod):
        return resize_method
    try:
        jax.image.ResizeMethod.from_string(resize_method)
    except (ValueError, AttributeError, TypeError):
        raise ValueError(
            f"{name}: resize_method must be a jax.image.resize method such as 'nearest' "
            f"or 'linear' (alias 'bilinear'), got {resize_method!r}."
        ) from None
    return resize_method


def transpose_config(name, *, features, kernel_size, strides, padding, output_padding,
                     dilation, groups, precision, dtype, in_features=None, method="auto",
                     resize_method=None) -> TransposeConfig:
    """Check a ConvTranspose/ResizeConv configuration with no input yet.

    Runs the functional API's own checks (`transpose_spec`, under `name`) on a
    stand-in input of spatial size `_PROBE_SIZE` with `in_features` channels
    (or `groups` when unknown, as in linen).
    """
    k = kernel_size_tuple(name, kernel_size)
    features = positive_int(name, "features", features)
    if in_features is not None:
        in_features = positive_int(name, "in_features", in_features)
    g = _check_groups(name, groups, {"features": features, "in_features": in_features})
    if resize_method is None:
        _check_method(name, method)
    else:
        _check_resize_method(name, resize_method)
    c_in = in_features if in_features is not None else g
    config = TransposeConfig(name, features, k, freeze(strides), freeze(padding),
                             freeze(output_padding), freeze(dilation), g, freeze(precision),
                             dtype, method, resize_method)
    x = _probe((1, *(_PROBE_SIZE,) * len(k), c_in))
    w = _probe((*k, features // g, c_in))
    _spec(config, x, w)
    return config


def sub_pixel_config(name, *, features, kernel_size, upscale_factor, padding, dilation, groups,
                     precision, dtype, in_features=None) -> SubPixelConfig:
    """Check a SubPixelConv configuration with no input yet (see `transpose_config`)."""
    k = kernel_size_tuple(name, kernel_size)
    features = positive_int(name, "features", features)
    if in_features is not None:
        in_features = positive_int(name, "in_features", in_features)
    g = _check_groups(name, groups, {"features": features, "in_features": in_features})
    r = _factors(name, upscale_factor, len(k))
    config = SubPixelConfig(name, features, k, r, freeze(padding), freeze(dilation), g,
                            freeze(precision), dtype)
    c_in = in_features if in_features is not None else g
    x = _probe((1, *(_PROBE_SIZE,) * len(k), c_in))
    w = _probe((*k, c_in // g, config.conv_features))
    _conv_spec(config, x, w)
    return config


def _spec(config: TransposeConfig, x, w, output_shape=None):
    return transpose_spec(config.name, x, w, dimension_numbers=None, preferred_element_type=None,
                          **config.transpose_kwargs(output_shape))


def _conv_spec(config: SubPixelConfig, x, w):
    return conv_spec(config.name, x, w, strides=1, padding=config.padding,
                     dilation=config.dilation, groups=config.groups, dimension_numbers=None,
                     precision=config.precision, preferred_element_type=None)


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


def _spatial_output_shape(name: str, output_shape, x_shape, n: int, features: int):
    """`output_shape` as n spatial sizes; a full output shape is checked and cut down."""
    if output_shape is None:
        return None
    if not isinstance(output_shape, Sequence) or isinstance(output_shape, str):
        raise TypeError(
            f"{name}: output_shape must be a sequence of ints, got {output_shape!r}."
        )
    shape = tuple(output_shape)
    if len(shape) == n:
        return shape
    expected = len(x_shape)
    if len(shape) == expected:
        batch = tuple(x_shape[: expected - n - 1])
        if shape[: expected - n - 1] != batch or shape[-1] != features:
            raise ValueError(
                f"{name}: the full output_shape {shape} must keep the input's batch axes "
                f"{batch} and end with features={features}."
            )
        return shape[expected - n - 1 : -1]
    raise ValueError(
        f"{name}: output_shape must be the {n} spatial sizes or the full rank-{expected} "
        f"output shape, got {output_shape!r}."
    )


def _promote(dtype, *arrays):
    """Cast to `dtype`, or (None) to the arrays' common type, as Flax layers do."""
    present = [a for a in arrays if a is not None]
    dtype = jnp.result_type(*present) if dtype is None else dtype
    return tuple(None if a is None else jnp.asarray(a, dtype) for a in arrays)


def _check_channels(name: str, x_shape, c_in: int) -> None:
    if x_shape[-1] != c_in:
        raise ValueError(
            f"{name}: the input has {x_shape[-1]} channels (last axis of shape "
            f"{tuple(x_shape)}) but the layer was built for in_features={c_in}."
        )


def _add_bias(y, bias):
    if bias is None:
        return y
    return y + bias.reshape((1,) * (y.ndim - 1) + (-1,))


# ----------------------------------------------------------------------------
# The layers' math.


def conv_transpose_layer(config: TransposeConfig, x, kernel, bias, *, output_shape=None):
    """``conv_transpose(x, kernel) + bias`` for ``x`` of shape ``(*batch, *i, C_in)``.

    `kernel` is ``(*k, C_out // groups, C_in)``; the result ``(*batch, *o, C_out)``.
    """
    n = config.num_spatial
    x = jnp.asarray(x)
    input_features(config.name, x, n)
    _check_channels(config.name, x.shape, kernel.shape[-1])
    spatial = _spatial_output_shape(config.name, output_shape, x.shape, n, config.features)
    x, batch = _flatten(x, n)
    x, kernel, bias = _promote(config.dtype, x, kernel, bias)
    _spec(config, x, kernel, spatial)  # errors name the layer, not conv_transpose
    y = _api.conv_transpose(x, kernel, method=config.method, **config.transpose_kwargs(spatial))
    y = _add_bias(y, bias)
    return y.reshape(*batch, *y.shape[1:])


def resize_geometry(config: TransposeConfig, x_shape, output_shape=None):
    """Resized size ``i * s`` and conv padding for ResizeConv on input ``(N, *i, C_in)``.

    The output size ``o`` is the matching ConvTranspose's, from the one geometry
    (`transpose_spec`), so the two layers always agree. The conv of the resized
    input is padded by ``t = o - i*s + d*(k - 1)`` in total: ``t // 2`` before and
    the rest after (lax's 'SAME' split; a negative ``t`` crops).

    Returns:
      ``(resized_spatial, pads, dilation)``.
    """
    k, g = config.kernel_size, config.groups
    w = _probe((*k, config.features // g, x_shape[-1]))
    spec = _spec(config, _probe(x_shape), w, output_shape)
    i, s, d, o = x_shape[1:-1], spec.strides, spec.dilation, spec.out_spatial
    pads = []
    for oj, ij, sj, dj, kj in zip(o, i, s, d, k):
        t = oj - ij * sj + dj * (kj - 1)
        pads.append((t // 2, t - t // 2))
    return tuple(ij * sj for ij, sj in zip(i, s)), tuple(pads), d


def resize_conv_layer(config: TransposeConfig, x, kernel, bias, *, output_shape=None):
    """Resize by the strides, then an ordinary stride-1 conv, to ConvTranspose's size.

    `kernel` is ``(*k, C_in // groups, C_out)``; see `resize_geometry` for the padding.
    """
    n = config.num_spatial
    x = jnp.asarray(x)
    input_features(config.name, x, n)
    _check_channels(config.name, x.shape, kernel.shape[-2] * config.groups)
    spatial = _spatial_output_shape(config.name, output_shape, x.shape, n, config.features)
    x, batch = _flatten(x, n)
    x, kernel, bias = _promote(config.dtype, x, kernel, bias)
    size, pads, d = resize_geometry(config, x.shape, spatial)
    up = jax.image.resize(x, (x.shape[0], *size, x.shape[-1]), method=config.resize_method)
    y = lax.conv_general_dilated(up, kernel, (1,) * n, pads, rhs_dilation=d,
                                 dimension_numbers=default_dimension_numbers(n),
                                 feature_group_count=config.groups, precision=config.precision)
    y = _add_bias(y, bias)
    return y.reshape(*batch, *y.shape[1:])


def sub_pixel_conv_layer(config: SubPixelConfig, x, kernel, bias):
    """ESPCN: conv to ``features * R`` channels (+ bias), then `pixel_shuffle`.

    `kernel` is ``(*k, C_in // groups, features * R)`` and `bias` ``(features * R,)``.
    """
    n = config.num_spatial
    x = jnp.asarray(x)
    input_features(config.name, x, n)
    _check_channels(config.name, x.shape, kernel.shape[-2] * config.groups)
    x, batch = _flatten(x, n)
    x, kernel, bias = _promote(config.dtype, x, kernel, bias)
    y = _add_bias(apply_conv(x, kernel, _conv_spec(config, x, kernel)), bias)
    y = pixel_shuffle(y, config.upscale_factor)
    return y.reshape(*batch, *y.shape[1:])
