"""Padding modes: every method against the NumPy reference's fold, the adjoint of the padded
convolution, second-order gradients, conv_matrix, the layers, Flax's CIRCULAR, and "tune".

`conv_transpose(x, w, padding=p, padding_mode=m)` is the adjoint of
`conv(y, w, padding=p, padding_mode=m)`, PyTorch's ``Conv*d(padding=p, padding_mode=m)``:
the convolution of ``F.pad(y, p, m)`` (tests/test_golden_modes.py checks both
against PyTorch). Each configuration runs every method in one jitted program,
so a configuration costs one compilation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import Case
from jax.test_util import check_grads
from test_forward import assert_close

import jax_tconv
from jax_tconv import _tune, interop

METHODS = jax_tconv.METHODS + ("auto",)
MODES = ("circular", "reflect", "replicate")
NUMPY = {"circular": "wrap", "reflect": "reflect", "replicate": "edge"}

# Each mode in 1-, 2- and 3-D; together: strides, dilation, groups (depthwise too),
# asymmetric pairs, 'SAME', output_shape, output_padding >= stride (the forward
# padding's hi shrinks, here below 0), padding beyond the size (replicate), PyTorch's layout.
MODE_CASES = [
    Case("circular-1d-k4-s2-p1", (4,), (4,), strides=2, padding=1, padding_mode="circular"),
    Case("circular-2d-groups2-asym-first", (3, 3), (3, 4), cin=4, cout=6, groups=2,
         strides=(2, 1), padding=((2, 1), (0, 3)), layout="first", padding_mode="circular"),
    Case("circular-3d-s2-op", (2, 2, 2), (3, 3, 3), strides=2, padding=1,
         output_padding=(1, 0, 1), padding_mode="circular"),
    Case("reflect-1d-d3-op2", (3,), (2,), dilation=3, padding=1, output_padding=2,
         padding_mode="reflect"),
    Case("reflect-2d-same-s2", (3, 3), (3, 3), strides=2, padding="SAME", padding_mode="reflect"),
    Case("reflect-3d-dilation-output-shape", (2, 3, 2), (2, 3, 3), strides=(2, 1, 2),
         dilation=(1, 2, 1), padding=(1, 2, (1, 0)), output_shape=(3, 3, 5),
         padding_mode="reflect"),
    Case("replicate-1d-pad-beyond-size", (3,), (7,), padding=4, padding_mode="replicate"),
    Case("replicate-2d-depthwise-first", (3, 2), (3, 3), cin=2, cout=4, groups=2,
         strides=(1, 2), padding=((1, 0), (2, 1)), layout="first", padding_mode="replicate"),
    Case("replicate-3d-dilation", (2, 2, 2), (2, 2, 2), dilation=(2, 1, 2),
         padding=((1, 0), 1, (0, 2)), padding_mode="replicate"),
]


def test_the_grid_covers_every_mode_and_rank():
    assert {(c.padding_mode, c.nd) for c in MODE_CASES} == {(m, n) for m in MODES
                                                            for n in (1, 2, 3)}


@pytest.mark.parametrize("case", MODE_CASES, ids=lambda c: c.name)
def test_every_method_matches_the_reference(case):
    """Values and both gradients of every method against the NumPy scatter and its fold."""
    x, w = case.arrays()
    expected = case.reference(x, w)
    g = np.random.default_rng(7).standard_normal(expected.shape).astype(np.float32)

    def run(x, w, g):
        out = {}
        for method in METHODS:
            f = functools.partial(jax_tconv.conv_transpose, method=method, **case.kwargs())
            y, pullback = jax.vjp(f, x, w)
            out[method] = (y, *pullback(g))
        return out

    ref_dx, ref_dw = case.reference_vjp(x, w, g)
    for method, (y, dx, dw) in jax.jit(run)(x, w, g).items():
        assert y.shape == expected.shape, method
        assert_close(y, expected)
        assert_close(dx, ref_dx)
        assert_close(dw, ref_dw)


def forward_padding(case):
    pads, ops = case.reference_geometry()
    s = case._per_dim(case.strides)
    return tuple((lo, hi - sj * (op // sj)) for (lo, hi), sj, op in zip(pads, s, ops))


@pytest.mark.parametrize("case", MODE_CASES[1::3], ids=lambda c: c.name)
def test_adjoint_of_the_padded_conv(case):
    """<conv(y, mode), x> == <y, conv_transpose(x, mode)>, and jax.linear_transpose(conv)."""
    x, w = case.arrays()
    shape = jax_tconv.conv_transpose(x, w, **case.kwargs()).shape
    y = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    conv = functools.partial(jax_tconv.conv, w=w, strides=case.strides,
                             padding=forward_padding(case), padding_mode=case.padding_mode,
                             dilation=case.dilation, groups=case.groups,
                             dimension_numbers=case.dimension_numbers)

    def run(x, y):
        outs = [jax_tconv.conv_transpose(x, w, method=m, **case.kwargs()) for m in METHODS]
        (transposed,) = jax.linear_transpose(conv, jax.ShapeDtypeStruct(shape, x.dtype))(x)
        return conv(y), outs, transposed

    cy, outs, transposed = jax.jit(run)(x, y)
    assert cy.shape == x.shape
    lhs = np.vdot(np.asarray(cy, np.float64), x.astype(np.float64))
    for method, out in zip(METHODS, outs):
        rhs = np.vdot(y.astype(np.float64), np.asarray(out, np.float64))
        assert abs(lhs - rhs) <= 1e-5 * (np.abs(y).sum() * np.abs(np.asarray(out)).max() + 1), (
            method, lhs, rhs)
        assert_close(out, transposed)


@pytest.mark.parametrize("method,case", [("vjp", MODE_CASES[0]), ("phase", MODE_CASES[3]),
                                         ("auto", MODE_CASES[7])], ids=lambda v: getattr(
                                             v, "name", v))
def test_check_grads_second_order(method, case):
    x, w = case.arrays()
    f = functools.partial(jax_tconv.conv_transpose, method=method, **case.kwargs())
    check_grads(f, (x, w), order=2, modes=("fwd", "rev"), atol=5e-2, rtol=5e-2)


def test_conv_is_the_convolution_of_the_numpy_padded_input():
    """conv(y, padding=p, padding_mode=m) == conv(np.pad(y, p, m), padding=0), conv_matrix too."""
    rng = np.random.default_rng(0)
    y = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    pads = ((2, 1), (1, 3))
    for mode in MODES:
        padded = np.pad(y, ((0, 0), *pads, (0, 0)), mode=NUMPY[mode])
        expected = jax_tconv.conv(padded, w, strides=(2, 1), padding=0)
        out = jax_tconv.conv(y, w, strides=(2, 1), padding=pads, padding_mode=mode)
        assert_close(out, expected)
        kw = dict(strides=(2, 1), padding=pads, padding_mode=mode)
        c = jax_tconv.conv_matrix(w, (1, *y.shape[1:]), **kw)
        assert_close(c @ y[0].reshape(-1), np.asarray(out[0]).reshape(-1))
        sparse = jax_tconv.conv_matrix(w, (1, *y.shape[1:]), sparse=True, **kw)
        np.testing.assert_allclose(sparse.todense(), c, rtol=1e-6, atol=1e-6)
        # A negative amount crops, as in lax, after the other side is filled from all of y.
        cropped = jax_tconv.conv(y, w, padding=((2, -1), (-2, 1)), padding_mode=mode)
        filled = np.pad(y, ((0, 0), (2, 0), (0, 1), (0, 0)), mode=NUMPY[mode])[:, :-1, 2:]
        assert_close(cropped, jax_tconv.conv(filled, w))
        # Cᵀ is the transposed convolution of every method (here "matmul" builds that C).
        x = rng.standard_normal(out[:1].shape).astype(np.float32)
        assert_close(jax_tconv.conv_transpose(x, w, output_shape=y.shape[1:3], **kw),
                     (c.T @ x.reshape(-1)).reshape(1, *y.shape[1:]))


def test_same_padding_is_filled_by_the_mode():
    """'SAME' + mode: lax's SAME amounts, filled by the mode (conv and conv_transpose)."""
    y = np.arange(6.0, dtype=np.float32).reshape(1, 6, 1)
    w = np.ones((4, 1, 1), np.float32)
    pads = jax.lax.padtype_to_pads((6,), (4,), (2,), "SAME")         # [(1, 1)]
    out = jax_tconv.conv(y, w, strides=2, padding="same", padding_mode="circular")
    expected = jax_tconv.conv(np.pad(y, ((0, 0), *pads, (0, 0)), mode="wrap"), w, strides=2)
    np.testing.assert_array_equal(out, expected)
    x = np.ones((1, 3, 1), np.float32)
    t = jax_tconv.conv_transpose(x, w, strides=2, padding="SAME", padding_mode="circular")
    assert t.shape == (1, 6, 1)
    np.testing.assert_array_equal(t[0, :, 0], [2.0] * 6)   # wrap-around: every output reached twice


def test_circular_transposed_conv_is_shift_equivariant():
    """The point of a periodic layer: rolling the input by one rolls the output by s."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 6, 5, 2)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 2)).astype(np.float32)
    f = functools.partial(jax_tconv.conv_transpose, w=w, strides=2, padding=1,
                          padding_mode="circular")
    assert_close(f(np.roll(x, (1, 2), axis=(1, 2))), np.roll(f(x), (2, 4), axis=(1, 2)))
    zeros = jax_tconv.conv_transpose(x, w, strides=2, padding=1)
    assert not np.allclose(jax_tconv.conv_transpose(np.roll(x, 1, axis=1), w, strides=2,
                                                    padding=1), np.roll(zeros, 2, axis=1))


def test_auto_method_and_vmap_with_a_mode():
    case = MODE_CASES[1]
    x, w = case.arrays()
    choice = jax_tconv.auto_method(x, w, **case.kwargs())
    assert choice.method in jax_tconv.METHODS and "folds the border back" in choice.reason
    zeros = jax_tconv.auto_method(x, w, **dict(case.kwargs(), padding_mode="zeros"))
    assert "folds the border back" not in zeros.reason
    xs = np.stack([x, x[::-1]])
    f = functools.partial(jax_tconv.conv_transpose, w=w, **case.kwargs())
    np.testing.assert_allclose(jax.vmap(f)(xs), np.stack([f(xs[0]), f(xs[1])]), rtol=1e-5,
                               atol=1e-5)


def test_tune_measures_and_runs_the_mode(tmp_path, monkeypatch):
    """"tune" keys its cache by the whole spec (mode included) and runs the mode."""
    monkeypatch.setenv(_tune.CACHE_ENV, str(tmp_path / "tune.json"))
    monkeypatch.setattr(_tune, "_MEMORY", {})
    seen = []

    def fake(spec, dtype, *, rounds=None, fn="tune_choice"):
        seen.append(spec.padding_mode)
        return {"choice": "dilated+cl", "candidates": {"dilated+cl": {
            "fwd_bwd_ms": 1.0, "fwd_ms": 0.5, "note": ""}}, "rounds": 1, "seconds": 0.0,
            "measured_at": "test"}

    monkeypatch.setattr(_tune, "measure", fake)
    case = MODE_CASES[7]                                    # channels-first, replicate
    x, w = case.arrays()
    choice = jax_tconv.tune_choice(x, w, **case.kwargs())
    assert seen == ["replicate"] and "padding_mode='replicate'" in choice.key
    assert_close(jax_tconv.conv_transpose(x, w, method="tune", **case.kwargs()),
                 case.reference(x, w))
    jax_tconv.tune_choice(x, w, **dict(case.kwargs(), padding_mode="circular"))
    assert seen == ["replicate", "circular"]               # another configuration


# ----------------------------------------------------------------------------
# Layers


def test_layers_take_the_mode():
    from flax import nnx

    from jax_tconv.nn import linen
    from jax_tconv.nn import nnx as tnnx

    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 5, 4, 3)), jnp.float32)
    layer = linen.ConvTranspose(4, (3, 3), strides=2, padding=1, padding_mode="reflect")
    params = layer.init(jax.random.key(0), x)
    expected = jax_tconv.conv_transpose(x, params["params"]["kernel"], strides=2, padding=1,
                                        padding_mode="reflect")
    expected = expected + params["params"]["bias"].reshape(1, 1, 1, -1)
    assert_close(layer.apply(params, x), expected)
    layer = tnnx.ConvTranspose(3, 4, (3, 3), strides=2, padding=1, padding_mode="reflect",
                               rngs=nnx.Rngs(0))
    expected = jax_tconv.conv_transpose(x, layer.kernel[...], strides=2, padding=1,
                                        padding_mode="reflect")
    assert_close(layer(x), expected + layer.bias[...].reshape(1, 1, 1, -1))
    # ResizeConv: the mode fills the padding of the resized input.
    rc = tnnx.ResizeConv(3, 4, (3, 3), strides=2, padding=1, output_padding=1,
                         padding_mode="circular", rngs=nnx.Rngs(0))
    up = jax.image.resize(x, (2, 10, 8, 3), "nearest")
    expected = jax_tconv.conv(np.pad(up, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="wrap"),
                              rc.kernel[...]) + rc.bias[...].reshape(1, 1, 1, -1)
    assert_close(rc(x), expected)
    lrc = linen.ResizeConv(4, (3, 3), strides=2, padding=1, output_padding=1,
                           padding_mode="circular")
    assert_close(lrc.apply({"params": {"kernel": rc.kernel[...], "bias": rc.bias[...]}}, x),
                 expected)


def test_layer_errors_name_the_layer():
    from flax import nnx

    from jax_tconv.nn import linen
    from jax_tconv.nn import nnx as tnnx

    with pytest.raises(ValueError, match=r"^ConvTranspose: unknown padding_mode 'wrap'; choose "
                                         r"one of .* \('wrap' is 'circular' here\)"):
        linen.ConvTranspose(4, (3, 3), padding_mode="wrap")
    with pytest.raises(TypeError, match=r"^ResizeConv: padding_mode must be a string"):
        tnnx.ResizeConv(3, 4, (3, 3), padding_mode=None, rngs=nnx.Rngs(0))
    layer = tnnx.ConvTranspose(3, 4, (5,), padding=2, padding_mode="reflect", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"^ConvTranspose: padding_mode='reflect' needs each "
                                         r"padding < the size it pads.*\(2, 2\).*size 2"):
        layer(jnp.ones((1, 2, 3)))                       # o = 1 - 4 + 4 + 1 = 2
    rc = tnnx.ResizeConv(3, 4, (3,), padding=0, padding_mode="reflect",
                         rngs=nnx.Rngs(0))               # pads (2, 2) of the resized input
    with pytest.raises(ValueError, match=r"^ResizeConv: padding_mode='reflect'.*\(2, 2\).*"
                                         r"the resized input has size 2"):
        rc(jnp.ones((1, 2, 3)))


# ----------------------------------------------------------------------------
# Flax's CIRCULAR ConvTranspose


@pytest.mark.parametrize("k,kw,transpose_kernel", [
    ((6, 6), dict(strides=(2, 2)), True),               # Flax's own docstring example
    ((3, 4), dict(strides=(1, 2), kernel_dilation=(2, 1)), False),
    ((2,), dict(strides=(3,)), True),                   # k < s: nothing wraps
    ((5,), dict(strides=(1,)), False),
    ((4,), dict(strides=(2,)), False),
])
def test_from_flax_circular(k, kw, transpose_kernel):
    import flax.linen as nn

    from jax_tconv.nn import linen

    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, *(5, 4)[:len(k)], 3)),
                    jnp.float32)
    theirs = nn.ConvTranspose(4, k, padding="CIRCULAR", transpose_kernel=transpose_kernel, **kw)
    variables = theirs.init(jax.random.key(0), x)
    kwargs, params = interop.from_flax(theirs, params=variables["params"])
    assert kwargs["padding_mode"] == "circular"
    ours = linen.ConvTranspose(**kwargs)
    assert_close(ours.apply({"params": params}, x), theirs.apply(variables, x))


def test_from_flax_circular_refuses_what_flax_wraps_twice():
    """A period i*s under half the overhang: Flax wraps the border around more than once."""
    import flax.linen as nn

    from jax_tconv.nn import linen

    theirs = nn.ConvTranspose(2, (7,), padding="CIRCULAR", transpose_kernel=True)
    x = jnp.ones((1, 2, 2))                               # period 2, overhang 6: pads (3, 3)
    variables = theirs.init(jax.random.key(0), x)
    kwargs, params = interop.from_flax(theirs, params=variables["params"])
    assert kwargs["padding"] == ((3, 3),)
    with pytest.raises(ValueError, match=r"padding_mode='circular' needs each padding <= the "
                                         r"size it pads"):
        linen.ConvTranspose(**kwargs).apply({"params": params}, x)
    assert_close(linen.ConvTranspose(**kwargs).apply({"params": params}, jnp.ones((1, 3, 2))),
                 theirs.apply(variables, jnp.ones((1, 3, 2))))
