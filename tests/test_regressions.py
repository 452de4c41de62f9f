"""Minimal regression tests for library bugs found by the reliability work (issue #6)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_tconv
from jax_tconv.reference import conv_transpose_reference, conv_transpose_reference_vjp

METHODS = jax_tconv.METHODS + ("auto",)


# Found by the PyTorch golden files: PyTorch accepts padding with
# (i - 1)*s - 2p + d*(k - 1) + 1 <= 0 when output_padding brings the output
# size o to >= 1; jax_tconv refused it, checking the size before output_padding.
RESCUED = [  # (i, k, s, p, op, d): o = 1 in each
    (5, 4, 2, 6, 1, 1),
    (1, 1, 3, 1, 2, 1),
    (1, 2, 1, 2, 1, 3),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("i,k,s,p,op,d", RESCUED)
def test_output_padding_rescues_a_nonpositive_size(i, k, s, p, op, d, method):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, i)).astype(np.float32)      # NCW
    w = rng.standard_normal((2, 3, k)).astype(np.float32)      # PyTorch (C_in, C_out, k)
    geometry = dict(strides=(s,), padding=((p, p),), output_padding=(op,), dilation=(d,))
    expected = conv_transpose_reference(x, w, **geometry)
    assert expected.shape == (2, 3, 1)
    kwargs = dict(strides=s, padding=p, dilation=d, dimension_numbers=("NCW", "OIW", "NCW"),
                  method=method)
    y = jax_tconv.conv_transpose(x, w, output_padding=op, **kwargs)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    y2 = jax_tconv.conv_transpose(x, w, output_shape=(1,), **kwargs)
    np.testing.assert_allclose(y2, expected, rtol=1e-5, atol=1e-5)
    g = rng.standard_normal(expected.shape).astype(np.float32)
    dx, dw = jax.grad(lambda x, w: jnp.sum(
        g * jax_tconv.conv_transpose(x, w, output_padding=op, **kwargs)), argnums=(0, 1))(x, w)
    ref_dx, ref_dw = conv_transpose_reference_vjp(x, w, g, **geometry)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, ref_dw, rtol=1e-5, atol=1e-5)


def test_output_size_below_one_still_refused():
    x, w = jnp.ones((1, 1, 5)), jnp.ones((1, 1, 4))
    with pytest.raises(ValueError, match=r"conv_transpose: padding \(7, 7\) is too large"):
        jax_tconv.conv_transpose(x, w, strides=2, padding=7, output_padding=1,
                                 dimension_numbers=("NCW", "OIW", "NCW"))


# Found by tests/test_numerics.py: the fused phase form zero-fills shorter sub-kernels,
# and a zero tap times a NaN (or Inf) input is NaN, so a NaN input reached outputs
# whose window does not cover it (1-D k5 s3: 12 NaN outputs where lax has 10).
@pytest.mark.parametrize("method", ["phase", "auto"])
@pytest.mark.parametrize("shape", [(1, 2, 6), (1, 2, 3, 3, 3)], ids=["1d", "3d"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_phase_nan_reaches_only_covered_outputs(shape, bad, method):
    nd = len(shape) - 2
    k, s = {1: ((5,), (3,)), 3: ((5, 4, 4), (3, 2, 2))}[nd]   # 1/6 of the fused taps zero
    sp = "DHW"[3 - nd:]
    dn = (f"NC{sp}", f"OI{sp}", f"NC{sp}")
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((2, 2, *k)).astype(np.float32)
    at = (0, 1, *(n // 2 for n in shape[2:]))
    x[at] = bad
    y = np.asarray(jax_tconv.conv_transpose(x, w, strides=s, padding=1, dimension_numbers=dn,
                                            method=method))
    pads = [(kj - 2, kj - 2) for kj in k]     # lax pads the dilated input: k - 1 - padding
    expected = np.asarray(jax.lax.conv_transpose(x, w, s, pads, dimension_numbers=dn,
                                                 transpose_kernel=True))
    np.testing.assert_array_equal(~np.isfinite(y), ~np.isfinite(expected))


# Found by tests/sharding_check.py: inside jax.shard_map, "vjp" (auto's forward on GPU
# and TPU) and the gradients of "phase" and "auto" failed to trace: the pullback's zero
# primal did not vary over the mesh axes that x or w vary over, so the cotangent x did
# not type-check ("unexpected JAX type ... for argument to VJP function"). A one-device
# mesh is enough to show it; tests/test_sharding.py checks values on eight.
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sharded", ["x", "w"])
def test_shard_map_forward_and_gradients(method, sharded):
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:1]), ("d",))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)     # NWC
    w = rng.standard_normal((3, 4, 3)).astype(np.float32)     # WIO
    specs = (P("d"), P()) if sharded == "x" else (P(), P(None, "d"))
    out = P("d") if sharded == "x" else P(None, None, "d")

    def f(x, w):
        return jax_tconv.conv_transpose(x, w, strides=2, padding=1, method=method)

    def loss(x, w):
        return jnp.sum(jnp.sin(f(x, w)))

    y = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=specs, out_specs=out))(x, w)
    grads = jax.jit(jax.shard_map(jax.grad(loss, argnums=(0, 1)), mesh=mesh, in_specs=specs,
                                  out_specs=specs))(x, w)
    np.testing.assert_allclose(y, f(x, w), rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, jax.grad(loss, argnums=(0, 1))(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# Found by hostile-input probing: an empty batch (N = 0) crashed "matmul" and "phase"
# (fused form, per-tap kernel gradient), and zero input channels crashed "phase", with a
# ZeroDivisionError from a reshape to -1 of an empty array; the other methods return the
# empty (or all-zero) result that the sum over no terms is.
EMPTY = [  # (x shape, w shape (kernel spec ...IO), strides, padding)
    ((0, 4, 4, 4), (4, 4, 2, 4), 2, 1),        # N = 0, fused phase
    ((0, 4, 4, 4), (2, 2, 2, 4), 2, 0),        # N = 0, per-tap kernel gradient
    ((0, 2, 2, 2, 2), (2, 2, 2, 3, 2), 2, 0),  # N = 0, 3-D
    ((1, 4, 4, 0), (4, 4, 2, 0), 2, 1),        # C_in = 0: y is all zeros
    ((2, 3, 0), (3, 2, 0), 3, 0),              # C_in = 0, 1-D
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("x_shape,w_shape,s,p", EMPTY)
def test_empty_batch_or_channels(x_shape, w_shape, s, p, method):
    x, w = jnp.ones(x_shape), jnp.ones(w_shape)
    nd = len(x_shape) - 2
    o = tuple((i - 1) * s - 2 * p + k for i, k in zip(x_shape[1:-1], w_shape[:nd]))
    expected = (x_shape[0], *o, w_shape[-2])

    def f(x, w):
        return jax_tconv.conv_transpose(x, w, strides=s, padding=p, method=method)

    y = f(x, w)
    assert y.shape == expected and not np.asarray(y).any()
    dx, dw = jax.grad(lambda x, w: jnp.sum(f(x, w) ** 2), argnums=(0, 1))(x, w)
    assert dx.shape == x.shape and dw.shape == w.shape
    assert not np.asarray(dw).any()


# Found by hostile-input probing: preferred_element_type was passed on unchecked. An
# integer one made "vjp" return float0 garbage and "matmul" an int32 result, a narrower
# one (float16 from float32) was honoured by two methods and a lax TypeError elsewhere.
BAD_PREFERRED = [jnp.int32, jnp.float16, jnp.bfloat16, jnp.complex64, "nonsense"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pet", BAD_PREFERRED, ids=str)
def test_preferred_element_type_is_validated(pet, method):
    x, w = jnp.ones((1, 4, 4, 4)), jnp.ones((3, 3, 2, 4))
    with pytest.raises(TypeError, match=r"^conv_transpose: preferred_element_type must be"):
        jax_tconv.conv_transpose(x, w, method=method, preferred_element_type=pet)


@pytest.mark.parametrize("method", METHODS)
def test_preferred_element_type_wider_or_equal_is_accepted(method):
    x, w = jnp.ones((1, 4, 4, 4), jnp.bfloat16), jnp.ones((3, 3, 2, 4), jnp.bfloat16)
    for pet in (jnp.bfloat16, jnp.float32, "float32"):
        y = jax_tconv.conv_transpose(x, w, method=method, preferred_element_type=pet)
        assert y.dtype == jnp.dtype(pet)
    z = jnp.ones((1, 4, 4, 4), jnp.complex64), jnp.ones((3, 3, 2, 4), jnp.complex64)
    assert jax_tconv.conv_transpose(*z, method=method,
                                    preferred_element_type=jnp.complex64).dtype == jnp.complex64


# Issue 15: XLA:CPU aborted the process (a CHECK failure in its algebraic simplifier, where it
# swaps convolution operands) on this call under "vjp", "dilated" and "auto", forward pass
# included; the pullback held a group dimension XLA mishandles (docs/xla-bugs.md). Each
# method runs in a subprocess, so an abort fails the test instead of killing pytest. Layouts:
# the default, PyTorch's, and a permutation whose spatial order (the kernel spec's) is W, H.
ISSUE_15 = r"""
import sys, functools, jax, jax.numpy as jnp, numpy as np, jax_tconv
from jax_tconv.reference import conv_transpose_reference, conv_transpose_reference_vjp
method = sys.argv[1]
rng = np.random.default_rng(15)
xc = rng.standard_normal((1, 1, 6, 3))       # (N, C_in, H, W)
wc = rng.standard_normal((1, 2, 2, 4))       # (C_in, C_out, kH, kW)
for specs in [("NHWC", "HWIO", "NHWC"), ("NCHW", "OIHW", "NCHW"), ("NCWH", "OWHI", "CHWN")]:
    sp = "".join(c for c in specs[1] if c not in "OI")          # lax's spatial order
    order = ["HW".index(c) for c in sp]
    s, pad = [(2, 4)[j] for j in order], [((1, 1), (3, 1))[j] for j in order]
    x_ = np.transpose(xc, (0, 1, *(2 + j for j in order)))     # canonical, in lax's order
    w_ = np.transpose(wc, (0, 1, *(2 + j for j in order)))
    to = lambda a, frm, spec: np.asarray(a).transpose([frm.index(c) for c in spec])
    x = to(x_, "NC" + sp, specs[2]).astype(np.float32)
    w = to(w_, "OI" + sp, specs[1]).astype(np.float32)
    geometry = dict(strides=s, padding=pad, output_padding=(0, 0), dilation=(1, 1))
    y_ref = conv_transpose_reference(x_, w_, **geometry)
    g_ = rng.standard_normal(y_ref.shape)
    dx_ref, dw_ref = conv_transpose_reference_vjp(x_, w_, g_, **geometry)
    f = functools.partial(jax_tconv.conv_transpose, strides=s, padding=pad,
                          dimension_numbers=specs, method=method)
    y, pull = jax.vjp(jax.jit(f), x, w)
    dx, dw = pull(to(g_, "NC" + sp, specs[0]).astype(np.float32))
    for name, got, want in [("y", y, to(y_ref, "NC" + sp, specs[0])),
                            ("dx", dx, to(dx_ref, "NC" + sp, specs[2])),
                            ("dw", dw, to(dw_ref, "OI" + sp, specs[1]))]:
        assert got.shape == want.shape, (specs, name, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{specs} {name}")
    print(specs, "ok", flush=True)
"""


@pytest.mark.parametrize("method", METHODS)
def test_issue_15_call_does_not_abort(method):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", ISSUE_15, method], capture_output=True,
                          text=True)
    check = [line for line in proc.stderr.splitlines() if "Check failed" in line]
    assert proc.returncode == 0, (
        f"{method}: rc={proc.returncode}\n{proc.stdout}{(check or [proc.stderr[-3000:]])[0]}")
    assert proc.stdout.count(" ok") == 3, proc.stdout
