"""jax_tconv.nn.nnx where nnx users work: nnx.jit, nnx.remat, split/merge, optax, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx, serialization
from nn_helpers import np_init, np_normal, ref_conv_transpose

import jax_tconv
from jax_tconv.nn import nnx as tnnx


def test_parameter_layout_and_attributes():
    layer = tnnx.ConvTranspose(4, 6, (4, 2), groups=2, rngs=nnx.Rngs(0))
    assert layer.kernel.shape == (4, 2, 3, 4)  # (*k, out_features // groups, in_features)
    assert layer.bias.shape == (6,)
    assert (layer.in_features, layer.out_features) == (4, 6)
    no_bias = tnnx.SubPixelConv(2, 3, (3,), upscale_factor=2, use_bias=False, rngs=nnx.Rngs(0))
    assert no_bias.bias is None and no_bias.kernel.shape == (3, 2, 6)


def test_nnx_jit_and_output_shape():
    x = np_normal((2, 4, 4, 2))
    layer = tnnx.ConvTranspose(2, 3, (3, 3), strides=2, padding=1, kernel_init=np_init(),
                               bias_init=np_init(1), rngs=nnx.Rngs(0))

    @nnx.jit(static_argnums=2)
    def f(layer, x, size):
        return layer(x, output_shape=size)

    y = f(layer, x, (8, 7))
    expected = ref_conv_transpose(x, layer.kernel[...], layer.bias[...], strides=2, padding=1,
                                  output_padding=(1, 0))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_split_merge_and_state_serialization():
    layer = tnnx.ResizeConv(2, 3, (3, 3), strides=2, padding=1, output_padding=1,
                            rngs=nnx.Rngs(0))
    x = np_normal((1, 3, 3, 2))
    graphdef, state = nnx.split(layer)
    clone = nnx.merge(graphdef, state)
    np.testing.assert_array_equal(clone(x), layer(x))
    other = tnnx.ResizeConv(2, 3, (3, 3), strides=2, padding=1, output_padding=1,
                            rngs=nnx.Rngs(5))
    blob = serialization.to_bytes(nnx.to_pure_dict(nnx.state(layer)))
    restored = serialization.from_bytes(nnx.to_pure_dict(nnx.state(other)), blob)
    state = nnx.state(other)
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(other, state)
    np.testing.assert_array_equal(other(x), layer(x))


def test_remat_gives_same_values_and_gradients():
    x = np_normal((2, 4, 4, 2))

    class Net(nnx.Module):
        def __init__(self, checkpoint):
            self.up = tnnx.ConvTranspose(2, 4, (4, 4), strides=2, padding=1,
                                         kernel_init=np_init(), rngs=nnx.Rngs(0))
            self.sub = tnnx.SubPixelConv(4, 2, (3, 3), kernel_init=np_init(2), rngs=nnx.Rngs(1))
            self.checkpoint = checkpoint

        def __call__(self, x):
            up = nnx.remat(lambda m, x: m(x)) if self.checkpoint else (lambda m, x: m(x))
            return self.sub(jnp.tanh(up(self.up, x)))

    def loss(model):
        return jnp.sum(model(x) ** 2)

    la, ga = nnx.value_and_grad(loss)(Net(False))
    lb, gb = nnx.jit(nnx.value_and_grad(loss))(Net(True))
    np.testing.assert_allclose(la, lb, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 nnx.to_pure_dict(ga), nnx.to_pure_dict(gb))


def test_optax_training_step_decreases_loss():
    x = np_normal((4, 5, 5, 2), 11)
    target = jax_tconv.conv_transpose(x, np_normal((4, 4, 3, 2), 12), strides=2, padding=1)
    model = tnnx.ConvTranspose(2, 3, (4, 4), strides=2, padding=1, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(3e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        def loss_fn(model):
            return jnp.mean((model(x) - target) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(25)]
    assert losses[-1] < 0.3 * losses[0], losses


def test_vmap_over_layer_call():
    layer = tnnx.ConvTranspose(2, 3, (3,), strides=2, kernel_init=np_init(), rngs=nnx.Rngs(0))
    x = np_normal((3, 2, 4, 2))
    y = nnx.vmap(lambda m, x: m(x), in_axes=(None, 0))(layer, x)
    expected = ref_conv_transpose(x, layer.kernel[...], layer.bias[...], strides=2)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make,match", [
    (lambda r: tnnx.ConvTranspose(3, 4, (3, 3), groups=2, rngs=r),
     r"ConvTranspose: groups=2 must divide in_features, but 3 is not divisible by 2"),
    (lambda r: tnnx.ConvTranspose(4, 3, (3, 3), groups=2, rngs=r),
     r"ConvTranspose: groups=2 must divide features, but 3 is not divisible by 2"),
    (lambda r: tnnx.ConvTranspose(4, 4, (3,), strides=2, dilation=3, output_padding=3, rngs=r),
     r"ConvTranspose: output_padding must be smaller than max\(stride, dilation\).*"
     r"output_padding=3 with stride=2 and dilation=3"),
    (lambda r: tnnx.ConvTranspose(4, 4, (3, 3), strides=-1, rngs=r),
     r"ConvTranspose: strides must be >= 1 in every dimension, got -1"),
    (lambda r: tnnx.ConvTranspose(4.0, 4, (3, 3), rngs=r),
     r"ConvTranspose: in_features must be an int, got 4.0 of type float"),
    (lambda r: tnnx.ResizeConv(4, 4, (3, 3), groups=0, rngs=r),
     r"ResizeConv: groups must be >= 1, got 0"),
    (lambda r: tnnx.SubPixelConv(4, 4, (3, 3), upscale_factor=0, rngs=r),
     r"SubPixelConv: upscale_factor must be >= 1 in every dimension, got 0"),
    (lambda r: tnnx.SubPixelConv(4, 4, (3, 3), padding=((1, 1),), rngs=r),
     r"SubPixelConv: padding must be an int, 'SAME', 'VALID', or a sequence of 2"),
], ids=["groups_in", "groups_out", "output_padding", "strides", "float_in", "groups0",
        "upscale0", "padding_len"])
def test_construction_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(nnx.Rngs(0))


@pytest.mark.parametrize("cls", ["ConvTranspose", "ResizeConv", "SubPixelConv"])
def test_wrong_input_channel_count(cls):
    layer = getattr(tnnx, cls)(4, 2, (3, 3), kernel_init=np_init(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=rf"{cls}: the input has 3 channels \(last axis of "
                                         rf"shape \(1, 5, 5, 3\)\) but the layer was built for "
                                         rf"in_features=4"):
        layer(jnp.zeros((1, 5, 5, 3)))
