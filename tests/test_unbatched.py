"""Inputs without a batch axis (PyTorch's rule): x has one axis fewer than w.

The reference is the NumPy scatter loop on the example with a batch axis of one, that axis
then removed; every method, a covering set of layouts and geometries.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CASES, METHODS
from test_forward import assert_close

import jax_tconv

BY_NAME = {c.name: c for c in CASES}
UNBATCHED = ["1d-groups2-first", "2d-dilation-op", "2d-pytorch-layout", "3d-first-same",
             "2d-same-s2-oddshape"]


# A covering set (every method in every test_transform_grid.py configuration has its own
# unbatched cell too): method j runs geometries j and j + 1.
PAIRS = [(m, UNBATCHED[(j + k) % len(UNBATCHED)]) for j, m in enumerate(METHODS) for k in (0, 1)]


@pytest.mark.parametrize("method,name", PAIRS)
def test_conv_transpose_without_a_batch_axis(method, name):
    case = BY_NAME[name]
    x, w = case.arrays()
    expected = case.reference(x[:1], w)[0]
    y = jax_tconv.conv_transpose(x[0], w, method=method, **case.kwargs())
    assert y.shape == expected.shape
    assert_close(y, expected)


@pytest.mark.parametrize("method", ["vjp", "matmul", "phase"])
def test_batch_axis_anywhere_and_a_full_output_shape(method):
    """'N' in the middle of x's spec and last in y's; output_shape given as y's full shape."""
    case = BY_NAME["2d-k3-s2-p1-op1-fcn"]
    x, w = case.arrays()                         # NHWC / HWIO
    dn = ("HNWC", "HWIO", "HWCN")                # y: H W C N; x: H N W C
    xb = np.transpose(x[:1], (1, 0, 2, 3))       # (H, 1, W, C)
    expected = np.transpose(case.reference(x[:1], w), (1, 2, 3, 0))[..., 0]   # (H, W, C)
    y = jax_tconv.conv_transpose(xb[:, 0], w, strides=2, padding=1, output_shape=expected.shape,
                                 dimension_numbers=dn, method=method)
    assert_close(y, expected)


def test_conv_without_a_batch_axis_is_the_adjoint():
    """<conv(y), x> == <y, conv_transpose(x)> with neither carrying a batch axis."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)   # (C, H, W): PyTorch, unbatched
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    dn = ("NCHW", "OIHW", "NCHW")
    y = jax_tconv.conv_transpose(x, w, strides=2, padding=1, dimension_numbers=dn)
    assert y.shape == (2, 7, 9)
    v = rng.standard_normal(y.shape).astype(np.float32)
    cv = jax_tconv.conv(v, w, strides=2, padding=1, dimension_numbers=dn)
    assert cv.shape == x.shape
    assert np.isclose(np.vdot(np.asarray(cv, np.float64), x), np.vdot(v, np.asarray(y, np.float64)),
                      rtol=1e-4)
    batched = jax_tconv.conv(v[None], w, strides=2, padding=1, dimension_numbers=dn)[0]
    assert_close(cv, batched)


def test_vmap_over_unbatched_calls_is_the_batched_call():
    case = BY_NAME["2d-k4-s2-p1-dcgan"]
    x, w = case.arrays()
    f = lambda x: jax_tconv.conv_transpose(x, w, **case.kwargs())   # noqa: E731
    assert_close(jax.vmap(f)(x), case.reference(x, w))


def test_auto_method_and_tune_choice_read_an_unbatched_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_TCONV_TUNE_CACHE", str(tmp_path / "tune.json"))
    x = jax.ShapeDtypeStruct((8, 8, 16), jnp.float32)
    w = jax.ShapeDtypeStruct((4, 4, 8, 16), jnp.float32)
    one = jax.ShapeDtypeStruct((1, 8, 8, 16), jnp.float32)
    kw = dict(strides=2, padding=1, backend="cpu")
    assert jax_tconv.auto_method(x, w, **kw) == jax_tconv.auto_method(one, w, **kw)
    small_x = jax.ShapeDtypeStruct((3, 3, 2), jnp.float32)
    small_w = jax.ShapeDtypeStruct((2, 2, 2, 2), jnp.float32)
    choice = jax_tconv.tune_choice(small_x, small_w, strides=2)
    assert choice.key == jax_tconv.tune_choice(
        jax.ShapeDtypeStruct((1, 3, 3, 2), jnp.float32), small_w, strides=2).key


@pytest.mark.parametrize("front_end", ["linen", "nnx"])
def test_layers_take_an_unbatched_input(front_end):
    """The Flax layers read any number of leading batch axes, none included."""
    pytest.importorskip("flax")
    from jax_tconv.nn import linen, nnx

    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 5, 3)).astype(np.float32)
    if front_end == "linen":
        layer = linen.ConvTranspose(features=4, kernel_size=(3, 3), strides=2, padding=1, use_bias=False)
        params = layer.init(jax.random.key(0), x)
        y = layer.apply(params, x)
        kernel = params["params"]["kernel"]
    else:
        from flax import nnx as flax_nnx
        layer = nnx.ConvTranspose(3, 4, (3, 3), strides=2, padding=1, use_bias=False,
                                  rngs=flax_nnx.Rngs(0))
        y = layer(x)
        kernel = layer.kernel[...]
    expected = jax_tconv.conv_transpose_reference(
        np.moveaxis(x[None], -1, 1), np.transpose(np.asarray(kernel), (3, 2, 0, 1)),
        strides=(2, 2), padding=((1, 1), (1, 1)), output_padding=(0, 0), dilation=(1, 1))
    assert_close(y, np.moveaxis(expected, 1, -1)[0])


@pytest.mark.parametrize("x_shape", [(4,), (1, 1, 2, 4, 4, 6)])
def test_other_rank_mismatches_keep_their_error(x_shape):
    with pytest.raises(ValueError, match=r"x must have w's rank .* or one axis fewer"):
        jax_tconv.conv_transpose(jnp.ones(x_shape), jnp.ones((3, 3, 2, 6)))
