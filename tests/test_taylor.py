"""Taylor mode (`jax_tconv.jet`): every method, order 3 in x and w jointly, and of the gradient.

The reference is the NumPy scatter loop and Leibniz's rule: along x(t) = Σ x_k t^k/k! and
w(t) = Σ w_k t^k/k!, the k-th derivative of the bilinear T(x(t), w(t)) at 0 is
Σ_j C(k, j) T(x_j, w_(k-j)); of a trilinear map, the multinomial sum.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CASES, METHODS
from jax.experimental import jet as jax_jet
from test_forward import assert_close

import jax_tconv
from jax_tconv import _jet

ORDER = 3
BY_NAME = {c.name: c for c in CASES}
# A covering set: the methods in turn on a 1-D grouped channels-first case, a 2-D dilated case
# with output_padding and a 3-D case (each method meets all three in test_transform_grid.py
# at order 2); "tune" and the padding modes below.
JET_CASES = ["1d-groups2-first", "2d-dilation-op", "3d-k2-s2"]


def series(case, seed):
    """x_0..x_ORDER and w_0..w_ORDER, float32."""
    xs, ws = zip(*(case.arrays(seed=seed + k) for k in range(ORDER + 1)))
    return [np.asarray(a, np.float32) for a in xs], [np.asarray(a, np.float32) for a in ws]


def leibniz(k, arity, term):
    """Σ over a + b + ... = k (`arity` indices) of k!/(a! b! ...) times term(a, b, ...)."""
    total = 0
    for split in itertools.product(range(k + 1), repeat=arity):
        if sum(split) != k:
            continue
        coefficient = math.factorial(k) // math.prod(math.factorial(a) for a in split)
        total = total + coefficient * term(*split)
    return total


@pytest.mark.parametrize("method,name", [(m, JET_CASES[j % len(JET_CASES)]) for j, m in
                                         enumerate(METHODS)] + [("auto", "3d-k2-s2")])
def test_jet_of_order_3_in_x_and_w(method, name):
    case = BY_NAME[name]
    xs, ws = series(case, seed=10)
    # Under jit, as a model would run it ("auto" reaches jet as a cond on the platform).
    f = jax.jit(lambda x, w: jax_tconv.conv_transpose(x, w, method=method, **case.kwargs()))
    y, terms = jax_tconv.jet(f, (xs[0], ws[0]), (xs[1:], ws[1:]))
    assert_close(y, case.reference(xs[0], ws[0]))
    for k in range(1, ORDER + 1):
        expected = leibniz(k, 2, lambda a, b: case.reference(xs[a], ws[b]))
        assert_close(terms[k - 1], expected, tol=1e-4)


def test_jet_through_tune_and_a_padding_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_TCONV_TUNE_CACHE", str(tmp_path / "tune.json"))
    case = BY_NAME["2d-k4-s2-p1-dcgan"]
    xs, ws = series(case, seed=20)
    for method, mode in (("tune", "zeros"), ("auto", "circular"), ("matmul", "reflect")):
        kwargs = dict(case.kwargs(), padding_mode=mode)
        f = lambda x, w: jax_tconv.conv_transpose(x, w, method=method, **kwargs)  # noqa: E731
        ref = lambda x, w: jax_tconv.conv_transpose(x, w, method="vjp", **kwargs)  # noqa: E731
        _, terms = jax_tconv.jet(f, (xs[0], ws[0]), (xs[1:], ws[1:]))
        for k in range(1, ORDER + 1):
            expected = leibniz(k, 2, lambda a, b: ref(xs[a], ws[b]))
            assert_close(terms[k - 1], expected, tol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_jet_of_the_kernel_gradient(method):
    """∂/∂w of ½‖T(x, w)‖² is K(x, T(x, w)) with K the kernel VJP: trilinear in the series."""
    case = BY_NAME["2d-k3-s2-p1-op1-fcn"]
    xs, ws = series(case, seed=30)

    def grad_w(x, w):
        loss = lambda w: 0.5 * jnp.sum(jax_tconv.conv_transpose(  # noqa: E731
            x, w, method=method, **case.kwargs()) ** 2)
        return jax.grad(loss)(w)

    _, terms = jax_tconv.jet(grad_w, (xs[0], ws[0]), (xs[1:], ws[1:]))
    kernel_vjp = lambda x, g: case.reference_vjp(x, ws[0], g)[1]  # noqa: E731
    for k in range(1, ORDER + 1):
        expected = leibniz(k, 3, lambda a, b, c: kernel_vjp(
            xs[a], case.reference(xs[b], ws[c])))
        assert_close(terms[k - 1], expected, tol=1e-3)


def test_plain_jax_jet_is_what_the_workaround_is_for():
    """The upstream bug, shown on JAX alone (jax.nn.relu is a custom_jvp function);
    if a JAX release fixes it, `jet` stops patching and this test says so."""
    x = jnp.linspace(-1.0, 1.0, 4)   # no 0, where jet splits relu's tie
    expected = (jnp.where(x > 0, x, 0.0), [jnp.where(x > 0, 1.0, 0.0)])
    got = jax_tconv.jet(jax.nn.relu, (x,), ((jnp.ones(4),),))
    assert_close(got[0], expected[0])
    assert_close(got[1][0], expected[1][0])
    try:
        jax_jet.jet(jax.nn.relu, (x,), ((jnp.ones(4),),))
        plain_works = True
    except Exception:
        plain_works = False
    assert plain_works != _jet._upstream_bug(), (
        "jax_tconv.jet's probe disagrees with JAX's jet on jax.nn.relu")


def test_the_cond_rule_on_a_nonlinear_function():
    """`lax.platform_dependent` under jit is a cond: its Taylor series is its branch's, at
    every order, through a gradient too (sin(x)·x against the function without the cond)."""
    def staged(x):
        return jax.lax.platform_dependent(x, cpu=lambda x: jnp.sin(x) * x,
                                          default=lambda x: jnp.sin(x) * x + 0.0)

    def plain(x):
        return jnp.sin(x) * x

    x, terms = jnp.float32(0.7), [jnp.float32(1.0), jnp.float32(0.5), jnp.float32(-0.3)]
    for f, g in ((jax.jit(staged), plain), (jax.jit(jax.grad(staged)), jax.grad(plain))):
        got, expected = jax_tconv.jet(f, (x,), (terms,))[1], jax_tconv.jet(g, (x,), (terms,))[1]
        assert_close(jnp.stack(got), jnp.stack(expected), tol=1e-5)
