"""QuantizedConvTranspose (linen and nnx): int8 weights and activations, int32 sums.

Checked against independent NumPy: the per-output-channel scales and the int8
kernel, the float layer within the rounding bound derived in docs/quantized.md
(computed with the NumPy scatter reference on |x| and |w|), integer inference
against the fake-quantized forward (equal, to 1 ulp), and the straight-through
gradient against the float layer's gradient at the quantized point.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jax_tconv
from jax_tconv.nn import linen
from jax_tconv.nn import nnx as tnnx
from jax_tconv.reference import conv_transpose_reference

# (layer arguments, input shape): channels-last, the geometry in PyTorch's terms.
CONFIGS = [
    (dict(features=6, kernel_size=(4, 4), strides=2, padding=1), (2, 5, 4, 8)),
    (dict(features=4, kernel_size=(3, 3), strides=2, padding=(1, 2), output_padding=1,
          groups=2, padding_mode="reflect"), (1, 4, 5, 6)),
    (dict(features=3, kernel_size=(5,), strides=3, padding=((2, 1),), dilation=2), (3, 6, 4)),
]
IDS = ["2d-k4-s2", "2d-groups2-reflect-op1", "1d-dilated"]


def setup(config, seed=0):
    kw, x_shape = CONFIGS[config]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    c_in, k, g = x_shape[-1], kw["kernel_size"], kw.get("groups", 1)
    kernel = (rng.standard_normal((*k, kw["features"] // g, c_in)) / np.sqrt(c_in)).astype(
        np.float32)
    kernel[..., 0, :] *= 4          # output channels of very different ranges
    bias = rng.standard_normal(kw["features"]).astype(np.float32)
    return kw, x, {"kernel": kernel, "bias": bias}


def channel_entries(kernel, groups):
    """Per output channel o = g * C_out_g + j, the kernel entries that make it (NumPy)."""
    *_, c_out_g, c_in = kernel.shape
    c_in_g = c_in // groups
    return [kernel[..., j, g * c_in_g:(g + 1) * c_in_g] for g in range(groups)
            for j in range(c_out_g)]


def numpy_scales(kernel, groups):
    return np.array([np.abs(e).max() / 127 for e in channel_entries(kernel, groups)])


def in_kernel_layout(per_channel, kernel_shape, groups):
    """A per-output-channel vector spread over the kernel's entries (NumPy)."""
    out = np.zeros(kernel_shape)
    *_, c_out_g, c_in = kernel_shape
    c_in_g = c_in // groups
    for g in range(groups):
        for j in range(c_out_g):
            out[..., j, g * c_in_g:(g + 1) * c_in_g] = per_channel[g * c_out_g + j]
    return out


def reference(x, kernel, kw):
    """The float layer's transposed convolution, by the NumPy scatter (float64, channels-last)."""
    n = len(kw["kernel_size"])
    per = lambda v: tuple(v) if isinstance(v, tuple) else (v,) * n  # noqa: E731
    pads = tuple(p if isinstance(p, tuple) else (p, p) for p in per(kw.get("padding", 0)))
    y = conv_transpose_reference(
        np.moveaxis(x, -1, 1), np.transpose(kernel, (n + 1, n, *range(n))),
        strides=per(kw.get("strides", 1)), padding=pads,
        output_padding=per(kw.get("output_padding", 0)), dilation=per(kw.get("dilation", 1)),
        groups=kw.get("groups", 1), padding_mode=kw.get("padding_mode", "zeros"))
    return np.moveaxis(y, 1, -1)


@pytest.mark.parametrize("groups", [1, 3])
def test_kernel_quantization_per_output_channel(groups):
    rng = np.random.default_rng(1)
    kernel = rng.standard_normal((3, 2, 4, 6)).astype(np.float32) * np.array(
        [1, 10, 0.1, 0], np.float32)[:, None]            # a channel of zeros included
    q = jax_tconv.nn.quantize_conv_transpose({"kernel": kernel}, groups=groups)
    assert q["kernel"].dtype == jnp.int8 and q["kernel_scale"].shape == (4 * groups,)
    assert set(q) == {"kernel", "kernel_scale"}
    scales = numpy_scales(kernel, groups)
    scales[scales == 0] = 1
    np.testing.assert_allclose(q["kernel_scale"], scales, rtol=1e-6)
    levels = np.asarray(q["kernel"], np.int64)
    for e in channel_entries(levels, groups):          # each channel's max reaches 127
        assert np.abs(e).max() in (0, 127)
    dequantized = levels * in_kernel_layout(scales, kernel.shape, groups)
    assert np.all(np.abs(dequantized - kernel) <= in_kernel_layout(scales, kernel.shape,
                                                                   groups) / 2 * (1 + 1e-6))


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("config", range(len(CONFIGS)), ids=IDS)
def test_within_the_rounding_bound_of_the_float_layer(config, static):
    kw, x, params = setup(config)
    g = kw.get("groups", 1)
    s_x = 1.25 * np.abs(x).max() / 127 if static else np.abs(x).max() / 127
    layer = linen.QuantizedConvTranspose(**kw, input_scale=float(s_x) if static else None)
    y_q = np.asarray(layer.apply({"params": jax_tconv.nn.quantize_conv_transpose(
        params, groups=g)}, x))
    y = reference(x, params["kernel"], kw) + params["bias"]
    # |e_x| <= s_x/2, |e_w| <= s_w/2: |err| <= s_x/2 Σ|w| + s_w/2 Σ|x| + n s_x s_w / 4.
    s_w = numpy_scales(params["kernel"], g)
    ones_x, ones_w = np.ones_like(x), np.ones_like(params["kernel"])
    bound = (s_x / 2 * reference(ones_x, np.abs(params["kernel"]), kw)
             + s_w / 2 * reference(np.abs(x), ones_w, kw)
             + s_x * s_w / 4 * reference(ones_x, ones_w, kw))
    err = np.abs(y_q - y)
    assert np.all(err <= bound + 1e-5 * (1 + np.abs(y))), (err - bound).max()
    assert 0 < err.max() < 0.05 * np.abs(y).max()    # quantized, and close
    assert y_q.dtype == np.float32 and y_q.shape == y.shape


@pytest.mark.parametrize("config", range(len(CONFIGS)), ids=IDS)
def test_integer_inference_is_the_fake_quantized_forward(config):
    kw, x, params = setup(config)
    q = jax_tconv.nn.quantize_conv_transpose(params, groups=kw.get("groups", 1))
    for scale in (None, float(0.9 * np.abs(x).max() / 127)):       # static: some clipping
        layer = linen.QuantizedConvTranspose(**kw, input_scale=scale)
        y_int = layer.apply({"params": q}, x)
        y_fake = layer.clone(fake_quant=True).apply({"params": params}, x)
        np.testing.assert_array_max_ulp(np.asarray(y_int), np.asarray(y_fake), maxulp=1)


def test_straight_through_gradient():
    """The fake-quantized layer's gradient is the float layer's at the quantized point, zero
    for inputs the static scale clips."""
    kw, x, params = setup(0)
    s_x = float(0.8 * np.abs(x).max() / 127)       # clips the largest inputs
    fake = linen.QuantizedConvTranspose(**kw, fake_quant=True, input_scale=s_x)
    cotangent = np.random.default_rng(2).standard_normal(fake.apply({"params": params}, x).shape)
    loss = lambda p, x: jnp.sum(fake.apply({"params": p}, x) * cotangent)  # noqa: E731
    g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, x)

    s_w = numpy_scales(params["kernel"], 1)
    w_q = np.round(params["kernel"] / in_kernel_layout(s_w, params["kernel"].shape, 1)) \
        * in_kernel_layout(s_w, params["kernel"].shape, 1)
    x_q = np.round(np.clip(x / s_x, -127, 127)) * s_x
    float_layer = linen.ConvTranspose(**kw)
    float_loss = lambda p, x: jnp.sum(float_layer.apply({"params": p}, x) * cotangent)  # noqa: E731
    ref_params, ref_x = jax.grad(float_loss, argnums=(0, 1))(
        {"kernel": w_q.astype(np.float32), "bias": params["bias"]}, x_q.astype(np.float32))
    clipped = np.abs(x / s_x) > 127
    assert clipped.any() and not clipped.all()
    np.testing.assert_allclose(g_params["kernel"], ref_params["kernel"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g_params["bias"], ref_params["bias"], rtol=1e-5)
    np.testing.assert_allclose(g_x, np.where(clipped, 0, ref_x), rtol=1e-4, atol=1e-4)


def test_linen_init_and_batch_axes():
    kw, x, _ = setup(1)
    layer = linen.QuantizedConvTranspose(**kw, input_scale=0.03)   # static: per example too
    variables = layer.init(jax.random.key(0), x)
    p = variables["params"]
    assert p["kernel"].dtype == jnp.int8 and p["kernel_scale"].dtype == jnp.float32
    assert {int(np.abs(e).max()) for e in channel_entries(np.asarray(p["kernel"]), 2)} == {127}
    y = jax.jit(layer.apply)(variables, x)
    np.testing.assert_array_equal(layer.apply(variables, x[0]), y[0])     # no batch axis
    assert layer.apply(variables, x[None]).shape == (1, *y.shape)          # two batch axes
    fake = layer.clone(fake_quant=True).init(jax.random.key(0), x)["params"]
    assert set(fake) == {"kernel", "bias"} and fake["kernel"].dtype == jnp.float32


def test_nnx_from_float_matches_linen():
    kw, x, params = setup(1)
    geometry = {k: v for k, v in kw.items() if k not in ("features", "kernel_size")}
    float_layer = tnnx.ConvTranspose(x.shape[-1], kw["features"], kw["kernel_size"],
                                     **geometry, rngs=nnx.Rngs(0))
    float_layer.kernel[...] = params["kernel"]
    float_layer.bias[...] = params["bias"]
    layer = tnnx.QuantizedConvTranspose.from_float(float_layer)
    assert layer.kernel.dtype == jnp.int8 and layer.config.input_scale is None
    q = jax_tconv.nn.quantize_conv_transpose(params, groups=2)
    expected = linen.QuantizedConvTranspose(**kw).apply({"params": q}, x)
    np.testing.assert_array_equal(layer(x), expected)
    np.testing.assert_array_equal(layer.kernel[...], q["kernel"])

    fake = tnnx.QuantizedConvTranspose(x.shape[-1], kw["features"], kw["kernel_size"],
                                       **geometry, fake_quant=True, input_scale=0.05,
                                       rngs=nnx.Rngs(1))
    assert fake.kernel_scale is None and fake.kernel.dtype == jnp.float32
    converted = tnnx.QuantizedConvTranspose.from_float(fake)
    assert converted.config.input_scale == 0.05
    np.testing.assert_array_max_ulp(np.asarray(converted(x)), np.asarray(fake(x)), maxulp=1)
    with pytest.raises(ValueError, match=r"from_float: the layer is quantized already"):
        tnnx.QuantizedConvTranspose.from_float(converted)


def test_errors_name_the_layer():
    with pytest.raises(TypeError, match=r"^QuantizedConvTranspose: input_scale must be None .* "
                                        r"or a positive float, got '0.1' of type str"):
        linen.QuantizedConvTranspose(features=2, kernel_size=(3,), input_scale="0.1")
    with pytest.raises(ValueError, match=r"^QuantizedConvTranspose: input_scale must be positive "
                                         r"and finite, got -1.0"):
        tnnx.QuantizedConvTranspose(2, 2, (3,), input_scale=-1.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"^QuantizedConvTranspose: output_padding must be "
                                         r"smaller than max\(stride, dilation\)"):
        linen.QuantizedConvTranspose(features=2, kernel_size=(3,), output_padding=1)
    layer = linen.QuantizedConvTranspose(features=2, kernel_size=(3,))
    float_params = {"kernel": np.ones((3, 2, 1), np.float32), "bias": np.zeros(2, np.float32)}
    with pytest.raises(TypeError, match=r"^QuantizedConvTranspose: with fake_quant=False the "
                                        r"kernel must be int8 .*quantize_conv_transpose"):
        layer.apply({"params": {**float_params, "kernel_scale": np.ones(2, np.float32)}},
                    np.ones((1, 4, 1), np.float32))
    with pytest.raises(TypeError, match=r"quantize_conv_transpose: params\['kernel'\] must be a "
                                        r"float kernel, got int8"):
        jax_tconv.nn.quantize_conv_transpose(jax_tconv.nn.quantize_conv_transpose(float_params))
