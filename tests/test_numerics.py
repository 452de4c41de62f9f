"""Numerics: low precision against lax's own error, float64, complex64, NaN/Inf, determinism,
and large layers (memory and the "matmul" refusal)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, note, settings
from test_properties import configs, examples

import jax_tconv
from jax_tconv.reference import conv_transpose_reference, conv_transpose_reference_vjp

METHODS = jax_tconv.METHODS + ("auto",)

#: Each method's error against a float64 reference, in bfloat16 or float16, is at most
#: this factor times lax.conv_transpose(transpose_kernel=True)'s error on the same inputs
#: (relative RMS error; the max error gets LOW_PRECISION_MAX_FACTOR). Measured on XLA:CPU
#: (jax 0.10.2): 1.00 for every method and configuration below, since XLA accumulates
#: both in float32 and rounds once; the slack allows another summation order.
LOW_PRECISION_FACTOR = 1.1
LOW_PRECISION_MAX_FACTOR = 1.5
#: preferred_element_type=float32 from bfloat16/float16 inputs: products exact, float32
#: sums; max error relative to max |y| (measured <= 5e-7).
PREFERRED_F32_TOL = 2e-6

# (input size, kernel, stride, padding, output_padding, dilation, (C_in, C_out))
LAYERS = {
    "1d_k4_s2_p1": ((32,), (4,), (2,), (1,), (0,), (1,), (16, 8)),
    "2d_k4_s2_p1": ((8, 8), (4, 4), (2, 2), (1, 1), (0, 0), (1, 1), (32, 16)),
    "2d_k3_s2_op1": ((8, 8), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), (32, 16)),
    "2d_k3_d2": ((8, 8), (3, 3), (1, 1), (2, 2), (0, 0), (2, 2), (16, 16)),
    "3d_k3_s2_op1": ((4, 4, 4), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), (1, 1, 1), (8, 8)),
}


def layer(name, dtype, batch=2, seed=0):
    """x (N, C_in, *i), PyTorch-layout w, jax_tconv kwargs, lax.conv_transpose kwargs, and
    the reference's geometry, for LAYERS[name]; w scaled so that y is O(1)."""
    i, k, s, p, op, d, (cin, cout) = LAYERS[name]
    nd = len(i)
    sp = "DHW"[3 - nd:]
    dn = (f"NC{sp}", f"OI{sp}", f"NC{sp}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, cin, *i))
    w = rng.standard_normal((cin, cout, *k)) / np.sqrt(cin * np.prod(k))
    kwargs = dict(strides=s, padding=p, output_padding=op, dilation=d, dimension_numbers=dn)
    lax_kwargs = dict(strides=s, rhs_dilation=d, dimension_numbers=dn, transpose_kernel=True,
                      padding=[(dj * (kj - 1) - pj, dj * (kj - 1) - pj + opj)
                               for kj, dj, pj, opj in zip(k, d, p, op)])
    geometry = dict(strides=s, padding=[(pj, pj) for pj in p], output_padding=op, dilation=d)
    return jnp.asarray(x, dtype), jnp.asarray(w, dtype), kwargs, lax_kwargs, geometry


def rms_error(y, ref):
    return float(np.sqrt(np.mean((np.asarray(y, np.float64) - ref) ** 2) / np.mean(ref ** 2)))


def max_error(y, ref):
    return float(np.abs(np.asarray(y, np.float64) - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
def test_low_precision_no_worse_than_lax(dtype, name):
    x, w, kwargs, lax_kwargs, geometry = layer(name, dtype)
    # The reference sees exactly the rounded inputs, in float64.
    ref = conv_transpose_reference(np.asarray(x, np.float64), np.asarray(w, np.float64),
                                   **geometry)
    y_lax = jax.lax.conv_transpose(x, w, **lax_kwargs)
    lax_rms, lax_max = rms_error(y_lax, ref), max_error(y_lax, ref)
    assert lax_rms > 0
    for method in METHODS:
        y = jax_tconv.conv_transpose(x, w, method=method, **kwargs)
        assert y.dtype == dtype, method
        assert rms_error(y, ref) <= LOW_PRECISION_FACTOR * lax_rms, (method, rms_error(y, ref))
        assert max_error(y, ref) <= LOW_PRECISION_MAX_FACTOR * lax_max, method
        y32 = jax_tconv.conv_transpose(x, w, method=method, preferred_element_type=jnp.float32,
                                       **kwargs)
        assert y32.dtype == jnp.float32, method
        assert max_error(y32, ref) <= PREFERRED_F32_TOL, (method, max_error(y32, ref))
        # ... far better than the rounded output, so the accumulation really is float32.
        assert max_error(y32, ref) * 100 < lax_max, method


@pytest.mark.parametrize("name", ["1d_k4_s2_p1", "3d_k3_s2_op1"])
def test_float64_under_x64_values_and_gradients(name):
    with jax.enable_x64(True):
        x, w, kwargs, _, geometry = layer(name, jnp.float64)
        ref = conv_transpose_reference(np.asarray(x), np.asarray(w), **geometry)
        g = np.random.default_rng(1).standard_normal(ref.shape)
        ref_dx, ref_dw = conv_transpose_reference_vjp(np.asarray(x), np.asarray(w), g, **geometry)
        for method in METHODS:
            f = lambda x, w, m=method: jax_tconv.conv_transpose(x, w, method=m, **kwargs)  # noqa: E731
            y, pullback = jax.vjp(f, x, w)
            dx, dw = pullback(jnp.asarray(g))
            assert y.dtype == dx.dtype == dw.dtype == jnp.float64, method
            np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12, err_msg=method)
            np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=1e-12, err_msg=method)
            np.testing.assert_allclose(dw, ref_dw, rtol=1e-12, atol=1e-11, err_msg=method)


@pytest.mark.parametrize("name", ["2d_k3_s2_op1"])
def test_complex64_values_and_gradients(name):
    """lax supports complex64 convolutions; gradients are JAX's (unconjugated) VJP."""
    xr, wr, kwargs, lax_kwargs, geometry = layer(name, jnp.float32, seed=0)
    xi, wi, *_ = layer(name, jnp.float32, seed=1)
    x, w = (xr + 1j * xi).astype(jnp.complex64), (wr + 1j * wi).astype(jnp.complex64)
    ref = conv_transpose_reference(np.asarray(x), np.asarray(w), **geometry)
    rng = np.random.default_rng(2)
    g = (rng.standard_normal(ref.shape) + 1j * rng.standard_normal(ref.shape)).astype(np.complex64)
    ref_dx, ref_dw = conv_transpose_reference_vjp(np.asarray(x), np.asarray(w), g, **geometry)
    np.testing.assert_allclose(jax.lax.conv_transpose(x, w, **lax_kwargs), ref, atol=1e-5)
    for method in METHODS:
        f = lambda x, w, m=method: jax_tconv.conv_transpose(x, w, method=m, **kwargs)  # noqa: E731
        y, pullback = jax.vjp(f, x, w)
        dx, dw = pullback(g)
        assert y.dtype == dx.dtype == dw.dtype == jnp.complex64, method
        for got, want in ((y, ref), (dx, ref_dx), (dw, ref_dw)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(),
                                       err_msg=method)


# ----------------------------------------------------------------------------
# NaN and Inf.


def coverage(cfg, xc_bad, wc):
    """Outputs (y's layout) whose window covers a bad input: the reference scatter of the bad
    elements' indicator with an all-ones kernel, so no cancellation can hide one."""
    indicator = (~np.isfinite(xc_bad)).astype(np.float64)
    hit = conv_transpose_reference(indicator, np.ones_like(wc, np.float64), **cfg.ref_kwargs())
    return cfg.to_spec(hit > 0, "NC" + cfg.letters, cfg.specs[0])


@settings(max_examples=examples(0.3))
@given(cfg=configs(dtypes=("float32",)))
def test_nan_and_inf_reach_exactly_the_covered_outputs(cfg):
    """A NaN or Inf input element makes non-finite exactly the outputs whose window covers
    it (the convolution methods), or every output of its example ("matmul", as its
    docstring says: each output sums all inputs, and 0 * NaN is NaN)."""
    note(repr(cfg))
    assume(cfg.batch > 0)    # an input element to poison
    _, _, xc, wc = cfg.arrays()
    rng = np.random.default_rng(cfg.seed + 3)
    xc = xc.copy()
    at = tuple(int(rng.integers(0, n)) for n in xc.shape)
    xc[at] = [np.nan, np.inf, -np.inf][cfg.seed % 3]
    x, w = cfg.to_spec(xc, "NC" + cfg.letters, cfg.specs[2]), cfg.to_spec(wc, "OI" + cfg.letters,
                                                                          cfg.specs[1])
    covered = coverage(cfg, xc, wc)   # may be empty: padding can crop the element's window
    example = np.zeros(cfg.y_shape, bool)
    n_axis = cfg.specs[0].index("N")
    example[(slice(None),) * n_axis + (at[0],)] = True
    for method in METHODS:
        bad = ~np.isfinite(np.asarray(cfg.fn(method)(x, w)))
        expected = example if method == "matmul" else covered
        np.testing.assert_array_equal(bad, expected, err_msg=method)


@pytest.mark.parametrize("name", list(LAYERS))
def test_nan_pattern_equals_lax_conv_transpose(name):
    x, w, kwargs, lax_kwargs, _ = layer(name, jnp.float32)
    x = np.array(x)
    x[(1, 2, *(n // 3 for n in x.shape[2:]))] = np.nan
    x[(0, 0, *(n - 1 for n in x.shape[2:]))] = np.inf
    expected = ~np.isfinite(np.asarray(jax.lax.conv_transpose(x, w, **lax_kwargs)))
    assert 0 < expected.sum() < expected.size / 4
    for method in ("vjp", "dilated", "phase", "auto"):
        bad = ~np.isfinite(np.asarray(jax_tconv.conv_transpose(x, w, method=method, **kwargs)))
        np.testing.assert_array_equal(bad, expected, err_msg=method)
    bad = ~np.isfinite(np.asarray(jax_tconv.conv_transpose(x, w, method="matmul", **kwargs)))
    assert bad.all()   # both examples hold a bad input: every output of each is poisoned


# ----------------------------------------------------------------------------
# Determinism and large layers.


@pytest.mark.parametrize("method", METHODS)
def test_repeated_runs_are_bitwise_identical(method):
    x, w, kwargs, _, _ = layer("2d_k4_s2_p1", jnp.float32, batch=8)
    f = lambda x, w: jax_tconv.conv_transpose(x, w, method=method, **kwargs)  # noqa: E731
    g = np.random.default_rng(3).standard_normal(jax.eval_shape(f, x, w).shape)
    g = jnp.asarray(g, jnp.float32)

    def step(x, w):
        y, pullback = jax.vjp(f, x, w)
        return (y, *pullback(g))

    first = [np.asarray(a) for a in jax.jit(step)(x, w)]
    for run in (jax.jit(step), jax.jit(step), step):   # cached, re-traced, and eager
        for _ in range(2):
            for a, b in zip(first, run(x, w)):
                np.testing.assert_array_equal(a, np.asarray(b), err_msg=method)


# A 2-D layer with a batch of 64 at 64x64 with 128 channels in and out.
BIG_X = jax.ShapeDtypeStruct((64, 64, 64, 128), jnp.float32)          # NHWC


@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (2, 2, 0), (3, 1, 1)])
def test_matmul_refuses_the_large_layer_before_allocating(k, s, p):
    """Raised while tracing abstract shapes (jax.eval_shape): nothing is allocated."""
    w = jax.ShapeDtypeStruct((k, k, 128, 128), jnp.float32)
    with pytest.raises(ValueError, match=r"conv_transpose: the dense convolution matrix would be "
                                         r"\d+ x \d+ = [\d,]+ bytes, over MATMUL_MAX_BYTES"):
        jax.eval_shape(lambda x, w: jax_tconv.conv_transpose(
            x, w, strides=s, padding=p, method="matmul"), BIG_X, w)


#: Peak temporary memory (XLA's memory_analysis) allowed, as a multiple of y's bytes.
#: Measured (XLA:CPU, jax 0.10.2) for k4 s2 p1: vjp, dilated, auto ~1 MiB; phase 2x y
#: (its per-phase outputs, then the interleave); for k2 s2: phase 1x y.
MAX_TEMP_PER_OUTPUT = 2.5


@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (2, 2, 0)])
def test_large_layer_temporary_memory(k, s, p):
    """Compile every method at batch 64, 64x64x128 -> 128x128x128: no method needs the
    zero-dilated input times its kernel in temporaries (or a dense matrix)."""
    w = jax.ShapeDtypeStruct((k, k, 128, 128), jnp.float32)
    y_bytes = 64 * 128 * 128 * 128 * 4
    for method in ("vjp", "dilated", "phase", "auto", "products"):
        f = jax.jit(lambda x, w, m=method: jax_tconv.conv_transpose(
            x, w, strides=s, padding=p, method=m))
        stats = f.lower(BIG_X, w).compile().memory_analysis()
        assert stats.output_size_in_bytes == y_bytes, method
        # "products" holds P, prod(k) / prod(s) outputs' worth (its documented excess); "auto"
        # runs it only below MAX_TEMP_BYTES, far below this layer's P.
        bound = k * k / (s * s) + 0.5 if method == "products" else MAX_TEMP_PER_OUTPUT
        assert stats.temp_size_in_bytes <= bound * y_bytes, (method, stats.temp_size_in_bytes)


def test_large_layer_runs_and_methods_agree():
    """Forward pass of U-Net's k2 s2 up-sampling at batch 64, 64x64x128, every method
    except "matmul" (~1.5 s each on 2 CPU cores); spot-checked against the reference."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(BIG_X.shape), jnp.float32)
    w = jnp.asarray(rng.standard_normal((2, 2, 128, 128)) / np.sqrt(512), jnp.float32)
    ref = None
    for method in ("vjp", "dilated", "phase", "auto"):
        y = jax_tconv.conv_transpose(x, w, strides=2, method=method)
        assert y.shape == (64, 128, 128, 128)
        corner = np.asarray(y[:2, :6, :6, :])
        if ref is None:
            xc = np.moveaxis(np.asarray(x[:2, :3, :3, :]), -1, 1)
            wc = np.transpose(np.asarray(w), (3, 2, 0, 1))
            ref = np.moveaxis(conv_transpose_reference(
                xc, wc, strides=(2, 2), padding=[(0, 0)] * 2, output_padding=(0, 0),
                dilation=(1, 1)), 1, -1)
        np.testing.assert_allclose(corner, ref, rtol=2e-5, atol=2e-5, err_msg=method)
        assert np.isfinite(np.asarray(y)).all()
        del y
