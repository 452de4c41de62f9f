"""Equinox layers: ConvTranspose, ResizeConv, SubPixelConv, PixelShuffle.

The same layers as `jax_tconv.nn.linen` and `jax_tconv.nn.nnx` (one shared
implementation: each layer moves the channel axis last, runs it, and moves it
back), with Equinox's conventions: unbatched channels-first input
``(C, *spatial)`` (map over a batch with `jax.vmap`), ``num_spatial_dims``
first, ``stride``, ``use_bias``, ``dtype`` (of the parameters) and ``key=`` as
in ``equinox.nn.ConvTranspose``, Equinox's uniform initialization, and
Equinox's parameter layouts::

    ConvTranspose  weight (in_channels, out_channels // groups, *k)
    ResizeConv     weight (out_channels, in_channels // groups, *k)
    SubPixelConv   weight (out_channels * R, in_channels // groups, *k),  R = prod(upscale_factor)
    bias           (channels, 1, ..., 1)

The ConvTranspose weight is the forward convolution's kernel in Equinox's own
layout: the ``weight`` of the ``equinox.nn.Conv`` from ``out_channels`` to
``in_channels`` that it transposes (`jax_tconv.nn.adjoint` builds one on the
other's array), and PyTorch's ``ConvTranspose*d.weight`` as is. ``padding`` has
jax_tconv's (and PyTorch's) meaning: the forward conv's padding, an int, one
int or ``(lo, hi)`` pair per dimension, ``'SAME'`` or ``'VALID'``.

This module imports Equinox; ``import jax_tconv.nn`` does not.
`jax_tconv.interop.from_equinox` converts an ``equinox.nn.ConvTranspose``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp

from jax_tconv import _checks
from jax_tconv.nn import _common
from jax_tconv.nn._common import NOT_ONE_CONV, unsupported
from jax_tconv.nn._shuffle import pixel_shuffle
from jax_tconv.typing import ArrayLike, DTypeLike, IntOrSequence, Padding, Precision

__all__ = ["ConvTranspose", "PixelShuffle", "ResizeConv", "SubPixelConv"]

_M = TypeVar("_M", bound=eqx.Module)


def _spatial(name: str, num_spatial_dims: Any) -> int:
    return _checks.positive_int(name, "num_spatial_dims", num_spatial_dims)


def _geometry(name: str, num_spatial_dims, kernel_size, stride, padding, output_padding,
              dilation) -> tuple[int, tuple[int, ...], dict[str, Any]]:
    """Equinox's normalisation: one int per dimension, padding as pairs or a string.

    Errors name Equinox's arguments (``stride``, not ``strides``).
    """
    n = _spatial(name, num_spatial_dims)
    return n, _checks.ints(name, "kernel_size", kernel_size, n, minimum=1), dict(
        strides=_checks.ints(name, "stride", stride, n, minimum=1),
        padding=_common.padding_pairs(name, padding, n),
        output_padding=_checks.ints(name, "output_padding", output_padding, n, minimum=0),
        dilation=_checks.ints(name, "dilation", dilation, n, minimum=1))


def _dtype(dtype: DTypeLike | None):
    """Equinox's default: float32, or float64 under ``jax_enable_x64``."""
    return jnp.result_type(float) if dtype is None else dtype


def _init(key, weight_shape, c_out: int, n: int, fan_in: int, dtype, use_bias: bool):
    """Equinox's init: uniform on ``±1/sqrt(fan_in)`` for the weight and the bias."""
    lim = 1 / math.sqrt(fan_in)
    wkey, bkey = jax.random.split(key)
    weight = jax.random.uniform(wkey, weight_shape, dtype, -lim, lim)
    bias = (jax.random.uniform(bkey, (c_out, *(1,) * n), dtype, -lim, lim) if use_bias
            else None)
    return weight, bias


def _kernel(weight: jax.Array) -> jax.Array:
    """``(A, B, *k) -> (*k, B, A)``: an Equinox weight as the channels-last kernel."""
    n = weight.ndim - 2
    return jnp.transpose(weight, (*range(2, n + 2), 1, 0))


def _flat_bias(bias: jax.Array | None) -> jax.Array | None:
    return None if bias is None else bias.reshape(-1)


def _channels_last(name: str, x, n: int, in_channels: int) -> jax.Array:
    """Check an unbatched channels-first input and move its channels last."""
    x = jnp.asarray(x)
    if x.ndim != n + 1:
        raise ValueError(
            f"{name}: the input must be unbatched, (in_channels, *spatial) with {n} spatial "
            f"dimension(s), got shape {tuple(x.shape)}; map the layer over a batch with "
            f"jax.vmap(layer)."
        )
    if x.shape[0] != in_channels:
        raise ValueError(
            f"{name}: the input has {x.shape[0]} channels (first axis of shape "
            f"{tuple(x.shape)}) but the layer was built for in_channels={in_channels}. "
            f"Equinox layers are channels-first: move channels-last data's channels first "
            f"with jnp.moveaxis(x, -1, 0)."
        )
    return jnp.moveaxis(x, 0, -1)


def _output_shape(output_shape, n: int):
    """A full channels-first output shape ``(C, *o)`` as channels-last ``(*o, C)``."""
    if _checks.is_sequence(output_shape) and len(output_shape) == n + 1:
        return (*output_shape[1:], output_shape[0])
    return output_shape


class _Upsampling(eqx.Module):
    """Fields and properties shared by ConvTranspose and ResizeConv.

    As in Equinox, ``kernel_size``, ``stride``, ``output_padding`` and
    ``dilation`` read as one int per dimension, ``padding`` as ``(lo, hi)``
    pairs or ``'SAME'`` / ``'VALID'``.
    """

    weight: jax.Array
    bias: jax.Array | None
    num_spatial_dims: int = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    config: _common.TransposeConfig = eqx.field(static=True)

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return self.config.kernel_size

    @property
    def stride(self) -> tuple[int, ...]:
        return self.config.strides

    @property
    def padding(self) -> str | tuple[tuple[int, int], ...]:
        return self.config.padding

    @property
    def output_padding(self) -> tuple[int, ...]:
        return self.config.output_padding

    @property
    def dilation(self) -> tuple[int, ...]:
        return self.config.dilation

    @property
    def groups(self) -> int:
        return self.config.groups

    @property
    def use_bias(self) -> bool:
        return self.bias is not None


class ConvTranspose(_Upsampling):
    """Transposed convolution with PyTorch's semantics (`jax_tconv.conv_transpose`), Equinox-style.

    Per spatial dimension the output size is
    ``o = (i - 1)*s - lo - hi + d*(k - 1) + 1 + output_padding``.

    Args:
      num_spatial_dims: ``n``, the number of spatial dimensions.
      in_channels, out_channels: ``C_in`` and ``C_out``.
      kernel_size: an int or one int per spatial dimension.
      stride, dilation: an int or one int per spatial dimension.
      padding: the forward conv's padding (PyTorch's meaning): an int, one int or
        ``(lo, hi)`` pair per dimension, ``'SAME'`` or ``'VALID'``.
      output_padding: extra size at the high end, ``< max(stride, dilation)``.
      groups: divides both channel counts.
      padding_mode: what the forward conv's padding holds: ``"zeros"``,
        ``"circular"``, ``"reflect"`` or ``"replicate"``, in any case: PyTorch's
        names (as in `jax_tconv.conv_transpose`) or ``equinox.nn.Conv``'s
        ``'ZEROS'``, ``'CIRCULAR'``, ``'REFLECT'``, ``'REPLICATE'``. The layer
        keeps the lower-case name (``config.padding_mode``).
      use_bias: add a bias ``(out_channels, 1, ..., 1)``.
      dtype: the parameters' dtype (default float32, float64 under x64); the
        computation promotes input and parameters.
      precision: passed to lax.
      method: ``"auto"`` or one of `jax_tconv.METHODS`.
      key: a `jax.random.key` for the initialization (Equinox's: uniform on
        ``±1/sqrt(in_channels // groups * prod(k))``).

    The weight is ``(in_channels, out_channels // groups, *k)``: PyTorch's
    ``ConvTranspose*d.weight`` unchanged, and the ``weight`` of the
    ``equinox.nn.Conv`` this layer transposes.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jax_tconv.nn import equinox as teqx
      >>> layer = teqx.ConvTranspose(2, 5, 3, 4, stride=2, padding=1, key=jax.random.key(0))
      >>> layer.weight.shape, layer(jnp.ones((5, 8, 8))).shape
      ((5, 3, 4, 4), (3, 16, 16))
      >>> jax.vmap(layer)(jnp.ones((7, 5, 8, 8))).shape      # a batch
      (7, 3, 16, 16)
    """

    def __init__(self, num_spatial_dims: int, in_channels: int, out_channels: int,
                 kernel_size: IntOrSequence, *, stride: IntOrSequence = 1,
                 padding: Padding = 0, output_padding: IntOrSequence = 0,
                 dilation: IntOrSequence = 1, groups: int = 1, padding_mode: str = "zeros",
                 use_bias: bool = True, dtype: DTypeLike | None = None,
                 precision: Precision = None, method: str = "auto", key: jax.Array):
        name = type(self).__name__
        n, k, geometry = _geometry(name, num_spatial_dims, kernel_size, stride, padding,
                                   output_padding, dilation)
        self.config = _common.transpose_config(
            name, features=out_channels, kernel_size=k, **geometry, groups=groups,
            precision=precision, dtype=None, method=method,
            padding_mode=_checks.padding_mode(name, padding_mode, any_case=True))
        _common.check_transpose(self.config, in_channels)
        self.num_spatial_dims, self.in_channels, self.out_channels = n, in_channels, out_channels
        self.weight, self.bias = _init(key, (in_channels, out_channels // groups, *k),
                                       out_channels, n, in_channels // groups * math.prod(k),
                                       _dtype(dtype), use_bias)

    def __call__(self, x: ArrayLike, *, output_shape: Sequence[int] | None = None,
                 key: jax.Array | None = None) -> jax.Array:
        """``(in_channels, *i) -> (out_channels, *o)``.

        Args:
          x: unbatched, channels-first input.
          output_shape: the output's spatial sizes (or its full shape ``(C_out, *o)``)
            instead of `output_padding`.
          key: ignored (Equinox's convention).
        """
        del key
        n, name = self.num_spatial_dims, self.config.name
        x = _channels_last(name, x, n, self.in_channels)
        y = _common.conv_transpose_layer(self.config, x, _kernel(self.weight),
                                         _flat_bias(self.bias),
                                         output_shape=_output_shape(output_shape, n))
        return jnp.moveaxis(y, -1, 0)


class ResizeConv(_Upsampling):
    """Resize by the strides, then an ordinary convolution (see `jax_tconv.nn.linen.ResizeConv`).

    Same output size as the `ConvTranspose` with the same arguments: a drop-in,
    checkerboard-free replacement. Weight ``(out_channels, in_channels // groups,
    *k)`` (``equinox.nn.Conv``'s layout), ``resize_method`` default ``'nearest'``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jax_tconv.nn import equinox as teqx
      >>> layer = teqx.ResizeConv(2, 5, 3, 4, stride=2, padding=1, key=jax.random.key(0))
      >>> layer.weight.shape, layer(jnp.ones((5, 8, 8))).shape
      ((3, 5, 4, 4), (3, 16, 16))
    """

    def __init__(self, num_spatial_dims: int, in_channels: int, out_channels: int,
                 kernel_size: IntOrSequence, *, stride: IntOrSequence = 1,
                 padding: Padding = 0, output_padding: IntOrSequence = 0,
                 dilation: IntOrSequence = 1, groups: int = 1, use_bias: bool = True,
                 resize_method: str = "nearest", dtype: DTypeLike | None = None,
                 precision: Precision = None, key: jax.Array):
        name = type(self).__name__
        n, k, geometry = _geometry(name, num_spatial_dims, kernel_size, stride, padding,
                                   output_padding, dilation)
        self.config = _common.transpose_config(
            name, features=out_channels, kernel_size=k, **geometry, groups=groups,
            precision=precision, dtype=None, resize_method=resize_method)
        _common.check_transpose(self.config, in_channels)
        self.num_spatial_dims, self.in_channels, self.out_channels = n, in_channels, out_channels
        self.weight, self.bias = _init(key, (out_channels, in_channels // groups, *k),
                                       out_channels, n, in_channels // groups * math.prod(k),
                                       _dtype(dtype), use_bias)

    def __call__(self, x: ArrayLike, *, output_shape: Sequence[int] | None = None,
                 key: jax.Array | None = None) -> jax.Array:
        """``(in_channels, *i) -> (out_channels, *o)``, ``o`` as `ConvTranspose`'s."""
        del key
        n, name = self.num_spatial_dims, self.config.name
        x = _channels_last(name, x, n, self.in_channels)
        y = _common.resize_conv_layer(self.config, x, _kernel(self.weight), _flat_bias(self.bias),
                                      output_shape=_output_shape(output_shape, n))
        return jnp.moveaxis(y, -1, 0)


class SubPixelConv(eqx.Module):
    """ESPCN sub-pixel convolution (see `jax_tconv.nn.linen.SubPixelConv`), Equinox-style.

    A stride-1 convolution to ``out_channels * R`` channels, then `PixelShuffle`
    (PyTorch's channel order), ``R = prod(upscale_factor)``. Weight
    ``(out_channels * R, in_channels // groups, *k)``, bias ``(out_channels * R,
    1, ..., 1)``: a PyTorch ``Conv*d`` followed by ``PixelShuffle`` ports as is.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jax_tconv.nn import equinox as teqx
      >>> layer = teqx.SubPixelConv(2, 5, 3, 3, upscale_factor=2, key=jax.random.key(0))
      >>> layer.weight.shape, layer(jnp.ones((5, 8, 8))).shape
      ((12, 5, 3, 3), (3, 16, 16))
    """

    weight: jax.Array
    bias: jax.Array | None
    num_spatial_dims: int = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    config: _common.SubPixelConfig = eqx.field(static=True)

    def __init__(self, num_spatial_dims: int, in_channels: int, out_channels: int,
                 kernel_size: IntOrSequence, *, upscale_factor: IntOrSequence = 2,
                 padding: Padding = "SAME", dilation: IntOrSequence = 1, groups: int = 1,
                 use_bias: bool = True, dtype: DTypeLike | None = None,
                 precision: Precision = None, key: jax.Array):
        name = type(self).__name__
        n = _spatial(name, num_spatial_dims)
        k = _checks.ints(name, "kernel_size", kernel_size, n, minimum=1)
        self.config = _common.sub_pixel_config(
            name, features=out_channels, kernel_size=k, upscale_factor=upscale_factor,
            padding=padding, dilation=dilation, groups=groups, precision=precision, dtype=None)
        _common.check_sub_pixel(self.config, in_channels)
        self.num_spatial_dims, self.in_channels, self.out_channels = n, in_channels, out_channels
        c = self.config.conv_features
        self.weight, self.bias = _init(key, (c, in_channels // groups, *k), c, n,
                                       in_channels // groups * math.prod(k), _dtype(dtype),
                                       use_bias)

    def __call__(self, x: ArrayLike, *, key: jax.Array | None = None) -> jax.Array:
        """``(in_channels, *i) -> (out_channels, *(conv_out * r))``."""
        del key
        n, name = self.num_spatial_dims, self.config.name
        x = _channels_last(name, x, n, self.in_channels)
        y = _common.sub_pixel_conv_layer(self.config, x, _kernel(self.weight),
                                         _flat_bias(self.bias))
        return jnp.moveaxis(y, -1, 0)


class PixelShuffle(eqx.Module):
    """Depth-to-space, channels-first and unbatched: ``(C * R, *s) -> (C, *(s * r))``.

    PyTorch's ``nn.PixelShuffle`` channel order (`jax_tconv.nn.pixel_shuffle`,
    channels-last, is the same map with the channel axis last).

    Example:
      >>> import jax.numpy as jnp
      >>> from jax_tconv.nn import equinox as teqx
      >>> teqx.PixelShuffle(2, 2)(jnp.ones((8, 4, 4))).shape
      (2, 8, 8)
    """

    num_spatial_dims: int = eqx.field(static=True)
    upscale_factor: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, num_spatial_dims: int, upscale_factor: IntOrSequence):
        n = _spatial("PixelShuffle", num_spatial_dims)
        self.num_spatial_dims = n
        self.upscale_factor = _checks.ints("PixelShuffle", "upscale_factor", upscale_factor, n,
                                           minimum=1)

    def __call__(self, x: ArrayLike, *, key: jax.Array | None = None) -> jax.Array:
        del key
        x = jnp.asarray(x)
        n = self.num_spatial_dims
        if x.ndim != n + 1:
            raise ValueError(
                f"PixelShuffle: the input must be unbatched, (channels, *spatial) with {n} "
                f"spatial dimension(s), got shape {tuple(x.shape)}; map over a batch with "
                f"jax.vmap."
            )
        y = pixel_shuffle(jnp.moveaxis(x, 0, -1), self.upscale_factor, num_spatial=n)
        return jnp.moveaxis(y, -1, 0)


# ----------------------------------------------------------------------------
# Built on given arrays: adjoint and interop.from_equinox.


def with_arrays(make: Callable[[], _M], weight: jax.Array, bias: jax.Array | None) -> _M:
    """The module ``make()`` builds, holding `weight` and `bias` instead of fresh draws.

    ``make`` runs abstractly (`eqx.filter_eval_shape`): nothing is drawn or
    computed, which keeps ``adjoint(self.conv)`` inside a jitted ``__call__`` free.
    """
    shaped = eqx.filter_eval_shape(make)
    if bias is None:
        return eqx.tree_at(lambda m: m.weight, shaped, weight)
    return eqx.tree_at(lambda m: (m.weight, m.bias), shaped, (weight, bias))


def _zeros_bias(channels: int, n: int, dtype) -> jax.Array:
    return jnp.zeros((channels, *(1,) * n), dtype)


def adjoint_layer(layer: Any, *, use_bias: bool) -> Any:
    """`jax_tconv.nn.adjoint` for Equinox layers (`jax_tconv.nn._adjoint` hands them here).

    The adjoint holds the layer's weight array, or its conjugate if complex
    (``Cᴴ = conj(C)ᵀ``), computed from that array: inside a traced ``__call__``
    the gradients of both uses still reach the one leaf. The layer is built
    abstractly with the weight's real dtype (the initialisers draw real numbers
    only) and then given the arrays.
    """
    if isinstance(layer, ConvTranspose):
        geo = _common.transpose_geometry(layer.config)
        n, w = layer.num_spatial_dims, layer.weight
        c_in, c_out = layer.out_channels, layer.in_channels
        bias = _zeros_bias(c_out, n, w.dtype) if use_bias else None
        return with_arrays(
            lambda: eqx.nn.Conv(n, c_in, c_out, geo.kernel_size, stride=geo.strides,
                                padding=geo.padding, dilation=geo.dilation, groups=geo.groups,
                                padding_mode=geo.padding_mode.upper(), use_bias=use_bias,
                                dtype=_real_dtype(w), key=jax.random.key(0)),
            _hermitian_weight(w), bias)
    if isinstance(layer, eqx.nn.Conv):
        geo = _equinox_geometry(layer)
        n, w = layer.num_spatial_dims, layer.weight
        c_in, c_out = layer.out_channels, layer.in_channels
        bias = _zeros_bias(c_out, n, w.dtype) if use_bias else None
        return with_arrays(
            lambda: ConvTranspose(n, c_in, c_out, geo.kernel_size, stride=geo.strides,
                                  padding=geo.padding, dilation=geo.dilation, groups=geo.groups,
                                  padding_mode=geo.padding_mode, use_bias=use_bias,
                                  dtype=_real_dtype(w), key=jax.random.key(0)),
            _hermitian_weight(w), bias)
    if isinstance(layer, eqx.nn.ConvTranspose):
        raise unsupported("equinox", layer, "correlates the stride-dilated input with its "
                          "weight unflipped, so its weight is no forward conv's kernel; convert "
                          "it with jax_tconv.interop.from_equinox(layer) and take the adjoint "
                          "of the result")
    if isinstance(layer, ResizeConv | SubPixelConv):
        raise unsupported("jax_tconv", layer, NOT_ONE_CONV)
    raise TypeError(
        f"adjoint: expected an Equinox convolution layer (equinox.nn.Conv or "
        f"jax_tconv.nn.equinox.ConvTranspose), got {type(layer).__name__}."
    )


def _hermitian_weight(weight: jax.Array) -> jax.Array:
    """The adjoint's weight: `weight` itself if real, its conjugate if complex."""
    return jnp.conj(weight) if jnp.iscomplexobj(weight) else weight


def _real_dtype(weight: jax.Array):
    """The dtype the adjoint is built with before it is given `weight`: its real part's."""
    return jnp.finfo(weight.dtype).dtype


def _equinox_geometry(conv) -> _common.ConvGeometry:
    """Check that an ``equinox.nn.Conv`` has an adjoint here, and normalise it."""
    if conv.padding == "SAME_LOWER":
        raise unsupported("equinox", conv, "has padding='SAME_LOWER' (the odd padding at the "
                          "start); jax_tconv's 'SAME' is lax's (the odd padding at the end). "
                          "Give the conv explicit (lo, hi) pairs for your input size")
    return _common.conv_geometry("adjoint", "equinox Conv", kernel_size=conv.kernel_size,
                                 strides=conv.stride, padding=conv.padding,
                                 dilation=conv.dilation, groups=conv.groups,
                                 padding_mode=conv.padding_mode.lower())
