"""The phase formulation: both of its forms, and no multiply by an inserted zero."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CASES
from test_forward import assert_close

import jax_tconv
from jax_tconv import _phase, _products
from jax_tconv._layout import transposed_kernel
from jax_tconv._spec import transpose_spec


def spec_of(case, x, w):
    return transpose_spec("test", jnp.asarray(x), jnp.asarray(w), precision=None,
                          preferred_element_type=None, **case.kwargs())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("form", ["products", "fused", "separate"])
def test_every_form_matches_reference(case, form):
    x, w = case.arrays()
    spec = spec_of(case, x, w)
    plan = _phase.plan(spec)
    if form == "fused" and any(dp.dilation != 1 for dp in plan.dims):
        pytest.skip("fused needs d / gcd(s, d) == 1")
    if form == "products":
        y = jax.jit(lambda x, w: _products.products(x, w, spec))(x, w)
    else:
        kernel, rhs_spec = transposed_kernel(jnp.asarray(w), spec, flip=False)
        run = _phase._fused if form == "fused" else _phase._separate
        y = jax.jit(lambda x, k: run(x, k, rhs_spec, spec, plan))(x, kernel)
    assert_close(y, case.reference(x, w))


DILATION = re.compile(r"lhs_dilate = \[([\d, ]+)\]")
INTERIOR = re.compile(r"interior = \[([\d, ]+)\]")


def inserted_zeros(lowered_text):
    """lhs dilations > 1 of every convolution, and interior paddings > 0 of every pad."""
    found = []
    for pattern in (DILATION, INTERIOR):
        for match in pattern.findall(lowered_text):
            values = [int(v) for v in match.split(",")]
            if any(v > (1 if pattern is DILATION else 0) for v in values):
                found.append(match)
    return found


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_phase_program_never_inserts_zeros(case):
    x, w = case.arrays()

    def f(x, w):
        return jax_tconv.conv_transpose(x, w, method="phase", **case.kwargs())

    def loss(x, w):
        return jnp.sum(f(x, w) ** 2)

    programs = {
        "forward": jax.jit(f).lower(x, w).as_text(),
        "grad": jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w).as_text(),
    }
    for name, text in programs.items():
        assert "stablehlo.convolution" in text
        assert inserted_zeros(text) == [], (name, inserted_zeros(text))


def test_the_check_can_fail():
    """The dilated form inserts zeros by padding, the vjp form by input dilation: both seen."""
    case = CASES[10]
    x, w = case.arrays()
    for method in ("dilated", "vjp"):
        text = jax.jit(lambda x, w, m=method: jax_tconv.conv_transpose(
            x, w, method=m, **case.kwargs())).lower(x, w).as_text()
        assert inserted_zeros(text), method


def test_plan_of_k4_s2_p1_is_even_and_fused():
    """DCGAN's layer: 2 taps per phase and dimension, offsets aligned, nothing zero-filled."""
    case = CASES[10]
    x, w = case.arrays()
    plan = _phase.plan(spec_of(case, x, w))
    assert plan.form == "fused"
    for dp in plan.dims:
        assert [len(t) for t in dp.taps] == [2, 2]
        assert _phase._fused_waste(plan.dims) == 0


@pytest.mark.parametrize("form", ["products", "fused", "separate"])
def test_every_form_runs_through_the_public_method(form, monkeypatch):
    """Force each form through conv_transpose(method="phase"): values and both gradients."""
    case = CASES[10]
    x, w = case.arrays()
    real_plan = _phase.plan.__wrapped__
    monkeypatch.setattr(_phase, "plan", lambda spec: dataclasses.replace(real_plan(spec),
                                                                         form=form))
    jax.clear_caches()
    y = jax_tconv.conv_transpose(x, w, method="phase", **case.kwargs())
    assert_close(y, case.reference(x, w))
    g = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
    dx, dw = jax.grad(lambda x, w: jnp.sum(g * jax_tconv.conv_transpose(
        x, w, method="phase", **case.kwargs())), argnums=(0, 1))(x, w)
    ref_dx, ref_dw = case.reference_vjp(x, w, g)
    assert_close(dx, ref_dx)
    assert_close(dw, ref_dw)
    text = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(jax_tconv.conv_transpose(
        x, w, method="phase", **case.kwargs())), argnums=(0, 1))).lower(x, w).as_text()
    assert inserted_zeros(text) == []
    jax.clear_caches()


def test_plan_picks_products_for_small_wide_inputs():
    x = jnp.ones((2, 4, 4, 256))
    w = jnp.ones((4, 4, 128, 256))
    spec = transpose_spec("t", x, w, strides=2, padding=1, output_padding=0, output_shape=None,
                          dilation=1, groups=1, dimension_numbers=None, precision=None,
                          preferred_element_type=None)
    assert _phase.plan(spec).form == "products"


def test_phase_without_any_tap_is_zero():
    """k2 s3: one phase in three receives no tap and must be exactly zero."""
    x = np.random.default_rng(0).standard_normal((1, 4, 1)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((2, 1, 1)).astype(np.float32)
    y = np.asarray(jax_tconv.conv_transpose(x, w, strides=3, method="phase"))
    assert y.shape == (1, 11, 1)
    np.testing.assert_array_equal(y[0, 2::3, 0], 0.0)
    assert np.all(y[0, 0::3, 0] != 0) and np.all(y[0, 1::3, 0] != 0)


@pytest.mark.parametrize("k,expect", [((4, 4, 4), "products"), ((5, 5, 3), "one conv")])
def test_kernel_gradient_writes_out_at_most_64_tap_products(k, expect):
    """3-D kernel gradients are per-tap products up to `MAX_TAP_PRODUCTS` taps and the
    forward conv's kernel VJP beyond (a program that does not grow with the taps); both
    equal the NumPy reference."""
    from jax_tconv.reference import conv_transpose_reference_vjp

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 3, 2, 3)).astype(np.float32)     # NDHWC
    w = rng.standard_normal((*k, 2, 3)).astype(np.float32)          # DHWIO: C_out 2, C_in 3
    kw = dict(strides=2, padding=1)

    def loss(x, w, g):
        return jnp.vdot(jax_tconv.conv_transpose(x, w, method="phase", **kw), g)

    y = jax_tconv.conv_transpose(x, w, method="phase", **kw)
    g = rng.standard_normal(y.shape).astype(np.float32)
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    dx, dw = grad(x, w, g)
    # The reference takes PyTorch's layout: x (N, C_in, *i), w (C_in, C_out, *k).
    rdx, rdw = conv_transpose_reference_vjp(
        np.moveaxis(x, -1, 1), np.transpose(w, (4, 3, 0, 1, 2)), np.moveaxis(g, -1, 1),
        strides=(2,) * 3, padding=((1, 1),) * 3, output_padding=(0,) * 3, dilation=(1,) * 3)
    assert_close(dx, np.moveaxis(rdx, 1, -1))
    assert_close(dw, np.transpose(rdw, (2, 3, 4, 1, 0)))
    products = grad.lower(x, w, g).as_text().count("dot_general")
    assert (products >= np.prod(k)) if expect == "products" else (products < 8), products
