"""`flax.linen` layers: ConvTranspose, ResizeConv, SubPixelConv, PixelShuffle,
QuantizedConvTranspose.

Inputs are channels-last ``(*batch, *spatial, C)``, with any number of batch
axes (none included); ``len(kernel_size)`` sets the number of spatial
dimensions. Arguments are checked when the module is constructed.

Parameters (``variables['params']``)::

    ConvTranspose  kernel (*k, features // groups, C_in)   bias (features,)
    ResizeConv     kernel (*k, C_in // groups, features)   bias (features,)
    SubPixelConv   kernel (*k, C_in // groups, features * R)   bias (features * R,)

The ConvTranspose kernel is `jax_tconv.conv_transpose`'s default layout: a
PyTorch ``ConvTranspose*d.weight`` ``(C_in, C_out // groups, *k)`` becomes it by
moving its first axis last and its second axis before that
(`jax_tconv.interop.from_torch`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_tconv.nn import _common, _quantize
from jax_tconv.nn._shuffle import pixel_shuffle
from jax_tconv.typing import ArrayLike, DTypeLike, Initializer, IntOrSequence, Padding, Precision

__all__ = ["ConvTranspose", "PixelShuffle", "QuantizedConvTranspose", "ResizeConv",
           "SubPixelConv"]


class _Upsampling(nn.Module):
    """The arguments that set a transposed convolution's output size, shared by
    ConvTranspose and ResizeConv, and their check at construction."""

    features: int
    kernel_size: Sequence[int]
    strides: IntOrSequence = 1
    padding: Padding = 0
    output_padding: IntOrSequence = 0
    dilation: IntOrSequence = 1
    groups: int = 1
    use_bias: bool = True
    kernel_init: Initializer = _common.conv_kernel_init
    bias_init: Initializer = _common.bias_init
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    precision: Precision = None
    padding_mode: str = "zeros"

    def __post_init__(self):
        _common.check_transpose(self._config())
        super().__post_init__()

    def _options(self) -> dict:
        """The subclass's own argument for `transpose_config` (method or resize_method)."""
        raise NotImplementedError

    def _config(self) -> _common.TransposeConfig:
        return _common.transpose_config(
            type(self).__name__, features=self.features, kernel_size=self.kernel_size,
            strides=self.strides, padding=self.padding, output_padding=self.output_padding,
            dilation=self.dilation, groups=self.groups, precision=self.precision,
            dtype=self.dtype, padding_mode=self.padding_mode, **self._options())


class ConvTranspose(_Upsampling):
    """Transposed convolution with PyTorch's semantics (`jax_tconv.conv_transpose`) as a layer.

    Per spatial dimension the output size is
    ``o = (i - 1)*s - lo - hi + d*(k - 1) + 1 + output_padding``.

    Attributes:
      features: output channels ``C_out``.
      kernel_size: one int per spatial dimension (``(4, 4)`` for 2-D).
      strides, dilation: an int or one int per spatial dimension.
      padding: the forward conv's padding, as PyTorch's ``padding``: an int, one
        int or ``(lo, hi)`` pair per dimension, ``'SAME'`` or ``'VALID'``.
      padding_mode: what the forward conv pads with: ``"zeros"`` (PyTorch's only
        choice for ConvTranspose), ``"circular"``, ``"reflect"`` or
        ``"replicate"``; the layer is the adjoint of that padded convolution
        (`jax_tconv.conv_transpose`'s ``padding_mode``).
      output_padding: extra size at the high end, ``< max(stride, dilation)``.
      groups: divides ``C_in`` and ``features``.
      use_bias, kernel_init, bias_init: the kernel is ``(*k, features // groups,
        C_in)``; the default init is LeCun normal with fan_in ``C_in * prod(k)``.
      dtype: computation dtype (default: promote input and parameters).
      param_dtype: parameter dtype (default float32).
      precision: passed to lax.
      method: ``"auto"``, ``"tune"`` or one of `jax_tconv.METHODS`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jax_tconv.nn import linen
      >>> layer = linen.ConvTranspose(features=3, kernel_size=(4, 4), strides=2, padding=1)
      >>> x = jnp.ones((1, 8, 8, 5))
      >>> params = layer.init(jax.random.key(0), x)
      >>> params['params']['kernel'].shape, layer.apply(params, x).shape
      ((4, 4, 3, 5), (1, 16, 16, 3))
      >>> layer.apply(params, x, output_shape=(17, 17)).shape
      (1, 17, 17, 3)
    """

    kernel_init: Initializer = _common.transpose_kernel_init
    method: str = "auto"

    def _options(self) -> dict:
        return dict(method=self.method)

    @nn.compact
    def __call__(self, x: ArrayLike, *,
                 output_shape: Sequence[int] | None = None) -> jax.Array:
        """``(*batch, *i, C_in) -> (*batch, *o, features)``.

        Args:
          x: channels-last input.
          output_shape: the output's spatial sizes (or its full shape) instead of
            `output_padding`, e.g. a U-Net skip connection's ``skip.shape``.
        """
        config = self._config()
        c_in = _common.input_features(config.name, x, config.num_spatial)
        kernel = self.param("kernel", self.kernel_init,
                            (*config.kernel_size, self.features // self.groups, c_in),
                            self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        return _common.conv_transpose_layer(config, x, kernel, bias, output_shape=output_shape)


class ResizeConv(_Upsampling):
    """Resize by the strides, then an ordinary convolution: checkerboard-free upsampling.

    Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts" (Distill,
    2016). The output has exactly the size of the `ConvTranspose` with the same
    arguments, so it is a drop-in replacement. The input is resized to
    ``i * strides`` with `jax.image.resize`, then convolved (stride 1, the given
    dilation and groups) with padding ``t = o - i*s + d*(k - 1)`` in total, ``t // 2``
    before and the rest after (lax's 'SAME' split; negative crops), where ``o`` is
    the matching ConvTranspose's output size.

    Attributes:
      features, kernel_size, strides, padding, output_padding, dilation, groups:
        as `ConvTranspose` (they set the output size; `strides` is the resize factor).
      padding_mode: what the convolution's padding of the resized input holds:
        ``"zeros"``, ``"circular"``, ``"reflect"`` or ``"replicate"`` (PyTorch's
        ``Conv*d(padding_mode=)``; PyTorch's rules against the resized size).
      resize_method: a `jax.image.resize` method, default ``'nearest'``.
      use_bias, kernel_init, bias_init, dtype, param_dtype, precision: as
        `flax.linen.Conv`; the kernel is ``(*k, C_in // groups, features)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jax_tconv.nn import linen
      >>> layer = linen.ResizeConv(features=3, kernel_size=(3, 3), strides=2, padding=1,
      ...                          output_padding=1)
      >>> x = jnp.ones((1, 8, 8, 5))
      >>> layer.apply(layer.init(jax.random.key(0), x), x).shape
      (1, 16, 16, 3)
    """

    kernel_init: Initializer = _common.conv_kernel_init
    resize_method: str = "nearest"

    def _options(self) -> dict:
        return dict(resize_method=self.resize_method)

    @nn.compact
    def __call__(self, x: ArrayLike, *,
                 output_shape: Sequence[int] | None = None) -> jax.Array:
        """``(*batch, *i, C_in) -> (*batch, *o, features)``, ``o`` as `ConvTranspose`'s."""
        config = self._config()
        c_in = _common.input_features(config.name, x, config.num_spatial)
        kernel = self.param("kernel", self.kernel_init,
                            (*config.kernel_size, c_in // self.groups, self.features),
                            self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        return _common.resize_conv_layer(config, x, kernel, bias, output_shape=output_shape)


class SubPixelConv(nn.Module):
    """ESPCN sub-pixel convolution: conv to ``features * R`` channels, then `pixel_shuffle`.

    Shi et al., "Real-Time Single Image and Video Super-Resolution Using an
    Efficient Sub-Pixel Convolutional Neural Network" (CVPR 2016), in N-D.
    ``R = prod(upscale_factor)``; output spatial size ``conv_out * r``, so
    ``i * r`` with the default ``padding='SAME'``. Initialise the kernel with
    `jax_tconv.initializers.icnr` to start free of checkerboard.

    Attributes:
      features: output channels after the shuffle.
      kernel_size: one int per spatial dimension.
      upscale_factor: ``r``, an int or one int per spatial dimension.
      padding, dilation, groups: of the stride-1 convolution (`jax_tconv.conv`'s
        conventions); `groups` divides ``C_in`` and `features`.
      use_bias, kernel_init, bias_init, dtype, param_dtype, precision: kernel
        ``(*k, C_in // groups, features * R)``, bias ``(features * R,)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jax_tconv.nn import linen
      >>> layer = linen.SubPixelConv(features=3, kernel_size=(3, 3), upscale_factor=2)
      >>> x = jnp.ones((8, 8, 5))          # no batch axis
      >>> layer.apply(layer.init(jax.random.key(0), x), x).shape
      (16, 16, 3)
    """

    features: int
    kernel_size: Sequence[int]
    upscale_factor: IntOrSequence = 2
    padding: Padding = "SAME"
    dilation: IntOrSequence = 1
    groups: int = 1
    use_bias: bool = True
    kernel_init: Initializer = _common.conv_kernel_init
    bias_init: Initializer = _common.bias_init
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    precision: Precision = None

    def __post_init__(self):
        _common.check_sub_pixel(self._config())
        super().__post_init__()

    def _config(self) -> _common.SubPixelConfig:
        return _common.sub_pixel_config(
            type(self).__name__, features=self.features, kernel_size=self.kernel_size,
            upscale_factor=self.upscale_factor, padding=self.padding, dilation=self.dilation,
            groups=self.groups, precision=self.precision, dtype=self.dtype)

    @nn.compact
    def __call__(self, x: ArrayLike) -> jax.Array:
        """``(*batch, *i, C_in) -> (*batch, *(conv_out * r), features)``."""
        config = self._config()
        c_in = _common.input_features(config.name, x, config.num_spatial)
        kernel = self.param("kernel", self.kernel_init,
                            (*config.kernel_size, c_in // self.groups, config.conv_features),
                            self.param_dtype)
        bias = (self.param("bias", self.bias_init, (config.conv_features,), self.param_dtype)
                if self.use_bias else None)
        return _common.sub_pixel_conv_layer(config, x, kernel, bias)


class PixelShuffle(nn.Module):
    """Depth-to-space as a layer: `jax_tconv.nn.pixel_shuffle` with ``num_spatial``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jax_tconv.nn import linen
      >>> linen.PixelShuffle(upscale_factor=2, num_spatial=2).apply({}, jnp.ones((4, 4, 8))).shape
      (8, 8, 2)
    """

    upscale_factor: IntOrSequence
    num_spatial: int | None = None

    @nn.compact
    def __call__(self, x: ArrayLike) -> jax.Array:
        return pixel_shuffle(x, self.upscale_factor, num_spatial=self.num_spatial)


class QuantizedConvTranspose(nn.Module):
    """`ConvTranspose` with int8 weights and activations, int32 sums, float32 output.

    Per output channel ``o``: ``y[o] = s_x · s_w[o] · Σ q(x)·q(w) + bias[o]``, where
    ``q(w)`` is the int8 kernel with one float scale per output channel, ``q(x) =
    round(clip(x / s_x, -127, 127))`` the int8 input with one scale for the whole
    tensor, and the sum is `jax_tconv.conv_transpose` on int8 operands (int32).
    The error against the float layer is at most ``s_x/2 · Σ|w| + s_w[o]/2 · Σ|x|
    + n · s_x · s_w[o] / 4`` per output, summed over its ``n`` terms (docs/quantized.md).

    Two modes, one geometry:

    - ``fake_quant=False`` (inference): parameters ``kernel`` int8 ``(*k, features //
      groups, C_in)``, ``kernel_scale`` float32 ``(features,)`` and ``bias``; get them
      from a trained float layer's with `jax_tconv.nn.quantize_conv_transpose`. Not
      trainable (integers have no gradient).
    - ``fake_quant=True`` (quantization-aware training): the float parameters of
      `ConvTranspose` (``kernel``, ``bias``), quantized on the fly with a
      straight-through gradient; the forward equals the integer layer's (to 1 ulp).

    Attributes:
      features, kernel_size, strides, padding, output_padding, dilation: as
        `ConvTranspose`, and so are ``groups``, ``padding_mode``, ``use_bias``,
        ``kernel_init``, ``bias_init``, ``precision`` and ``method``. The layer
        computes in int32 and float32 (no ``dtype``).
      param_dtype: the float parameters' dtype (default float32).
      fake_quant: the mode above (default False: integer inference).
      input_scale: ``s_x``: None (default) for each call's ``max |x| / 127`` over
        the whole input (the batch included), or a calibrated float, e.g.
        ``float(jax_tconv.nn.input_scale(x_calibration))``.

    Example:
      >>> import jax, jax.numpy as jnp, jax_tconv
      >>> from jax_tconv.nn import linen
      >>> x = jnp.ones((1, 8, 8, 5))
      >>> float_layer = linen.ConvTranspose(features=3, kernel_size=(4, 4), strides=2, padding=1)
      >>> params = float_layer.init(jax.random.key(0), x)["params"]
      >>> layer = linen.QuantizedConvTranspose(features=3, kernel_size=(4, 4), strides=2,
      ...                                      padding=1)
      >>> q = jax_tconv.nn.quantize_conv_transpose(params)
      >>> q["kernel"].dtype, layer.apply({"params": q}, x).shape
      (dtype('int8'), (1, 16, 16, 3))
    """

    features: int
    kernel_size: Sequence[int]
    strides: IntOrSequence = 1
    padding: Padding = 0
    output_padding: IntOrSequence = 0
    dilation: IntOrSequence = 1
    groups: int = 1
    use_bias: bool = True
    kernel_init: Initializer = _common.transpose_kernel_init
    bias_init: Initializer = _common.bias_init
    param_dtype: DTypeLike = jnp.float32
    precision: Precision = None
    padding_mode: str = "zeros"
    method: str = "auto"
    fake_quant: bool = False
    input_scale: float | None = None

    def __post_init__(self):
        _common.check_transpose(self._config().transpose)
        super().__post_init__()

    def _config(self) -> _quantize.QuantizedConfig:
        return _quantize.quantized_config(
            type(self).__name__, fake_quant=self.fake_quant, input_scale=self.input_scale,
            features=self.features, kernel_size=self.kernel_size, strides=self.strides,
            padding=self.padding, output_padding=self.output_padding, dilation=self.dilation,
            groups=self.groups, precision=self.precision, method=self.method,
            padding_mode=self.padding_mode)

    @nn.compact
    def __call__(self, x: ArrayLike, *,
                 output_shape: Sequence[int] | None = None) -> jax.Array:
        """``(*batch, *i, C_in) -> (*batch, *o, features)``, float32.

        Args:
          x: channels-last float input (quantized here).
          output_shape: the output's spatial sizes (or full shape) instead of
            `output_padding`.
        """
        config = self._config()
        c_in = _common.input_features(config.transpose.name, x, config.transpose.num_spatial)
        shape = (*config.transpose.kernel_size, self.features // self.groups, c_in)
        if self.fake_quant:
            kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
            scale = None
        else:
            # A float kernel, quantized: at init both parameters come from the kernel's key,
            # so that they agree (Flax also calls these on a dummy key to check shapes).
            initializing = self.is_initializing()
            keys: dict[str, jax.Array] = {}

            def quantized(part, key, *_):
                key = keys.setdefault("kernel", key) if initializing else key
                float_kernel = self.kernel_init(key, shape, self.param_dtype)
                return _quantize.quantize_conv_transpose({"kernel": float_kernel},
                                                         groups=self.groups)[part]

            kernel = self.param("kernel", functools.partial(quantized, "kernel"))
            scale = self.param("kernel_scale", functools.partial(quantized, "kernel_scale"))
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        return _quantize.quantized_conv_transpose_layer(config, x, kernel, scale, bias,
                                                        output_shape=output_shape)
