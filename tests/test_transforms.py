"""Gradients, adjointness, jit, vmap and dtypes, for every method."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CASES, METHODS, SMALL_CASES
from jax.test_util import check_grads
from test_forward import assert_close

import jax_tconv


def loss_and_cotangent(case, x, w, method):
    y_shape = jax_tconv.conv_transpose(x, w, method=method, **case.kwargs()).shape
    g = np.random.default_rng(7).standard_normal(y_shape).astype(np.float32)

    def loss(x, w):
        return jnp.sum(g * jax_tconv.conv_transpose(x, w, method=method, **case.kwargs()))

    return loss, g


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("method", METHODS)
def test_gradients_match_reference(case, method):
    x, w = case.arrays()
    loss, g = loss_and_cotangent(case, x, w, method)
    dx, dw = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
    ref_dx, ref_dw = case.reference_vjp(x, w, g)
    assert_close(dx, ref_dx)
    assert_close(dw, ref_dw)


# Numerical second-order checks are the suite's slowest tests: a covering set, each method on
# three of the small cases in turn (so every case meets two methods or more); every method's
# analytic Hessian is also in test_transform_grid.py and test_hessian_of_quartic_loss below.
COVER = [(c, m) for j, m in enumerate(METHODS)
         for c in (SMALL_CASES[j % 7], SMALL_CASES[(j + 2) % 7], SMALL_CASES[(j + 4) % 7])]


@pytest.mark.parametrize("case,method", COVER, ids=lambda v: getattr(v, "name", v))
def test_check_grads_second_order(case, method):
    x, w = case.arrays()
    f = functools.partial(jax_tconv.conv_transpose, method=method, **case.kwargs())
    check_grads(f, (x, w), order=2, modes=("fwd", "rev"), atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("method", METHODS)
def test_hessian_of_quartic_loss(method):
    """A loss quartic in (x, w): its Hessian-vector product must match the reference's."""
    case = SMALL_CASES[1]
    x, w = case.arrays()

    def loss(x, w):
        return jnp.sum(jax_tconv.conv_transpose(x, w, method=method, **case.kwargs()) ** 2)

    v = np.random.default_rng(3).standard_normal(w.shape).astype(np.float32)
    # grad_w = 2 Tᵀ_w T(x, w) is linear in w, so its JVP along v is H_ww v = 2 Tᵀ_w T(x, v).
    _, hv = jax.jit(jax.jvp, static_argnums=0)(
        lambda w: jax.grad(loss, argnums=1)(x, w), (w,), (v,))
    t_v = case.reference(x, v)
    _, expected = case.reference_vjp(x, w, 2 * t_v)
    assert_close(hv, expected, tol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("method", METHODS)
def test_adjoint_identity(case, method):
    """<conv(y), x> == <y, conv_transpose(x)> for random x, y."""
    x, w = case.arrays()
    out = jax_tconv.conv_transpose(x, w, method=method, **case.kwargs())
    y = np.random.default_rng(5).standard_normal(out.shape)
    pads = forward_padding(case)
    cy = jax_tconv.conv(jnp.asarray(y, jnp.float32), w, strides=case.strides, padding=pads,
                        dilation=case.dilation, groups=case.groups,
                        dimension_numbers=case.dimension_numbers)
    lhs = np.vdot(np.asarray(cy, np.float64), x.astype(np.float64))
    rhs = np.vdot(y, np.asarray(out, np.float64))
    assert abs(lhs - rhs) <= 1e-5 * (np.abs(y).sum() * np.abs(np.asarray(out)).max() + 1)


def forward_padding(case):
    """The conv whose output has exactly x's shape: hi shrinks by s*floor(op/s) (only when op >= s)."""
    pads, ops = case.reference_geometry()
    s = case._per_dim(case.strides)
    return tuple((lo, hi - sj * (op // sj)) for (lo, hi), sj, op in zip(pads, s, ops))


@pytest.mark.parametrize("case", CASES[::2], ids=lambda c: c.name)
def test_linear_transpose_of_conv(case):
    x, w = case.arrays()
    out = jax_tconv.conv_transpose(x, w, **case.kwargs())
    conv = functools.partial(jax_tconv.conv, w=w, strides=case.strides,
                             padding=forward_padding(case), dilation=case.dilation,
                             groups=case.groups, dimension_numbers=case.dimension_numbers)
    (transposed,) = jax.linear_transpose(conv, jax.ShapeDtypeStruct(out.shape, out.dtype))(x)
    for method in METHODS:
        assert_close(jax_tconv.conv_transpose(x, w, method=method, **case.kwargs()), transposed)


@pytest.mark.parametrize("case,method", COVER, ids=lambda v: getattr(v, "name", v))
def test_jit_equals_eager(case, method, transform):
    x, w = case.arrays()
    f = functools.partial(jax_tconv.conv_transpose, method=method, **case.kwargs())
    eager = f(x, w)
    np.testing.assert_allclose(transform(f)(x, w), eager, rtol=1e-6, atol=1e-6)
    g = jax.grad(lambda x, w: jnp.sum(f(x, w) ** 2), argnums=(0, 1))
    for a, b in zip(transform(g)(x, w), g(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", SMALL_CASES[:4], ids=lambda c: c.name)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("axes", [(0, None), (None, 0), (0, 0)], ids=["x", "w", "both"])
def test_vmap_equals_loop(case, method, axes):
    """vmap over a stack of inputs, of kernels (per-example kernels), or both."""
    xs, ws = zip(*(case.arrays(seed) for seed in range(3)))
    xs, ws = np.stack(xs), np.stack(ws)
    f = functools.partial(jax_tconv.conv_transpose, method=method, **case.kwargs())
    batched = jax.vmap(f, in_axes=axes)(xs if axes[0] == 0 else xs[0],
                                        ws if axes[1] == 0 else ws[0])
    loop = [f(xs[b] if axes[0] == 0 else xs[0], ws[b] if axes[1] == 0 else ws[0])
            for b in range(3)]
    np.testing.assert_allclose(batched, np.stack(loop), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_vmap_of_grad_per_example(method):
    case = SMALL_CASES[1]
    x, w = case.arrays()
    f = functools.partial(jax_tconv.conv_transpose, method=method, **case.kwargs())
    per_example = jax.vmap(jax.grad(lambda xi, w: jnp.sum(f(xi[None], w) ** 2), argnums=1),
                           in_axes=(0, None))(x, w)
    loop = [jax.grad(lambda w: jnp.sum(f(x[b:b + 1], w) ** 2))(w) for b in range(x.shape[0])]
    np.testing.assert_allclose(per_example, np.stack(loop), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype,tol", [(jnp.bfloat16, 3e-2), (jnp.float16, 4e-3)])
def test_low_precision(method, dtype, tol):
    case = SMALL_CASES[1]
    x, w = case.arrays()
    x, w = jnp.asarray(x, dtype), jnp.asarray(w, dtype)
    ref = case.reference(np.asarray(x, np.float64), np.asarray(w, np.float64))
    y = jax_tconv.conv_transpose(x, w, method=method, **case.kwargs())
    assert y.dtype == dtype
    assert_close(np.asarray(y, np.float64), ref, tol=tol)
    y32 = jax_tconv.conv_transpose(x, w, method=method, preferred_element_type=jnp.float32,
                                   **case.kwargs())
    assert y32.dtype == jnp.float32
    assert_close(y32, ref, tol=1e-5)  # exact products, float32 accumulation


@pytest.mark.parametrize("method", METHODS)
def test_float64_under_x64(method):
    case = SMALL_CASES[2]
    with jax.enable_x64(True):
        x, w = case.arrays(dtype=np.float64)
        y = jax_tconv.conv_transpose(x, w, method=method, **case.kwargs())
        assert y.dtype == jnp.float64
        np.testing.assert_allclose(y, case.reference(x, w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_complex64(method):
    case = SMALL_CASES[1]
    x, w = case.arrays(0)
    xi, wi = case.arrays(1)
    x, w = (x + 1j * xi).astype(np.complex64), (w + 1j * wi).astype(np.complex64)
    y = jax_tconv.conv_transpose(x, w, method=method, **case.kwargs())
    assert y.dtype == jnp.complex64
    assert_close(y, case.reference(x, w), tol=1e-5)
