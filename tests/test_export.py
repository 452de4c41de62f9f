"""jax.export: every method's jitted function and gradient serialize, deserialize and
reproduce their results; one artifact serves CPU, CUDA and TPU.

Serialization needs the ``flatbuffers`` package (``pip install flatbuffers``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

import jax_tconv

pytest.importorskip("flatbuffers", reason="jax.export serialization needs flatbuffers")

METHODS = jax_tconv.METHODS + ("auto",)
PLATFORMS = ("cpu", "cuda", "tpu")
KWARGS = dict(strides=2, padding=1, output_padding=1, dilation=(1, 2), groups=2)


def arrays(batch=2):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 5, 4, 4)).astype(np.float32)      # NHWC, C_in = 4
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)          # HWIO, C_out = 3 * 2
    return x, w


def forward(method):
    return jax.jit(lambda x, w: jax_tconv.conv_transpose(x, w, method=method, **KWARGS))


def grads(method):
    def loss(x, w):
        return jnp.sum(jnp.sin(jax_tconv.conv_transpose(x, w, method=method, **KWARGS)))

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def round_trip(exported, **kwargs):
    blob = exported.serialize(**kwargs)
    assert isinstance(blob, bytearray | bytes) and len(blob) > 0
    return export.deserialize(blob)


@pytest.mark.parametrize("method", METHODS)
def test_forward_and_gradient_round_trip_for_three_platforms(method):
    x, w = arrays()
    f, g = forward(method), grads(method)
    for fn in (f, g):
        exported = export.export(fn, platforms=PLATFORMS)(x, w)
        assert exported.platforms == PLATFORMS
        # Plain StableHLO: no backend-specific custom calls, so any of the three can run it.
        assert "custom_call" not in exported.mlir_module()
        restored = round_trip(exported)
        assert restored.platforms == PLATFORMS
        for got, want in zip(jax.tree.leaves(restored.call(x, w)), jax.tree.leaves(fn(x, w))):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=method)


@pytest.mark.parametrize("method", METHODS)
def test_differentiate_a_deserialized_forward(method):
    """serialize(vjp_order=1) keeps the VJP: training through a loaded artifact works."""
    x, w = arrays()
    restored = round_trip(export.export(forward(method))(x, w), vjp_order=1)

    def loss(x, w):
        return jnp.sum(jnp.sin(restored.call(x, w)))

    for got, want in zip(jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w), grads(method)(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=method)


@pytest.mark.parametrize("method", METHODS)
def test_batch_polymorphic_export(method):
    """One artifact for any batch size: the batch dimension exported symbolically."""
    x, w = arrays()
    (b,) = export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((b, *x.shape[1:]), x.dtype)
    restored = round_trip(export.export(forward(method))(spec, w))
    for batch in (1, 3):
        xb, _ = arrays(batch)
        np.testing.assert_allclose(restored.call(xb, w), forward(method)(xb, w), rtol=1e-6,
                                   atol=1e-6, err_msg=method)
