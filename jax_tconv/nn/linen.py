"""`flax.linen` layers: ConvTranspose, ResizeConv, SubPixelConv, PixelShuffle.

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

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_tconv.nn import _common
from jax_tconv.nn._shuffle import pixel_shuffle
from jax_tconv.typing import ArrayLike, DTypeLike, Initializer, IntOrSequence, Padding, Precision

__all__ = ["ConvTranspose", "PixelShuffle", "ResizeConv", "SubPixelConv"]


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
