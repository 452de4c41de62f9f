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


# ---------------------------------------------------------------------------------------
# "auto" decides for the platform being lowered to (lax.platform_dependent).

FORCED_PRODUCTS = "dot=1000,conv=1,temp=1000"   # on CPU "auto" must then run "products"
LAYER = dict(strides=2, padding=1)


def layer_arrays():
    rng = np.random.default_rng(1)
    return (rng.standard_normal((2, 6, 6, 8)).astype(np.float32),    # NHWC
            rng.standard_normal((4, 4, 4, 8)).astype(np.float32))    # HWIO: 8 -> 4

def program(fn, platforms, x, w):
    return export.export(fn, platforms=platforms)(x, w).mlir_module()


@pytest.mark.parametrize("pass_", ["forward", "gradient"])
def test_a_multi_platform_export_carries_each_platforms_choice(monkeypatch, pass_):
    monkeypatch.setenv("JAX_TCONV_RATES", FORCED_PRODUCTS)
    x, w = layer_arrays()
    choices = {p: jax_tconv.auto_method(x, w, backend=p, **LAYER).method for p in PLATFORMS}
    assert choices == {"cpu": "products", "cuda": "vjp", "tpu": "vjp"}

    def f(x, w):
        return jax_tconv.conv_transpose(x, w, **LAYER)

    fn = jax.jit(f) if pass_ == "forward" else jax.jit(
        jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1)))
    # Lowered for one platform, the program holds that platform's formulation alone:
    # "products" is matrix products (no convolution), "vjp" convolutions (no matrix product).
    cpu = program(fn, ["cpu"], x, w)
    assert "stablehlo.dot_general" in cpu and "stablehlo.convolution" not in cpu
    for accelerator in ("cuda", "tpu"):
        text = program(fn, [accelerator], x, w)
        assert "stablehlo.convolution" in text and "stablehlo.dot_general" not in text
    # One artifact for three platforms: both, behind the platform index; run here, the CPU's.
    exp = export.export(fn, platforms=["cpu", "cuda", "tpu"])(x, w)
    text = exp.mlir_module()
    assert "stablehlo.dot_general" in text and "stablehlo.convolution" in text
    expected = jax.jit(f if pass_ == "forward" else jax.grad(
        lambda x, w: jnp.sum(jnp.sin(jax_tconv.conv_transpose(x, w, method="vjp", **LAYER))),
        argnums=(0, 1)))(x, w)
    for got, want in zip(jax.tree_util.tree_leaves(exp.call(x, w)),
                         jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_cpu_choice_on_an_accelerator_host_reads_no_calibration(monkeypatch):
    """Lowered for CPU on a GPU or TPU host, "auto" uses the convolution table and measures
    nothing (the rates would be read, and fail, if it did)."""
    monkeypatch.setenv("JAX_TCONV_RATES", "not rates")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    x, w = layer_arrays()
    choice = jax_tconv.auto_method(x, w, backend="cpu", **LAYER)
    assert choice.method in ("dilated", "phase") and "not calibrated" in choice.reason
