"""jax_tconv.nn.equinox beyond the shared layer tests (test_nn_layers.py runs those for
Equinox too): PyTorch's weights as they are, Equinox's own ConvTranspose converted,
Equinox's transforms, channels-first shapes, dtypes and errors."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

eqx = pytest.importorskip("equinox", reason="the equinox extra is not installed")

import jax_tconv  # noqa: E402
from jax_tconv import interop  # noqa: E402
from jax_tconv.nn import equinox as teqx  # noqa: E402
from jax_tconv.nn import pixel_shuffle  # noqa: E402

FIXTURES = sorted((pathlib.Path(__file__).parent / "fixtures").glob("torch_*.npz"))


def close(a, b, tol=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


def normal(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def filled(make, seed=0):
    """The module ``make()`` builds, with NumPy normal weights: no JAX random compilation."""
    shaped = eqx.filter_eval_shape(make)
    bias = None if shaped.bias is None else normal(shaped.bias.shape, seed + 1)
    return teqx.with_arrays(make, normal(shaped.weight.shape, seed), bias)


@eqx.filter_jit
def batched(layer, x):
    return jax.vmap(layer)(x)


@eqx.filter_jit
def call(layer, x, **kw):
    """One compiled program per call (eager, each small operation compiles on its own)."""
    return layer(x, **kw)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_torch_golden_weights_load_unchanged(path):
    """PyTorch's ConvTranspose weight is the Equinox layer's weight, as is; x and y NCHW."""
    data = np.load(path)
    cfg = json.loads(str(data["config"]))
    n = len(cfg["kernel_size"])

    def make():
        return teqx.ConvTranspose(n, cfg["in_channels"], cfg["out_channels"],
                                  tuple(cfg["kernel_size"]), stride=tuple(cfg["stride"]),
                                  padding=tuple(cfg["padding"]),
                                  output_padding=tuple(cfg["output_padding"]),
                                  dilation=tuple(cfg["dilation"]), groups=cfg["groups"],
                                  use_bias=cfg["bias"], key=jax.random.key(0))

    bias = data["bias"].reshape(-1, *(1,) * n) if cfg["bias"] else None
    layer = teqx.with_arrays(make, jnp.asarray(data["weight"]),
                             None if bias is None else jnp.asarray(bias))
    assert layer.weight.shape == data["weight"].shape
    close(batched(layer, jnp.asarray(data["x"])), data["y"])


# Equinox's own ConvTranspose: (num_spatial_dims, C_in, C_out, k, kwargs).
EQX_CASES = [
    ("2d_same_g2", 2, 4, 6, 3, dict(stride=2, padding="SAME", groups=2)),
    ("2d_same_lower_op", 2, 4, 6, (3, 2), dict(stride=(2, 3), padding="SAME_LOWER",
                                               output_padding=(1, 2), dilation=(1, 2),
                                               groups=2)),
    ("1d_valid_op2_dil2", 1, 3, 2, 4, dict(stride=3, padding="VALID", output_padding=2,
                                           dilation=2)),
    ("1d_pairs_g2", 1, 2, 4, 5, dict(stride=2, padding=((3, 0),), output_padding=1, groups=2)),
    ("1d_big_padding", 1, 2, 2, 3, dict(stride=2, padding=4)),
    ("3d", 3, 2, 3, 2, dict(stride=2, padding=(0, 1, 0))),
    # Periodic: Equinox wraps the input around (SAME / SAME_LOWER only); jax_tconv folds
    # the output's border with padding_mode='circular'.
    ("2d_circular_same", 2, 3, 2, (4, 3), dict(stride=2, padding="SAME",
                                               padding_mode="CIRCULAR")),
    ("1d_circular_same_lower_dil2", 1, 2, 4, 5, dict(stride=3, padding="SAME_LOWER",
                                                    dilation=2, padding_mode="CIRCULAR")),
]


@pytest.mark.parametrize("case", EQX_CASES, ids=[c[0] for c in EQX_CASES])
def test_from_equinox_matches_equinox(case):
    _, n, c_in, c_out, k, kw = case
    theirs = filled(lambda: eqx.nn.ConvTranspose(n, c_in, c_out, k, key=jax.random.key(1), **kw))
    ours = interop.from_equinox(theirs)
    assert isinstance(ours, teqx.ConvTranspose)
    assert (ours.in_channels, ours.out_channels, ours.groups) == (c_in, c_out, theirs.groups)
    x = normal((2, c_in, *(6,) * n), 3)

    @eqx.filter_jit
    def both(ours, theirs, x):
        return jax.vmap(ours)(x), jax.vmap(theirs)(x)

    y_ours, y_theirs = both(ours, theirs, x)
    close(y_ours, y_theirs)
    if theirs.groups == 1:  # Equinox's FAQ recipe (flip, swap) holds for groups=1 only
        flipped = jnp.flip(theirs.weight, axis=tuple(range(2, 2 + n))).swapaxes(0, 1)
        np.testing.assert_array_equal(ours.weight, flipped)


def test_from_equinox_errors():
    key = jax.random.key(0)
    shaped = eqx.filter_eval_shape      # the errors come before the weights are read
    with pytest.raises(ValueError, match=r"from_equinox: padding \(\(-1, -1\),\) with "
                                         r"output_padding \(0,\) gives Equinox's padding \(3, 3\) "
                                         r"in spatial dimension 0; jax_tconv reaches \(a, b\) "
                                         r"only for a <= d\*\(k - 1\) = 2"):
        interop.from_equinox(shaped(eqx.nn.ConvTranspose, 1, 2, 2, 3, padding=-1, key=key))
    with pytest.raises(TypeError, match=r"from_equinox: expected an equinox.nn.ConvTranspose, "
                                        r"got Conv"):
        interop.from_equinox(shaped(eqx.nn.Conv, 1, 2, 2, 3, key=key))


def test_filter_jit_filter_grad_and_vmap_agree_with_the_functional_api():
    layer = teqx.ConvTranspose(2, 4, 3, (3, 4), stride=2, padding=(1, 2), output_padding=1,
                               key=jax.random.key(0))
    x = normal((5, 4, 3, 4), 1)
    kernel = jnp.transpose(layer.weight, (2, 3, 1, 0))             # (kH, kW, C_out, C_in)
    bias = layer.bias.reshape(-1)

    def functional(kernel, x):  # channels-first batch through the channels-last function
        y = jax_tconv.conv_transpose(jnp.moveaxis(x, 1, -1), kernel, strides=2,
                                     padding=(1, 2), output_padding=1) + bias.reshape(1, 1, 1, -1)
        return jnp.moveaxis(y, -1, 1)

    close(batched(layer, x), functional(kernel, x))

    @eqx.filter_jit
    @eqx.filter_grad
    def grad(layer, x):
        return jnp.sum(jax.vmap(layer)(x) ** 2)

    g = grad(layer, x)
    gk = jax.grad(lambda k: jnp.sum(functional(k, x) ** 2))(kernel)
    close(jnp.transpose(g.weight, (2, 3, 1, 0)), gk, 1e-4)
    assert g.bias.shape == layer.bias.shape


def test_channels_first_shapes_and_output_shape():
    layer = filled(lambda: teqx.ConvTranspose(2, 3, 2, 3, stride=2, padding=1,
                                              key=jax.random.key(0)))
    x = normal((3, 4, 4))
    assert call(layer, x).shape == (2, 7, 7)
    assert call(layer, x, output_shape=(8, 7)).shape == (2, 8, 7)
    assert call(layer, x, output_shape=(2, 8, 8)).shape == (2, 8, 8)  # full shape (C, *o)
    assert layer.weight.shape == (3, 2, 3, 3) and layer.bias.shape == (2, 1, 1)
    assert (layer.kernel_size, layer.stride, layer.padding, layer.output_padding,
            layer.dilation, layer.groups, layer.use_bias) == ((3, 3), (2, 2), ((1, 1), (1, 1)),
                                                              (0, 0), (1, 1), 1, True)
    resize = filled(lambda: teqx.ResizeConv(1, 3, 2, 3, stride=2, padding=1, use_bias=False,
                                            key=jax.random.key(0)))
    assert resize.weight.shape == (2, 3, 3) and resize.bias is None
    assert call(resize, normal((3, 5)), output_shape=(10,)).shape == (2, 10)
    sub = filled(lambda: teqx.SubPixelConv(3, 2, 1, 3, upscale_factor=(1, 2, 2),
                                           key=jax.random.key(0)))
    assert sub.weight.shape == (4, 2, 3, 3, 3)
    assert call(sub, normal((2, 2, 3, 3))).shape == (1, 2, 6, 6)


def test_pixel_shuffle_is_channels_last_shuffle_moved():
    x = jnp.arange(2 * 12 * 3 * 4, dtype=jnp.float32).reshape(2, 12, 3, 4)
    y = batched(teqx.PixelShuffle(2, (2, 3)), x)
    expected = jnp.moveaxis(pixel_shuffle(jnp.moveaxis(x, 1, -1), (2, 3)), -1, 1)
    np.testing.assert_array_equal(y, expected)
    assert y.shape == (2, 2, 6, 12)
    with pytest.raises(ValueError, match=r"PixelShuffle: the input must be unbatched, "
                                         r"\(channels, \*spatial\) with 2 spatial dimension\(s\), "
                                         r"got shape \(2, 12, 3, 4\)"):
        teqx.PixelShuffle(2, 2)(x)


def test_dtype_is_the_parameters():
    layer = teqx.ConvTranspose(1, 2, 2, 3, stride=2, dtype=jnp.bfloat16, key=jax.random.key(0))
    assert layer.weight.dtype == layer.bias.dtype == jnp.bfloat16
    assert call(layer, normal((2, 4)).astype(jnp.bfloat16)).dtype == jnp.bfloat16
    assert call(layer, normal((2, 4))).dtype == jnp.float32          # promoted, as Flax's layers


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
def test_padding_mode_in_equinox_spelling(mode):
    """Equinox's own names ('CIRCULAR', ...), in any case, are the lower-case modes."""
    def make(spelling):
        return filled(lambda: teqx.ConvTranspose(2, 3, 2, (3, 2), stride=2, padding=1,
                                                 padding_mode=spelling, key=jax.random.key(0)))

    x = normal((3, 5, 4), 7)
    reference = make(mode)
    for spelling in (mode.upper(), mode.capitalize()):
        layer = make(spelling)
        assert layer.config.padding_mode == mode
        np.testing.assert_array_equal(layer(x), reference(x))


def test_errors_name_the_layer_and_say_what_to_do():
    key = jax.random.key(0)
    layer = teqx.ConvTranspose(2, 3, 2, 3, key=key)
    with pytest.raises(ValueError, match=r"ConvTranspose: the input must be unbatched, "
                                         r"\(in_channels, \*spatial\) with 2 spatial "
                                         r"dimension\(s\), got shape \(1, 3, 4, 4\); map the "
                                         r"layer over a batch with jax.vmap\(layer\)"):
        layer(jnp.ones((1, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"ConvTranspose: the input has 4 channels \(first axis "
                                         r"of shape \(4, 4, 3\)\) but the layer was built for "
                                         r"in_channels=3. Equinox layers are channels-first"):
        layer(jnp.ones((4, 4, 3)))
    with pytest.raises(ValueError, match=r"ConvTranspose: groups=2 must divide in_features, but "
                                         r"3 is not divisible by 2"):
        teqx.ConvTranspose(2, 3, 2, 3, groups=2, key=key)
    with pytest.raises(ValueError, match=r"ConvTranspose: kernel_size must be an int or a "
                                         r"sequence of 2 ints"):
        teqx.ConvTranspose(2, 3, 2, (3, 3, 3), key=key)
    with pytest.raises(ValueError, match=r"^ConvTranspose: unknown padding_mode 'SYMMETRIC'; "
                                         r"choose one of 'zeros', 'circular', 'reflect', "
                                         r"'replicate' \(in any case: PyTorch's names, "
                                         r"Equinox's 'ZEROS', 'CIRCULAR', ...\)"):
        teqx.ConvTranspose(2, 3, 2, 3, padding_mode="SYMMETRIC", key=key)
    with pytest.raises(ValueError, match=r"^ConvTranspose: unknown padding_mode 'WRAP'.*"
                                         r"\('WRAP' is 'circular' here\)"):
        teqx.ConvTranspose(2, 3, 2, 3, padding_mode="WRAP", key=key)
    with pytest.raises(TypeError, match=r"^ConvTranspose: padding_mode must be a string"):
        teqx.ConvTranspose(2, 3, 2, 3, padding_mode=None, key=key)
    with pytest.raises(ValueError, match=r"ResizeConv: num_spatial_dims must be >= 1, got 0"):
        teqx.ResizeConv(0, 3, 2, 3, key=key)
    with pytest.raises(ValueError, match=r"SubPixelConv: upscale_factor must be >= 1"):
        teqx.SubPixelConv(1, 3, 2, 3, upscale_factor=0, key=key)
    with pytest.raises(ValueError, match=r"ConvTranspose: unknown method 'fast'"):
        teqx.ConvTranspose(1, 3, 2, 3, method="fast", key=key)
    with pytest.raises(ValueError, match=r"ResizeConv: stride must be >= 1 in every dimension"):
        teqx.ResizeConv(1, 3, 2, 3, stride=0, key=key)
    with pytest.raises(ValueError, match=r"ConvTranspose: padding must be >= 0, got -1"):
        teqx.ConvTranspose(1, 3, 2, 3, padding=-1, key=key)
