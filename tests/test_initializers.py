"""bilinear and icnr: at initialization the layer's output is the named upsampling."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nn_helpers import APIS, Layer, nearest, np_normal, per_dim, ref_conv

from jax_tconv import initializers


def close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("s,spatial,groups", [
    (2, (5, 4), 1), (3, (4,), 3), (4, (3, 3), 1), (2, (3, 2, 3), 3),
], ids=["s2_2d", "s3_1d_depthwise", "s4_2d", "s2_3d_depthwise"])
def test_bilinear_is_bilinear_upsampling(api, s, spatial, groups):
    n, c = len(spatial), 3
    k = (2 * s - s % 2,) * n
    x = np_normal((2, *spatial, c), 3)
    layer = Layer(api, "ConvTranspose", c, c, k, x=x, strides=s, padding=s // 2, groups=groups,
                  use_bias=False, kernel_init=initializers.bilinear())
    y = np.asarray(layer(x))
    big = tuple(i * s for i in spatial)
    assert y.shape == (2, *big, c)
    # Interior: jax.image.resize's bilinear (half-pixel centres), per channel.
    b = s // 2
    inner = (slice(None),) + (slice(b, -b),) * n
    close(y[inner], np.asarray(jax.image.resize(x, (2, *big, c), "linear"))[inner])
    # Everywhere: the bilinear upsampling of x zero-padded by one, cut by s at each end.
    xp = jnp.pad(x, [(0, 0)] + [(1, 1)] * n + [(0, 0)])
    ref = jax.image.resize(xp, (2, *((i + 2) * s for i in spatial), c), "linear")
    close(y, np.asarray(ref)[(slice(None),) + (slice(s, -s),) * n])


def test_bilinear_kernel_values_and_errors():
    w = initializers.bilinear()(None, (4, 2, 2))  # k=4 (s=2), groups=1, C=2
    tent = np.array([0.25, 0.75, 0.75, 0.25])
    close(w[:, 0, 0], tent)
    close(w[:, 1, 1], tent)
    close(w[:, 0, 1], 0)
    close(initializers.bilinear()(None, (3, 1, 1))[:, 0, 0], [0.5, 1, 0.5])
    with pytest.raises(ValueError, match=r"bilinear: per-channel upsampling needs C_out == "
                                         r"C_in, so the kernel's C_out // groups axis \(2\) "
                                         r"must divide C_in \(3\)"):
        initializers.bilinear()(None, (4, 4, 2, 3))


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("spatial,k,r,groups", [
    ((4, 3), (3, 3), 2, 1), ((5,), (3,), 3, 2), ((3, 4), (3, 1), (2, 3), 1),
    ((2, 2, 3), (1, 3, 3), 2, 1),
], ids=["2d_r2", "1d_r3_groups2", "2d_r23", "3d_r2"])
def test_icnr_is_nearest_upsampling_of_a_conv(api, spatial, k, r, groups):
    n = len(k)
    x = np_normal((2, *spatial, 4), 5)
    base_init = jax.nn.initializers.lecun_normal()
    layer = Layer(api, "SubPixelConv", 4, 2, k, x=x, upscale_factor=r, groups=groups,
                  kernel_init=initializers.icnr(base_init, r),
                  bias_init=jax.nn.initializers.zeros)
    r = per_dim(r, n)
    big_r = int(np.prod(r))
    kernel = np.asarray(layer.params["kernel"])
    base = kernel[..., ::big_r]
    pads = [((kj - 1) // 2, kj - 1 - (kj - 1) // 2) for kj in k]
    expected = nearest(ref_conv(x, base, pads, groups=groups), r)
    y = np.asarray(layer(x))
    close(y, expected)
    # Each r_1 x ... x r_n block is constant: no checkerboard at step 0.
    for a in itertools.product(*map(range, r)):
        sub = y[(slice(None),) + tuple(slice(aj, None, rj) for aj, rj in zip(a, r))]
        close(sub, y[(slice(None),) + tuple(slice(0, None, rj) for rj in r)])


def test_icnr_draws_the_base_kernel_from_base_init():
    base_init = jax.nn.initializers.lecun_normal()
    key = jax.random.key(3)
    w = initializers.icnr(base_init, (2, 2))(key, (3, 3, 5, 8))
    base = base_init(key, (3, 3, 5, 2))
    close(w, np.repeat(np.asarray(base), 4, axis=-1), 0)
    assert w.dtype == jnp.float32


def test_icnr_errors():
    init = initializers.icnr(jax.nn.initializers.lecun_normal(), 2)
    with pytest.raises(ValueError, match=r"icnr: the kernel shape must be .* R = prod\(scale\) "
                                         r"= 4; got \(3, 3, 5, 6\)"):
        init(jax.random.key(0), (3, 3, 5, 6))
    with pytest.raises(ValueError,
                       match=r"icnr: scale must be an int or a sequence of 2 ints .* got \(2, 2, 2\)"):
        initializers.icnr(jax.nn.initializers.lecun_normal(), (2, 2, 2))(None, (3, 3, 1, 8))
    with pytest.raises(ValueError, match=r"icnr: scale must be >= 1 in every dimension, got 0"):
        initializers.icnr(jax.nn.initializers.lecun_normal(), 0)
    with pytest.raises(TypeError, match=r"icnr: base_init must be an initializer"):
        initializers.icnr("lecun", 2)
