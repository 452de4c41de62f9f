"""The "products" formulation: no convolution anywhere, temporaries as documented.

Its values and gradients are crossed with the NumPy reference, the PyTorch
golden files and the property tests with every other method (it is in
`jax_tconv.METHODS`); here, what is particular to it.
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_tconv
from jax_tconv.reference import conv_transpose_reference, conv_transpose_reference_vjp

CASES = [  # x shape (NHWC-like), kernel (*k, C_out/g, C_in), kwargs
    ((2, 5, 4, 6), (4, 3, 2, 6), dict(strides=(2, 3), padding=((1, 2), (0, 1)), groups=2)),
    ((1, 7, 3), (3, 4, 3), dict(strides=3, padding=2, output_padding=2, dilation=2)),
    ((2, 3, 3, 2, 4), (2, 3, 2, 5, 4), dict(strides=(2, 1, 3), padding=1)),
    ((2, 6, 6, 3), (5, 5, 2, 3), dict(strides=1, padding=4)),            # most rows cropped
]


@pytest.mark.parametrize("x_shape,w_shape,kw", CASES)
def test_no_convolution_in_forward_or_gradients(x_shape, w_shape, kw):
    """Three matrix products (dot_general) and data movement: XLA's convolution emitter,
    whose rate the roofline benchmark compares against, is never used."""
    x, w = jnp.ones(x_shape), jnp.ones(w_shape)

    def f(x, w):
        return jax_tconv.conv_transpose(x, w, method="products", **kw)

    def loss(x, w):
        return jnp.sum(f(x, w) ** 2)

    for fn in (f, jax.grad(loss, argnums=(0, 1)), jax.jacfwd(loss, argnums=1)):
        text = jax.jit(fn).lower(x, w).as_text()
        assert "convolution" not in text
        assert re.search(r"dot_general", text)


@pytest.mark.parametrize("x_shape,w_shape,kw", CASES[:3])
def test_matches_the_numpy_reference_in_pytorch_layout(x_shape, w_shape, kw):
    rng = np.random.default_rng(0)
    n = len(x_shape) - 2
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    sp = "DHW"[3 - n:]
    # The same numbers channels-first: x (N, C, *i), w (C_in, C_out/g, *k).
    xc, wc = np.moveaxis(x, -1, 1), np.transpose(w, (n + 1, n, *range(n)))
    dn = (f"NC{sp}", f"OI{sp}", f"NC{sp}")
    f = lambda x, w: jax_tconv.conv_transpose(x, w, method="products", dimension_numbers=dn,  # noqa: E731
                                              **kw)
    with jax.enable_x64(True):
        y, vjp = jax.vjp(f, jnp.asarray(xc), jnp.asarray(wc))
        g = rng.standard_normal(y.shape)
        dx, dw = vjp(jnp.asarray(g))
    geometry = dict(strides=kw.get("strides", 1), padding=kw.get("padding", 0),
                    output_padding=kw.get("output_padding", 0), dilation=kw.get("dilation", 1),
                    groups=kw.get("groups", 1))
    per = lambda v: v if isinstance(v, tuple) else (v,) * n  # noqa: E731
    geometry = {k: (v if k in ("groups", "padding") else per(v)) for k, v in geometry.items()}
    if not isinstance(geometry["padding"], tuple):
        geometry["padding"] = [(geometry["padding"],) * 2] * n
    np.testing.assert_allclose(y, conv_transpose_reference(xc, wc, **geometry), atol=1e-10)
    rdx, rdw = conv_transpose_reference_vjp(xc, wc, g, **geometry)
    np.testing.assert_allclose(dx, rdx, atol=1e-10)
    np.testing.assert_allclose(dw, rdw, atol=1e-10)


def test_temporaries_within_the_documented_bound():
    """DCGAN 16 -> 32 (k4 s2, 128 -> 64, batch 4): P and the patches hold prod(k) / prod(s) =
    4 outputs' worth each; forward+backward needs at most three of them at once."""
    x, w = jnp.ones((4, 16, 16, 128)), jnp.ones((4, 4, 64, 128))
    c = jnp.ones((4, 32, 32, 64))

    def loss(x, w, c):
        return jnp.sum(jax_tconv.conv_transpose(x, w, strides=2, padding=1,
                                                method="products") * c)

    compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(x, w, c).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
        pytest.skip("no memory analysis on this backend")
    p_bytes = 4 * 4 * 16 * 16 * math.prod((4, 4)) * 64
    assert analysis.temp_size_in_bytes <= 3 * p_bytes, (analysis.temp_size_in_bytes, p_bytes)
