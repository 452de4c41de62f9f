"""Int8 quantization of a ConvTranspose layer: the math, with no framework imported.

Symmetric linear quantization, per output channel for the kernel and per
tensor for the input (Jacob et al., "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018, with
zero points 0)::

    s_w[o] = max |w[o]| / 127          one scale per output channel o
    s_x    = max |x| / 127             or a calibrated constant (`input_scale`)
    q(v, s) = round(clip(v / s, -127, 127))        an integer in [-127, 127]

Every term of output channel ``o`` multiplies a kernel entry of that channel,
so both scales factor out of the transposed convolution:

    y[o] = Σ x·w + b  ≈  s_x · s_w[o] · Σ q(x, s_x)·q(w, s_w) + b

where the sum runs in int32 (`jax_tconv.conv_transpose` on int8 operands) and
is dequantized once, in float32. Rounding moves each x by at most ``s_x / 2``
and each w by at most ``s_w[o] / 2``, so per output element

    |y_q - y| <= s_x/2 · Σ|w| + s_w[o]/2 · Σ|x| + n · s_x · s_w[o] / 4

with the sums over the ``n`` terms that land on it (tests/test_quantized.py
checks it against a NumPy reference).

The fake-quantized (training) forward computes the same integers as floats,
``q(x, s_x)`` and ``q(w, s_w)`` rounded with a straight-through gradient
(``v + stop_gradient(q(v) - v)``; zero where a static input scale clips), convolves
them in float32 and scales the result the same way. Integers up to 127 are
exact in float32 (and bfloat16, TF32), so while every sum stays below 2**24
the float convolution is exactly the int32 one and the two forwards agree to
the last bit (to 1 ulp where XLA fuses the final multiply-add differently).
The scales are constants of the step (`jax.lax.stop_gradient`): the gradient
with respect to x and w is the float layer's at the quantized point.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jax_tconv.nn import _common
from jax_tconv.typing import ArrayLike

#: The largest quantized magnitude: symmetric int8, [-127, 127] (-128 unused).
QMAX = 127


def check_input_scale(name: str, input_scale: Any) -> float | None:
    """None (each call's own max |x| / 127), or a positive, finite float."""
    if input_scale is None:
        return None
    if isinstance(input_scale, bool) or not isinstance(input_scale, numbers.Real):
        raise TypeError(
            f"{name}: input_scale must be None (each call's max |x| / 127) or a positive "
            f"float, got {input_scale!r} of type {type(input_scale).__name__}; compute a "
            f"calibrated one with float(jax_tconv.nn.input_scale(x_calibration))."
        )
    value = float(input_scale)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: input_scale must be positive and finite, got {input_scale!r}.")
    return value


def input_scale(x: ArrayLike) -> jax.Array:
    """The per-tensor input scale ``max |x| / 127`` (1 for an all-zero x), float32.

    Computed on calibration data, it is the `input_scale` of a
    `QuantizedConvTranspose` (a static scale); with `input_scale=None` the
    layer computes it from each call's whole input instead (dynamic).

    Example:
      >>> import jax.numpy as jnp, jax_tconv
      >>> jax_tconv.nn.input_scale(jnp.array([0.5, -2.54, 1.0]))      # 2.54 / 127
      Array(0.02, dtype=float32)
    """
    m = jnp.max(jnp.abs(jnp.asarray(x, jnp.float32)))
    return jnp.where(m > 0, m / QMAX, jnp.float32(1))


def _scale_in_kernel_layout(scale, kernel_shape, groups: int):
    """Per output channel `scale` (C_out,), broadcast against a ``(*k, C_out // g, C_in)`` kernel.

    Output channel ``g * (C_out // g) + j`` is kernel column ``j`` of group ``g``'s
    input channels ``g * C_in_g .. (g + 1) * C_in_g - 1``.
    """
    *k, c_out_g, c_in = kernel_shape
    s = scale.reshape(groups, c_out_g).T                       # (C_out_g, groups)
    s = jnp.repeat(s, c_in // groups, axis=1)                  # (C_out_g, C_in)
    return s.reshape((1,) * len(k) + (c_out_g, c_in))


def kernel_scale(kernel: ArrayLike, *, groups: int = 1) -> jax.Array:
    """Per output channel ``max |w[o]| / 127`` of a ``(*k, C_out // g, C_in)`` kernel
    (1 for a channel of zeros), float32 ``(C_out,)``, output channels group-major."""
    kernel = jnp.asarray(kernel)
    *k, c_out_g, c_in = kernel.shape
    a = jnp.abs(kernel).reshape(-1, c_out_g, groups, c_in // groups)
    m = jnp.max(a, axis=(0, 3)).T.reshape(-1).astype(jnp.float32)     # (groups * C_out_g,)
    return jnp.where(m > 0, m / QMAX, jnp.float32(1))


def _levels(v):
    """``round(clip(v, -127, 127))`` as floats."""
    return jnp.round(jnp.clip(v, -QMAX, QMAX))


def _straight_through(v, *, clipped: bool):
    """`_levels` forward, gradient 1 (straight through the rounding); with `clipped`, 0 where
    ``|v| > 127`` (the values a static input scale clips). Without it nothing is clipped
    but rounding slips (``max |w| / s_w`` may be 127.00001), so the gradient is 1 throughout.

    The forward is exact: ``v + (levels - v)`` is ``levels``, both steps exact in floats.
    """
    if clipped:
        v = jnp.where(lax.stop_gradient(jnp.abs(v) <= QMAX), v, lax.stop_gradient(v))
    return v + lax.stop_gradient(_levels(v) - v)


def quantize_conv_transpose(params: dict[str, Any], *, groups: int = 1) -> dict[str, Any]:
    """A float ConvTranspose layer's parameters as a `QuantizedConvTranspose`'s (int8 inference).

    Args:
      params: ``{"kernel": (*k, C_out // groups, C_in) float[, "bias": (C_out,)]}``:
        a trained ``ConvTranspose``'s (or a fake-quantized ``QuantizedConvTranspose``'s)
        ``variables["params"]``.
      groups: the layer's ``groups`` (the output channels' scales depend on it).

    Returns:
      ``{"kernel": int8, "kernel_scale": (C_out,) float32[, "bias"]}``, with
      ``kernel * kernel_scale`` (per output channel) within ``kernel_scale / 2``
      of the float kernel.

    Raises:
      TypeError: the kernel is not floating point (quantized already?).

    Example:
      >>> import jax.numpy as jnp, jax_tconv
      >>> kernel = jnp.array([0.5, -1.27, 2.54, 0.01]).reshape(2, 2, 1)   # (k, C_out, C_in)
      >>> q = jax_tconv.nn.quantize_conv_transpose({"kernel": kernel})
      >>> q["kernel"][:, :, 0], q["kernel_scale"]        # channel 0: 0.5, 2.54; 1: -1.27, 0.01
      (Array([[  25, -127],
             [ 127,    1]], dtype=int8), Array([0.02, 0.01], dtype=float32))
    """
    kernel = jnp.asarray(params["kernel"])
    if not jnp.issubdtype(kernel.dtype, jnp.floating):
        raise TypeError(
            f"quantize_conv_transpose: params['kernel'] must be a float kernel, got "
            f"{kernel.dtype}; these parameters may be quantized already."
        )
    scale = kernel_scale(kernel, groups=groups)
    q = _levels(kernel / _scale_in_kernel_layout(scale, kernel.shape, groups))
    out = {"kernel": q.astype(jnp.int8), "kernel_scale": scale}
    if params.get("bias") is not None:
        out["bias"] = params["bias"]
    return out


@dataclasses.dataclass(frozen=True)
class QuantizedConfig:
    """A QuantizedConvTranspose: the ConvTranspose geometry, the mode and the input scale."""

    transpose: _common.TransposeConfig
    fake_quant: bool
    input_scale: float | None


def quantized_config(name: str, *, fake_quant: Any, input_scale: Any,
                     **geometry) -> QuantizedConfig:
    """Normalise a QuantizedConvTranspose's arguments (the geometry as `transpose_config`)."""
    if not isinstance(fake_quant, bool):
        raise TypeError(f"{name}: fake_quant must be a bool, got {fake_quant!r}.")
    return QuantizedConfig(_common.transpose_config(name, dtype=None, **geometry), fake_quant,
                           check_input_scale(name, input_scale))


def quantized_conv_transpose_layer(config: QuantizedConfig, x, kernel, w_scale, bias, *,
                                   output_shape=None):
    """The layer: ``s_x · s_w · conv_transpose(q(x), q(w)) + bias``, channels-last.

    Inference (``fake_quant=False``): `kernel` is int8 and `w_scale` its
    per-channel scales ``(C_out,)``; x is quantized to int8 and the sum runs in
    int32. Training (``fake_quant=True``): `kernel` is float, its scales are
    computed here (`kernel_scale`; `w_scale` is ignored), and both operands are
    rounded with a straight-through gradient.
    """
    geometry = config.transpose
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{geometry.name}: the input must be floating point (it is quantized "
                        f"here), got {x.dtype}.")
    x = x.astype(jnp.float32)
    s_x = (input_scale(x) if config.input_scale is None
           else jnp.float32(config.input_scale))
    s_x = lax.stop_gradient(s_x)
    v = x / s_x
    if config.fake_quant:
        kernel = jnp.asarray(kernel, jnp.float32)
        s_w = lax.stop_gradient(kernel_scale(kernel, groups=geometry.groups))
        w_levels = _straight_through(
            kernel / _scale_in_kernel_layout(s_w, kernel.shape, geometry.groups), clipped=False)
        x_levels = _straight_through(v, clipped=config.input_scale is not None)
        acc = _common.conv_transpose_layer(geometry, x_levels, w_levels, None,
                                           output_shape=output_shape)
    else:
        if kernel.dtype != jnp.int8:
            raise TypeError(
                f"{geometry.name}: with fake_quant=False the kernel must be int8 (convert a "
                f"float layer's params with jax_tconv.nn.quantize_conv_transpose), got "
                f"{kernel.dtype}."
            )
        s_w = w_scale
        acc = _common.conv_transpose_layer(geometry, _levels(v).astype(jnp.int8), kernel, None,
                                           output_shape=output_shape)
    per_channel = (1,) * (acc.ndim - 1) + (-1,)   # channels last
    y = acc.astype(jnp.float32) * (s_x * s_w).reshape(per_channel)
    return y if bias is None else y + bias.reshape(per_channel)

