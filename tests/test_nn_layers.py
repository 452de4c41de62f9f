"""jax_tconv.nn layers, linen, nnx and Equinox alike, against NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nn_helpers import (
    APIS,
    LAYER_APIS,
    Layer,
    nearest,
    np_normal,
    pairs,
    per_dim,
    ref_conv,
    ref_conv_transpose,
    ref_pixel_shuffle,
)

import jax_tconv
from jax_tconv.nn import pixel_shuffle, pixel_unshuffle

# (name, spatial input, C_in, C_out, kernel_size, layer kwargs)
CASES = [
    ("1d_s2_p1_op1", (5,), 2, 3, (3,), dict(strides=2, padding=1, output_padding=1)),
    ("1d_dil2_groups2", (4,), 4, 2, (3,), dict(strides=3, dilation=2, groups=2)),
    ("2d_dcgan", (4, 3), 3, 2, (4, 4), dict(strides=2, padding=1)),
    ("2d_mixed", (3, 4), 2, 4, (3, 2), dict(strides=(2, 1), padding=((1, 0), (0, 1)),
                                            output_padding=(1, 0), dilation=(1, 2), groups=2)),
    ("2d_same", (3, 3), 2, 2, (3, 3), dict(strides=2, padding="SAME")),
    ("3d", (2, 3, 2), 2, 2, (2, 3, 2), dict(strides=(1, 2, 2), padding=(0, 1, 0))),
]
IDS = [c[0] for c in CASES]


def close(a, b, tol=2e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


def _x(batch, spatial, c, seed=1):
    return np_normal((*batch, *spatial, c), seed)


def _ref_kwargs(case_kw, n, spatial):
    """Padding pairs and output_padding for the reference ('SAME' resolved by hand)."""
    kw = dict(case_kw)
    if kw.get("padding") == "SAME":  # forward SAME on an input of size i*s
        s = per_dim(kw["strides"], n)
        k = kw.pop("_k")
        pads = []
        for ij, kj, sj in zip(spatial, k, s):
            total = max((ij - 1) * sj + kj - ij * sj, 0)
            pads.append((total // 2, total - total // 2))
        kw["padding"] = tuple(pads)
    kw.pop("_k", None)
    return kw


# Batch axes cycle through the cases: one, none (unbatched), two.
BATCHES = [(2,), (), (2, 1)]


@pytest.mark.parametrize("api", LAYER_APIS)
@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_conv_transpose_matches_reference(api, index):
    name, spatial, cin, cout, k, kw = CASES[index]
    x = _x(BATCHES[index % len(BATCHES)], spatial, cin)
    layer = Layer(api, "ConvTranspose", cin, cout, k, x=x,
                  **kw)
    p = layer.params
    assert p["kernel"].shape == (*k, cout // kw.get("groups", 1), cin)
    expected = ref_conv_transpose(x, p["kernel"], p["bias"],
                                  **_ref_kwargs({**kw, "_k": k}, len(k), spatial))
    close(layer(x), expected)


@pytest.mark.parametrize("api", LAYER_APIS)
def test_output_shape_at_call_time(api):
    """A U-Net decoder matching an odd-sized skip connection."""
    x, skip = _x((2,), (4, 4), 3), jnp.zeros((2, 8, 7, 5))
    layer = Layer(api, "ConvTranspose", 3, 5, (3, 3), x=x, strides=2, padding=1)
    assert layer(x).shape == (2, 7, 7, 5)
    p = layer.params
    y = layer(x, output_shape=skip.shape[1:3])
    close(y, ref_conv_transpose(x, p["kernel"], p["bias"], strides=2, padding=1,
                                output_padding=(1, 0)))
    with pytest.raises(ValueError, match=r"ConvTranspose: output_shape is unreachable in "
                                         r"spatial dimension 0: got 9"):
        layer(x, output_shape=(9, 8))
    if api == "equinox":  # unbatched layers: the full shape is (C, *o) (test_nn_equinox.py)
        return
    close(layer(x, output_shape=skip.shape), y)  # the full shape works too
    with pytest.raises(ValueError, match=r"ConvTranspose: the full output_shape \(3, 8, 7, 5\) "
                                         r"must keep the input's batch axes \(2,\)"):
        layer(x, output_shape=(3, 8, 7, 5))


@pytest.mark.parametrize("api", LAYER_APIS)
def test_every_method_same_outputs_and_gradients(api):
    x = _x((2,), (3, 4), 4)
    kw = dict(strides=2, padding=(1, 0), output_padding=(1, 0), groups=2)
    results = {}
    for method in ("auto", *jax_tconv.METHODS):
        layer = Layer(api, "ConvTranspose", 4, 2, (3, 3), x=x, method=method, **kw)
        p = layer.params
        g = np_normal(layer(x).shape, 7)

        def loss(p, x, layer=layer, g=g):
            return jnp.sum(layer.apply(p, x) * g)

        value, (gp, gx) = jax.value_and_grad(loss, argnums=(0, 1))(p, x)
        # Euler's identity for a map linear in the kernel and in x (bias apart):
        # <dL/dw, w> == <dL/dx, x> == L - <dL/db, b>.
        linear_part = value - jnp.vdot(gp["bias"], p["bias"])
        close(jnp.vdot(gp["kernel"], p["kernel"]), linear_part, 1e-4)
        close(jnp.vdot(gx, x), linear_part, 1e-4)
        close(gp["bias"], g.sum(axis=(0, 1, 2)))
        results[method] = (layer(x), gp["kernel"], gx)
    first = results["auto"]
    for method, res in results.items():
        for a, b in zip(res, first):
            close(a, b, 1e-4)


RESIZE_CASES = [
    ("k3_s2_p1_op1", (4, 3), (3, 3), dict(strides=2, padding=1, output_padding=1)),
    ("k4_s2_p1", (3, 4), (4, 4), dict(strides=2, padding=1)),
    ("k1_s2_crop", (3,), (1,), dict(strides=2)),
    ("k3_s3_dil2_groups2", (3, 2), (3, 2), dict(strides=(3, 2), dilation=(2, 1), groups=2)),
    ("same", (3, 3), (3, 3), dict(strides=2, padding="SAME")),
]


@pytest.mark.parametrize("api", LAYER_APIS)
@pytest.mark.parametrize("name,spatial,k,kw", RESIZE_CASES, ids=[c[0] for c in RESIZE_CASES])
def test_resize_conv_size_and_values(api, name, spatial, k, kw):
    x = _x((2,), spatial, 2)
    layer = Layer(api, "ResizeConv", 2, 4, k, x=x, **kw)
    twin = Layer(api, "ConvTranspose", 2, 4, k, x=x, **kw)
    y = layer(x)
    assert y.shape == twin(x).shape
    p, n = layer.params, len(k)
    assert p["kernel"].shape == (*k, 2 // kw.get("groups", 1), 4)
    s, d = per_dim(kw["strides"], n), per_dim(kw.get("dilation", 1), n)
    pads = []
    for oj, ij, sj, dj, kj in zip(y.shape[1:-1], spatial, s, d, k):
        t = oj - ij * sj + dj * (kj - 1)
        pads.append((t // 2, t - t // 2))
    expected = ref_conv(nearest(np.asarray(x), s), p["kernel"], pads, dilation=d,
                        groups=kw.get("groups", 1)) + np.asarray(p["bias"])
    close(y, expected)


@pytest.mark.parametrize("api", LAYER_APIS)
def test_resize_conv_bilinear_and_output_shape(api):
    x = _x((), (3, 4), 2)
    layer = Layer(api, "ResizeConv", 2, 3, (3, 3), x=x, strides=2, padding=1,
                  resize_method="bilinear")
    y = layer(x, output_shape=(6, 7))
    assert y.shape == (6, 7, 3)
    up = jax.image.resize(x, (6, 8, 2), "linear")
    p = layer.params
    expected = ref_conv(np.asarray(up)[None], p["kernel"], [(1, 1), (0, 1)])[0]
    expected = expected + np.asarray(p["bias"])
    close(y, expected)


@pytest.mark.parametrize("api", LAYER_APIS)
@pytest.mark.parametrize("spatial,k,r,kw", [
    ((4, 3), (3, 3), 2, {}),
    ((5,), (3,), 3, dict(groups=2)),
    ((2, 3, 4), (1, 3, 3), (1, 2, 2), dict(padding=0)),
    ((3, 4), (3, 3), (2, 3), dict(dilation=2)),
], ids=["2d_r2", "1d_r3_groups2", "3d_r122_valid", "2d_r23_dil2"])
def test_sub_pixel_conv(api, spatial, k, r, kw):
    x = _x((2,), spatial, 2)
    layer = Layer(api, "SubPixelConv", 2, 4, k, x=x, upscale_factor=r,
                  **kw)
    n = len(k)
    r = per_dim(r, n)
    p = layer.params
    assert p["kernel"].shape == (*k, 2 // kw.get("groups", 1), 4 * int(np.prod(r)))
    d = per_dim(kw.get("dilation", 1), n)
    if "padding" in kw:
        pads = pairs(kw["padding"], n)
    else:  # stride-1 SAME
        pads = [((dj * (kj - 1)) // 2, dj * (kj - 1) - (dj * (kj - 1)) // 2)
                for kj, dj in zip(k, d)]
    conv = ref_conv(x, p["kernel"], pads, dilation=d, groups=kw.get("groups", 1))
    conv = conv + np.asarray(p["bias"])
    close(layer(x), ref_pixel_shuffle(conv, r))


@pytest.mark.parametrize("shape,r", [((2, 3, 4, 12), (2, 2)), ((1, 5, 6), (3,)),
                                     ((2, 2, 3, 2, 12), (1, 2, 3))])
def test_pixel_shuffle_order_and_inverse(shape, r):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    y = pixel_shuffle(x, r)
    np.testing.assert_array_equal(y, ref_pixel_shuffle(x, r))
    np.testing.assert_array_equal(pixel_unshuffle(y, r), x)
    if len(set(r)) == 1:
        np.testing.assert_array_equal(pixel_shuffle(x, r[0]), y)  # int factor, one batch axis
    # unbatched and several batch axes
    np.testing.assert_array_equal(pixel_shuffle(x[0], r, num_spatial=len(r)), y[0])
    np.testing.assert_array_equal(pixel_shuffle(x[None], r), y[None])


def test_pixel_shuffle_errors():
    with pytest.raises(ValueError, match=r"pixel_shuffle: the channel count 6 must be a "
                                         r"multiple of prod\(upscale_factor\) = 4"):
        pixel_shuffle(jnp.zeros((1, 2, 2, 6)), 2)
    with pytest.raises(ValueError, match=r"pixel_unshuffle: spatial size 3 in dimension 0 is "
                                         r"not divisible by downscale_factor 2"):
        pixel_unshuffle(jnp.zeros((1, 3, 2, 1)), 2)
    with pytest.raises(ValueError, match=r"pixel_shuffle: upscale_factor must be >= 1"):
        pixel_shuffle(jnp.zeros((1, 2, 2, 4)), (0, 2))


# Flax's dtype is the computation's; Equinox's that of the parameters (test_nn_equinox.py).
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("cls", ["ConvTranspose", "ResizeConv", "SubPixelConv"])
def test_mixed_precision(api, cls):
    x = _x((2,), (4, 4), 3)
    extra = dict(upscale_factor=2) if cls == "SubPixelConv" else dict(strides=2, padding=1)
    k = (3, 3) if cls == "SubPixelConv" else (4, 4)
    low = Layer(api, cls, 3, 4, k, x=x, dtype=jnp.bfloat16, **extra)
    full = Layer(api, cls, 3, 4, k, x=x, **extra)
    assert all(v.dtype == jnp.float32 for v in low.params.values())
    y = low(x)
    assert y.dtype == jnp.bfloat16
    close(y, full.apply(low.params, x), 5e-2)


@pytest.mark.parametrize("api", LAYER_APIS)
def test_vmap(api):
    x = _x((3, 2), (4,), 2)  # vmapped axis 3, batch 2 inside
    layer = Layer(api, "ConvTranspose", 2, 3, (3,), x=x[0], strides=2)
    p = layer.params
    y = jax.vmap(lambda xi: layer.apply(p, xi))(x)
    close(y, ref_conv_transpose(x, p["kernel"], p["bias"], strides=2))
