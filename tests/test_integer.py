"""Integer operands: every method's int32 sums equal the NumPy scatter's int64 ones, bit for bit.

A covering set of configurations (1-3-D, groups, dilation, asymmetric
padding, output padding and output_shape, PyTorch's NCHW, padding modes, the
shape XLA's operand swap aborts on), each with one integer dtype, crossed with
every method: no tolerance, since integer sums are exact. One configuration
uses int16 values whose sums pass 2**24, where a float32 accumulator would
round, so a method that secretly accumulated in float32 would fail. float8
operands with a float32 accumulator are checked against float64 too.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CASES, METHODS, Case

import jax_tconv
from jax_tconv import _tune

BY_NAME = {c.name: c for c in CASES}

# (case, operand dtype, value range): each configuration once, with one dtype.
CONFIGS = [
    (BY_NAME["1d-k3-s2-p1-op1"], np.int8, (-128, 128)),
    (BY_NAME["1d-groups2-first"], np.uint8, (0, 256)),
    (BY_NAME["2d-k4-s2-p1-dcgan"], np.int8, (-128, 128)),
    (BY_NAME["2d-asym-strides-pairs"], np.int16, (-12000, 12001)),   # sums beyond 2**24
    (BY_NAME["2d-dilation-op"], np.int8, (-128, 128)),
    (BY_NAME["2d-pytorch-layout"], np.int32, (-1000, 1001)),
    (BY_NAME["2d-same-s2-oddshape"], np.int8, (-128, 128)),
    (BY_NAME["2d-xla-crash-config"], np.int8, (-128, 128)),
    (BY_NAME["3d-k3-s2-p1-op1-groups2"], np.int8, (-128, 128)),
    (Case("1d-reflect-s2", (5,), (3,), strides=2, padding=2, output_padding=1,
          padding_mode="reflect"), np.int8, (-128, 128)),
    (Case("2d-circular-groups2-first", (3, 3), (3, 3), cin=4, cout=2, groups=2, strides=2,
          padding=(1, 2), layout="first", padding_mode="circular"), np.int8, (-128, 128)),
    (Case("2d-replicate", (3, 2), (4, 3), strides=(2, 1), padding=((2, 1), (0, 3)),
          padding_mode="replicate"), np.int8, (-128, 128)),
]
IDS = [c.name for c, _, _ in CONFIGS]


def int_arrays(case: Case, dtype, low_high, seed=0):
    """Integer x and w of `case`'s shapes and layout (canonically (C_in, C_out/g, *k))."""
    rng = np.random.default_rng(seed)
    x = rng.integers(*low_high, (case.batch, case.cin, *case.i))
    w = rng.integers(*low_high, (case.cin, case.cout // case.groups, *case.k))
    if case.layout == "last":
        x = np.moveaxis(x, 1, -1)
        w = np.transpose(w, (*range(2, 2 + case.nd), 1, 0))
    return x.astype(dtype), w.astype(dtype)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("config", range(len(CONFIGS)), ids=IDS)
def test_every_method_is_exact_on_integers(config, method):
    case, dtype, low_high = CONFIGS[config]
    x, w = int_arrays(case, dtype, low_high, seed=config)
    y = jax_tconv.conv_transpose(x, w, method=method, **case.kwargs())
    assert y.dtype == jnp.int32, y.dtype       # the int32 default (int32 operands: their own)
    reference = case.reference(x, w)           # int64 scatter
    assert reference.dtype == np.int64
    np.testing.assert_array_equal(np.asarray(y), reference)


def test_a_float32_accumulator_would_round_here():
    """The int16 configuration is one where float32 sums are not exact, so the test above
    tells an int32 accumulator from a float32 one."""
    case, dtype, low_high = CONFIGS[IDS.index("2d-asym-strides-pairs")]
    x, w = int_arrays(case, dtype, low_high, seed=IDS.index("2d-asym-strides-pairs"))
    reference = case.reference(x, w)
    assert np.abs(reference).max() > 2**24
    as_float32 = np.asarray(jax_tconv.conv_transpose(x.astype(np.float32), w.astype(np.float32),
                                                     method="vjp", **case.kwargs()))
    assert not np.array_equal(as_float32.astype(np.int64), reference)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32])
def test_default_and_explicit_accumulator(dtype):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 100, (1, 3, 3, 2)).astype(dtype)
    w = rng.integers(0, 100, (3, 3, 4, 2)).astype(dtype)
    y = jax_tconv.conv_transpose(x, w, strides=2)
    assert y.dtype == jnp.int32
    y32 = jax_tconv.conv_transpose(x, w, strides=2, preferred_element_type=jnp.int32)
    np.testing.assert_array_equal(y, y32)
    forward = jax_tconv.conv(jnp.ones((1, 7, 7, 4), dtype), w)   # w read as C's (*k, I, O)
    assert forward.dtype == jnp.int32


@pytest.mark.parametrize("method", ["vjp", "phase", "auto"])
def test_jit_and_vmap(method):
    case, dtype, low_high = CONFIGS[IDS.index("2d-k4-s2-p1-dcgan")]
    x, w = int_arrays(case, dtype, low_high)
    f = jax.jit(lambda x, w: jax_tconv.conv_transpose(x, w, method=method, **case.kwargs()))
    reference = case.reference(x, w)
    np.testing.assert_array_equal(f(x, w), reference)
    per_example = jax.vmap(lambda xi: f(xi[None], w)[0])(x)
    np.testing.assert_array_equal(per_example, reference)


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_conv_is_the_exact_adjoint_on_integers(mode):
    """<conv(y), x> == <y, conv_transpose(x)> in exact integer arithmetic, for `conv` on
    integers (its own reference: the transposed convolution checked above)."""
    rng = np.random.default_rng(2)
    kw = dict(strides=2, padding=((1, 2), (2, 0)), groups=2, padding_mode=mode)
    w = rng.integers(-128, 128, (3, 4, 3, 4)).astype(np.int8)      # (*k, C_in/g, C_out)
    y = rng.integers(-128, 128, (2, 7, 6, 6)).astype(np.int8)      # conv's input
    cy = np.asarray(jax_tconv.conv(y, w, **kw))
    assert cy.dtype == np.int32
    x = rng.integers(-128, 128, cy.shape).astype(np.int8)
    tx = np.asarray(jax_tconv.conv_transpose(x, w, output_shape=y.shape[1:3], **kw))
    lhs = np.sum(cy.astype(np.int64) * x.astype(np.int64))
    rhs = np.sum(y.astype(np.int64) * tx.astype(np.int64))
    assert lhs == rhs and lhs != 0


def test_tune_on_integers_compares_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv(_tune.CACHE_ENV, str(tmp_path / "tune.json"))
    monkeypatch.setattr(_tune, "_MEMORY", {})
    case, dtype, low_high = CONFIGS[IDS.index("1d-k3-s2-p1-op1")]
    x, w = int_arrays(case, dtype, low_high)
    y = jax_tconv.conv_transpose(x, w, method="tune", **case.kwargs())
    np.testing.assert_array_equal(y, case.reference(x, w))
    choice = jax_tconv.tune_choice(x, w, **case.kwargs())
    assert not choice.measured and choice.method in choice.timings
    measured = [t for t in choice.timings.values() if t.fwd_bwd_ms is not None]
    assert len(measured) >= 4 and all(t.fwd_bwd_ms == t.fwd_bwd_ms for t in measured)
    # Integer results must be equal: one unit off is a disagreement.
    good = np.arange(12, dtype=np.int32)
    off = good.copy()
    off[3] += 1
    assert list(_tune.disagreements({"a": [good], "b": [good], "c": [off]})) == ["c"]


@pytest.mark.parametrize("method", ["vjp", "matmul", "products"])
def test_gradients_what_users_see(method):
    """JAX refuses jax.grad with respect to integers itself; through a cast to integers the
    gradient is zero (rounding is piecewise constant), as for any JAX integer op."""
    x = jnp.asarray(np.random.default_rng(3).integers(-8, 8, (1, 3, 3, 2)), jnp.int8)
    wf = jnp.asarray(np.random.default_rng(4).standard_normal((3, 3, 2, 2)), jnp.float32)

    def f(x, wf):
        y = jax_tconv.conv_transpose(x, jnp.round(4 * wf).astype(jnp.int8), strides=2,
                                     method=method)
        return jnp.sum(y.astype(jnp.float32) ** 2)

    with pytest.raises(TypeError, match="grad requires real- or complex-valued inputs"):
        jax.grad(f)(x, wf)
    np.testing.assert_array_equal(jax.grad(f, argnums=1)(x, wf), np.zeros(wf.shape))


FLOAT8_CONFIGS = [BY_NAME["1d-groups2-first"],
                  Case("2d-reflect-first", (3, 3), (3, 3), strides=2, padding=1,
                       layout="first", padding_mode="reflect")]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", FLOAT8_CONFIGS, ids=[c.name for c in FLOAT8_CONFIGS])
def test_float8_with_a_float32_accumulator(case, method):
    x, w = case.arrays(seed=5)
    x8, w8 = jnp.asarray(x, jnp.float8_e4m3fn), jnp.asarray(w, jnp.float8_e4m3fn)
    y = jax_tconv.conv_transpose(x8, w8, method=method, preferred_element_type=jnp.float32,
                                 **case.kwargs())
    assert y.dtype == jnp.float32
    # The reference on float8's own values in float64: each product of two float8 values is
    # exact in float32, so only float32's sums round.
    reference = case.reference(np.asarray(x8.astype(jnp.float32)),
                               np.asarray(w8.astype(jnp.float32)))
    np.testing.assert_allclose(np.asarray(y), reference, rtol=1e-6, atol=1e-5)


def test_conv_matrix_of_int8_with_a_padding_mode_does_not_wrap():
    """Circular padding on a 1-wide input: all three taps land in one entry (3 * 100)."""
    w = jnp.full((3, 1, 1), 100, jnp.int8)
    c = jax_tconv.conv_matrix(w, (1, 1, 1), padding=1, padding_mode="circular")
    assert c.dtype == jnp.int32 and int(c[0, 0]) == 300


def test_operator_norm_of_an_integer_kernel_names_the_fix():
    with pytest.raises(TypeError, match=r"operator_norm: w must be floating point.*astype"):
        jax_tconv.operator_norm(jnp.ones((3, 3, 1, 1), jnp.int8), (1, 4, 4, 1))
