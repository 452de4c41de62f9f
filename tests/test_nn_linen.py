"""jax_tconv.nn.linen where linen users work: jit, remat, serialization, optax, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization
from nn_helpers import np_init, np_normal, ref_conv_transpose

import jax_tconv
from jax_tconv.nn import linen


def _layer(**kw):
    kw = {"kernel_init": np_init(), "bias_init": np_init(1), **kw}
    return linen.ConvTranspose(features=3, kernel_size=(3, 3), strides=2, padding=1, **kw)


def test_parameter_layout_and_default_init():
    layer = linen.ConvTranspose(features=6, kernel_size=(4, 2), groups=2)
    params = layer.init(jax.random.key(0), jnp.zeros((1, 3, 3, 4)))["params"]
    assert params["kernel"].shape == (4, 2, 3, 4)  # (*k, features // groups, C_in)
    assert params["bias"].shape == (6,)
    np.testing.assert_array_equal(params["bias"], 0)
    # LeCun normal with fan_in = C_in * prod(k) = 32 (truncated normal: std ~ 1/sqrt(32))
    big = linen.ConvTranspose(features=64, kernel_size=(4, 4)).init(
        jax.random.key(0), jnp.zeros((1, 2, 2, 32)))["params"]["kernel"]
    assert abs(float(big.std()) * np.sqrt(32 * 16) - 1) < 0.05


def test_jit_and_output_shape():
    x = np_normal((2, 4, 4, 2))
    layer = _layer()
    variables = layer.init(jax.random.key(0), x)
    f = jax.jit(lambda v, x: layer.apply(v, x, output_shape=(8, 8)))
    p = variables["params"]
    expected = ref_conv_transpose(x, p["kernel"], p["bias"], strides=2, padding=1,
                                  output_padding=1)
    np.testing.assert_allclose(f(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_remat_gives_same_values_and_gradients():
    x = np_normal((2, 4, 4, 2))

    class Net(nn.Module):
        checkpoint: bool

        @nn.compact
        def __call__(self, x):
            cls = nn.remat(linen.ConvTranspose) if self.checkpoint else linen.ConvTranspose
            y = cls(4, (4, 4), strides=2, padding=1, kernel_init=np_init(), name="up")(x)
            return linen.ResizeConv(2, (3, 3), strides=2, padding=1, output_padding=1,
                                    kernel_init=np_init(2))(jnp.tanh(y))

    plain, ckpt = Net(False), Net(True)
    variables = plain.init(jax.random.key(0), x)
    assert (jax.tree.structure(ckpt.init(jax.random.key(0), x))
            == jax.tree.structure(variables))

    def loss(model):
        return lambda v: jnp.sum(model.apply(v, x) ** 2)

    la, ga = jax.value_and_grad(loss(plain))(variables)
    lb, gb = jax.jit(jax.value_and_grad(loss(ckpt)))(variables)
    np.testing.assert_allclose(la, lb, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), ga, gb)


def test_serialization_round_trip():
    x = np_normal((1, 3, 3, 2))
    layer = linen.SubPixelConv(4, (3, 3), upscale_factor=2)
    variables = layer.init(jax.random.key(3), x)
    blob = serialization.to_bytes(variables)
    restored = serialization.from_bytes(layer.init(jax.random.key(4), x), blob)
    jax.tree.map(np.testing.assert_array_equal, restored, variables)
    np.testing.assert_array_equal(layer.apply(restored, x), layer.apply(variables, x))


def test_optax_training_step_decreases_loss():
    """Fit a ConvTranspose to a fixed teacher ConvTranspose on fixed inputs."""
    x = np_normal((4, 5, 5, 2), 11)
    w_teacher = np_normal((4, 4, 3, 2), 12)
    target = jax_tconv.conv_transpose(x, w_teacher, strides=2, padding=1)
    model = linen.ConvTranspose(3, (4, 4), strides=2, padding=1)
    params = model.init(jax.random.key(0), x)["params"]
    tx = optax.adam(3e-2)
    opt_state = tx.init(params)

    def loss_fn(params):
        return jnp.mean((model.apply({"params": params}, x) - target) ** 2)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(25):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.3 * losses[0], losses


@pytest.mark.parametrize("make,match", [
    (lambda: linen.ConvTranspose(4, (3, 3), groups=3),
     r"ConvTranspose: groups=3 must divide features, but 4 is not divisible by 3"),
    (lambda: linen.ConvTranspose(4, (3, 3), strides=2, output_padding=2),
     r"ConvTranspose: output_padding must be smaller than max\(stride, dilation\) in each "
     r"dimension, got output_padding=2 with stride=2 and dilation=1"),
    (lambda: linen.ConvTranspose(4, 3),
     r"ConvTranspose: kernel_size must be a non-empty sequence of ints.*got 3"),
    (lambda: linen.ConvTranspose(4, (3, 0)), r"ConvTranspose: kernel_size must be >= 1, got 0"),
    (lambda: linen.ConvTranspose(4, (3, 3), strides=(2, 2, 2)),
     r"ConvTranspose: strides must be an int or a sequence of 2 ints .* got \(2, 2, 2\)"),
    (lambda: linen.ConvTranspose(4, (3, 3), padding="FULL"),
     r"ConvTranspose: padding string must be 'SAME' or 'VALID' \(any case, as in lax\), got 'FULL'"),
    (lambda: linen.ConvTranspose(4, (3, 3), method="fft"),
     r"ConvTranspose: unknown method 'fft'; choose 'auto', 'tune' or one of 'vjp'"),
    (lambda: linen.ConvTranspose(0, (3, 3)), r"ConvTranspose: features must be >= 1, got 0"),
    (lambda: linen.ResizeConv(4, (3, 3), resize_method="spline"),
     r"ResizeConv: resize_method must be a jax.image.resize method .* got 'spline'"),
    (lambda: linen.ResizeConv(4, (3, 3), padding="SAME", output_padding=1, strides=2),
     r"ResizeConv: padding='SAME' fixes the output size"),
    (lambda: linen.SubPixelConv(4, (3, 3), upscale_factor=(2, 2, 2)),
     r"SubPixelConv: upscale_factor must be an int or a sequence of 2 ints .* got \(2, 2, 2\)"),
    (lambda: linen.SubPixelConv(4, (3, 3), groups=3),
     r"SubPixelConv: groups=3 must divide features, but 4 is not divisible by 3"),
], ids=["groups", "output_padding", "int_kernel", "zero_kernel", "strides_len", "padding_str",
        "method", "features", "resize_method", "same_op", "upscale_len", "subpixel_groups"])
def test_construction_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_call_time_errors():
    layer = linen.ConvTranspose(4, (3, 3), groups=2)
    with pytest.raises(ValueError, match=r"ConvTranspose: groups=2 must divide in_features, "
                                         r"but 3 is not divisible by 2"):
        layer.init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"ConvTranspose: the input must be \(\*batch, "
                                         r"\*spatial, features\) with 2 spatial dimension\(s\)"):
        layer.init(jax.random.key(0), jnp.zeros((4, 4)))
    big = linen.ConvTranspose(4, (3, 3), padding=3)
    with pytest.raises(ValueError, match=r"ConvTranspose: padding \(3, 3\) is too large"):
        big.init(jax.random.key(0), jnp.zeros((1, 2, 2, 2)))
