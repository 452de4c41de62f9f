"""`flax.nnx` layers: ConvTranspose, ResizeConv, SubPixelConv, PixelShuffle,
QuantizedConvTranspose.

The same layers as `jax_tconv.nn.linen` (one shared implementation), with nnx's
conventions: ``in_features`` and ``out_features`` up front, ``rngs`` keyword,
parameters as attributes ``kernel`` and ``bias`` (``None`` without bias)::

    ConvTranspose  kernel (*k, out_features // groups, in_features)
    ResizeConv     kernel (*k, in_features // groups, out_features)
    SubPixelConv   kernel (*k, in_features // groups, out_features * R)

Every argument, the input channel count included, is checked at construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jax_tconv.nn import _common, _quantize
from jax_tconv.nn._shuffle import pixel_shuffle
from jax_tconv.typing import ArrayLike, DTypeLike, Initializer, IntOrSequence, Padding, Precision

__all__ = ["ConvTranspose", "PixelShuffle", "QuantizedConvTranspose", "ResizeConv",
           "SubPixelConv"]


def _params(module, rngs, kernel_init, kernel_shape, use_bias, bias_init, bias_shape,
            param_dtype):
    module.kernel = nnx.Param(kernel_init(rngs.params(), kernel_shape, param_dtype))
    if use_bias:
        module.bias = nnx.Param(bias_init(rngs.params(), bias_shape, param_dtype))
    else:
        module.bias = nnx.data(None)


def _read(module):
    return module.kernel[...], None if module.bias is None else module.bias[...]


class ConvTranspose(nnx.Module):
    """Transposed convolution with PyTorch's semantics (`jax_tconv.conv_transpose`) as a layer.

    Args:
      in_features, out_features: ``C_in`` and ``C_out``.
      kernel_size: one int per spatial dimension (``(4, 4)`` for 2-D).
      strides, padding, output_padding, dilation, groups, method, padding_mode: as
        `jax_tconv.nn.linen.ConvTranspose` (PyTorch's meanings; padding is the
        forward conv's, filled by padding_mode).
      use_bias, kernel_init, bias_init, dtype, param_dtype, precision: the
        kernel is ``(*k, out_features // groups, in_features)``.
      rngs: `nnx.Rngs` for the initializers.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jax_tconv.nn import nnx as tnnx
      >>> layer = tnnx.ConvTranspose(5, 3, (4, 4), strides=2, padding=1, rngs=nnx.Rngs(0))
      >>> layer.kernel.shape, layer(jnp.ones((1, 8, 8, 5))).shape
      ((4, 4, 3, 5), (1, 16, 16, 3))
    """

    kernel: nnx.Param
    bias: nnx.Param | None

    def __init__(self, in_features: int, out_features: int, kernel_size: Sequence[int], *,
                 strides: IntOrSequence = 1, padding: Padding = 0,
                 output_padding: IntOrSequence = 0, dilation: IntOrSequence = 1,
                 groups: int = 1, use_bias: bool = True,
                 kernel_init: Initializer = _common.transpose_kernel_init,
                 bias_init: Initializer = _common.bias_init, dtype: DTypeLike | None = None,
                 param_dtype: DTypeLike = jnp.float32, precision: Precision = None,
                 method: str = "auto", padding_mode: str = "zeros", rngs: nnx.Rngs):
        self.config = _common.transpose_config(
            type(self).__name__, features=out_features, kernel_size=kernel_size,
            strides=strides, padding=padding, output_padding=output_padding,
            dilation=dilation, groups=groups, precision=precision, dtype=dtype, method=method,
            padding_mode=padding_mode)
        _common.check_transpose(self.config, in_features)
        self.in_features, self.out_features = in_features, out_features
        k = self.config.kernel_size
        _params(self, rngs, kernel_init, (*k, out_features // groups, in_features), use_bias,
                bias_init, (out_features,), param_dtype)

    def __call__(self, x: ArrayLike, *,
                 output_shape: Sequence[int] | None = None) -> jax.Array:
        """``(*batch, *i, in_features) -> (*batch, *o, out_features)``.

        `output_shape`: the output's spatial sizes (or full shape) instead of
        `output_padding`.
        """
        kernel, bias = _read(self)
        return _common.conv_transpose_layer(self.config, x, kernel, bias,
                                            output_shape=output_shape)


class ResizeConv(nnx.Module):
    """Resize by the strides, then an ordinary convolution (see `jax_tconv.nn.linen.ResizeConv`).

    Same output size as the `ConvTranspose` with the same arguments; kernel
    ``(*k, in_features // groups, out_features)``; ``resize_method`` default
    ``'nearest'``; ``padding_mode`` fills the convolution's padding of the
    resized input.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jax_tconv.nn import nnx as tnnx
      >>> layer = tnnx.ResizeConv(5, 3, (4, 4), strides=2, padding=1, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((8, 8, 5))).shape
      (16, 16, 3)
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: Sequence[int], *,
                 strides: IntOrSequence = 1, padding: Padding = 0,
                 output_padding: IntOrSequence = 0, dilation: IntOrSequence = 1,
                 groups: int = 1, use_bias: bool = True,
                 kernel_init: Initializer = _common.conv_kernel_init,
                 bias_init: Initializer = _common.bias_init, dtype: DTypeLike | None = None,
                 param_dtype: DTypeLike = jnp.float32, precision: Precision = None,
                 resize_method: str = "nearest", padding_mode: str = "zeros",
                 rngs: nnx.Rngs):
        self.config = _common.transpose_config(
            type(self).__name__, features=out_features, kernel_size=kernel_size,
            strides=strides, padding=padding, output_padding=output_padding,
            dilation=dilation, groups=groups, precision=precision, dtype=dtype,
            resize_method=resize_method, padding_mode=padding_mode)
        _common.check_transpose(self.config, in_features)
        self.in_features, self.out_features = in_features, out_features
        k = self.config.kernel_size
        _params(self, rngs, kernel_init, (*k, in_features // groups, out_features), use_bias,
                bias_init, (out_features,), param_dtype)

    def __call__(self, x: ArrayLike, *,
                 output_shape: Sequence[int] | None = None) -> jax.Array:
        """``(*batch, *i, in_features) -> (*batch, *o, out_features)``."""
        kernel, bias = _read(self)
        return _common.resize_conv_layer(self.config, x, kernel, bias, output_shape=output_shape)


class SubPixelConv(nnx.Module):
    """ESPCN sub-pixel convolution (see `jax_tconv.nn.linen.SubPixelConv`).

    Kernel ``(*k, in_features // groups, out_features * R)``, bias
    ``(out_features * R,)``, ``R = prod(upscale_factor)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jax_tconv.nn import nnx as tnnx
      >>> layer = tnnx.SubPixelConv(5, 3, (3, 3), upscale_factor=2, rngs=nnx.Rngs(0))
      >>> layer.kernel.shape, layer(jnp.ones((1, 8, 8, 5))).shape
      ((3, 3, 5, 12), (1, 16, 16, 3))
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: Sequence[int], *,
                 upscale_factor: IntOrSequence = 2, padding: Padding = "SAME",
                 dilation: IntOrSequence = 1, groups: int = 1, use_bias: bool = True,
                 kernel_init: Initializer = _common.conv_kernel_init,
                 bias_init: Initializer = _common.bias_init, dtype: DTypeLike | None = None,
                 param_dtype: DTypeLike = jnp.float32, precision: Precision = None,
                 rngs: nnx.Rngs):
        self.config = _common.sub_pixel_config(
            type(self).__name__, features=out_features, kernel_size=kernel_size,
            upscale_factor=upscale_factor, padding=padding, dilation=dilation, groups=groups,
            precision=precision, dtype=dtype)
        _common.check_sub_pixel(self.config, in_features)
        self.in_features, self.out_features = in_features, out_features
        k, c = self.config.kernel_size, self.config.conv_features
        _params(self, rngs, kernel_init, (*k, in_features // groups, c), use_bias, bias_init,
                (c,), param_dtype)

    def __call__(self, x: ArrayLike) -> jax.Array:
        """``(*batch, *i, in_features) -> (*batch, *(conv_out * r), out_features)``."""
        kernel, bias = _read(self)
        return _common.sub_pixel_conv_layer(self.config, x, kernel, bias)


class PixelShuffle(nnx.Module):
    """Depth-to-space as a layer: `jax_tconv.nn.pixel_shuffle` with ``num_spatial``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jax_tconv.nn import nnx as tnnx
      >>> tnnx.PixelShuffle(2, num_spatial=2)(jnp.ones((4, 4, 8))).shape
      (8, 8, 2)
    """

    def __init__(self, upscale_factor: IntOrSequence, *, num_spatial: int | None = None):
        self.upscale_factor = _common.freeze(upscale_factor)
        self.num_spatial = num_spatial

    def __call__(self, x: ArrayLike) -> jax.Array:
        return pixel_shuffle(x, self.upscale_factor, num_spatial=self.num_spatial)


class QuantizedConvTranspose(nnx.Module):
    """`ConvTranspose` with int8 weights and activations, int32 sums, float32 output.

    See `jax_tconv.nn.linen.QuantizedConvTranspose` for the math and the error
    bound. With ``fake_quant=False`` (inference) the attributes are ``kernel``
    (int8, ``(*k, out_features // groups, in_features)``), ``kernel_scale``
    (float32, ``(out_features,)``) and ``bias``; `from_float` converts a trained
    float layer. With ``fake_quant=True`` (quantization-aware training) they are
    `ConvTranspose`'s float ``kernel`` and ``bias`` (``kernel_scale`` is None),
    quantized on the fly with a straight-through gradient.

    Args:
      in_features, out_features, kernel_size, strides, padding, output_padding: as
        `ConvTranspose`, and so are ``dilation``, ``groups``, ``use_bias``,
        ``kernel_init``, ``bias_init``, ``param_dtype``, ``precision``, ``method``
        and ``padding_mode`` (no ``dtype``: the layer computes in int32 and float32).
      fake_quant: False (default) for integer inference, True for training.
      input_scale: None (default) for each call's ``max |x| / 127``, or a
        calibrated float (`jax_tconv.nn.input_scale`).
      rngs: `nnx.Rngs` for the initializers (an int8 kernel is initialised as a
        float one, then quantized).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jax_tconv.nn import nnx as tnnx
      >>> float_layer = tnnx.ConvTranspose(5, 3, (4, 4), strides=2, padding=1, rngs=nnx.Rngs(0))
      >>> layer = tnnx.QuantizedConvTranspose.from_float(float_layer)
      >>> layer.kernel.dtype, layer(jnp.ones((1, 8, 8, 5))).shape
      (dtype('int8'), (1, 16, 16, 3))
    """

    kernel: nnx.Param
    kernel_scale: nnx.Param | None
    bias: nnx.Param | None

    def __init__(self, in_features: int, out_features: int, kernel_size: Sequence[int], *,
                 strides: IntOrSequence = 1, padding: Padding = 0,
                 output_padding: IntOrSequence = 0, dilation: IntOrSequence = 1,
                 groups: int = 1, use_bias: bool = True,
                 kernel_init: Initializer = _common.transpose_kernel_init,
                 bias_init: Initializer = _common.bias_init,
                 param_dtype: DTypeLike = jnp.float32, precision: Precision = None,
                 method: str = "auto", padding_mode: str = "zeros", fake_quant: bool = False,
                 input_scale: float | None = None, rngs: nnx.Rngs):
        self.config = _quantize.quantized_config(
            type(self).__name__, fake_quant=fake_quant, input_scale=input_scale,
            features=out_features, kernel_size=kernel_size, strides=strides, padding=padding,
            output_padding=output_padding, dilation=dilation, groups=groups,
            precision=precision, method=method, padding_mode=padding_mode)
        _common.check_transpose(self.config.transpose, in_features)
        self.in_features, self.out_features = in_features, out_features
        k = self.config.transpose.kernel_size
        _params(self, rngs, kernel_init, (*k, out_features // groups, in_features), use_bias,
                bias_init, (out_features,), param_dtype)
        if fake_quant:
            self.kernel_scale = nnx.data(None)
        else:
            q = _quantize.quantize_conv_transpose({"kernel": self.kernel[...]}, groups=groups)
            self.kernel = nnx.Param(q["kernel"])
            self.kernel_scale = nnx.Param(q["kernel_scale"])

    @classmethod
    def from_float(cls, layer: ConvTranspose | QuantizedConvTranspose, *,
                   input_scale: float | None = None) -> QuantizedConvTranspose:
        """The integer-inference layer of a trained float `ConvTranspose`, or of a
        fake-quantized `QuantizedConvTranspose` (whose `input_scale` it keeps unless
        one is given here): its kernel quantized per output channel, its bias as is."""
        if isinstance(layer, QuantizedConvTranspose):
            if not layer.config.fake_quant:
                raise ValueError("QuantizedConvTranspose.from_float: the layer is quantized "
                                 "already (fake_quant=False).")
            geometry = layer.config.transpose
            if input_scale is None:
                input_scale = layer.config.input_scale
        elif isinstance(layer, ConvTranspose):
            geometry = layer.config
        else:
            raise TypeError(f"QuantizedConvTranspose.from_float: expected a ConvTranspose or a "
                            f"fake-quantized QuantizedConvTranspose, got {type(layer).__name__}.")
        kernel, bias = _read(layer)
        out = cls(layer.in_features, layer.out_features, geometry.kernel_size,
                  strides=geometry.strides, padding=geometry.padding,
                  output_padding=geometry.output_padding, dilation=geometry.dilation,
                  groups=geometry.groups, use_bias=bias is not None,
                  precision=geometry.precision, method=geometry.method,
                  padding_mode=geometry.padding_mode, input_scale=input_scale,
                  kernel_init=lambda key, shape, dtype: kernel, rngs=nnx.Rngs(0))
        if bias is not None:
            out.bias = nnx.Param(bias)
        return out

    def __call__(self, x: ArrayLike, *,
                 output_shape: Sequence[int] | None = None) -> jax.Array:
        """``(*batch, *i, in_features) -> (*batch, *o, out_features)``, float32.

        `output_shape`: the output's spatial sizes (or full shape) instead of
        `output_padding`.
        """
        kernel, bias = _read(self)
        scale = None if self.kernel_scale is None else self.kernel_scale[...]
        return _quantize.quantized_conv_transpose_layer(self.config, x, kernel, scale, bias,
                                                        output_shape=output_shape)
