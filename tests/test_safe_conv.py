"""No convolution with a negative padding reaches XLA (issue 18), and the normal form is exact.

XLA:CPU misreads a convolution whose low padding is negative (docs/xla-bugs.md). Two
checks keep every method clear of it:

- `jax_tconv._safe_conv.conv` equals lax on every geometry it rewrites (negative,
  dead and wider-than-window padding, unread rows, base and window dilation), against a
  NumPy reference that pads and crops by hand;
- the programs of every method and "auto" (forward, both gradients, and second order)
  over the test grid, lowered by JAX and compiled by XLA, hold no convolution with a
  negative padding: none at either edge in what JAX lowers for the forward pass and the
  gradients, and none at the low edge anywhere, second order and XLA's own rewrites
  included. The lowered forward and gradient programs hold no negative `pad` either.
"""

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CASES, Case
from jax import lax

import jax_tconv
from jax_tconv import _safe_conv

METHODS = ("vjp", "matmul", "dilated", "phase", "auto")

# Issue 18's two calls: garbage from "phase" in NHWC (k5 s3, low padding 4 = k - 1),
# and a deterministic error in a permuted layout (the separate form's negative low pad).
ISSUE_CASES = [
    Case("issue18-garbage", (3, 6), (5, 5), cin=6, cout=4, groups=2, batch=1, strides=3,
         padding=((4, 1), (3, 3)), output_padding=(2, 1)),
    Case("issue18-permuted", (5, 4), (3, 2), cin=6, cout=4, groups=2, strides=(1, 4),
         dilation=(1, 2), padding=((2, 2), (1, 0)), output_padding=(0, 2)),
]
PADDING_MODE_CASES = [
    Case("1d-reflect", (5,), (3,), strides=2, padding=2, padding_mode="reflect"),
    Case("2d-circular", (3, 3), (3, 3), strides=2, padding=1, output_padding=1,
         padding_mode="circular"),
]


# ----------------------------------------------------------------------------
# The normal form against a convolution written out by hand.


def reference_conv(x, w, s, pads, lhs_d, rhs_d):
    """1-D correlation of x (N, C, n) with w (O, C, k), by hand: dilate, pad or crop, slide."""
    n, k = x.shape[-1], w.shape[-1]
    dilated = np.zeros((*x.shape[:-1], lhs_d * (n - 1) + 1 if n else 0))
    dilated[..., ::lhs_d] = x
    lo, hi = pads
    padded = np.concatenate([np.zeros((*x.shape[:-1], max(lo, 0))), dilated,
                             np.zeros((*x.shape[:-1], max(hi, 0)))], axis=-1)
    padded = padded[..., max(-lo, 0):padded.shape[-1] - max(-hi, 0)]   # lax: negative crops
    window = rhs_d * (k - 1) + 1
    out = (padded.shape[-1] - window) // s + 1
    y = np.zeros((x.shape[0], w.shape[0], max(out, 0)))
    for j in range(max(out, 0)):
        patch = padded[..., j * s: j * s + window: rhs_d]           # (N, C, k)
        y[..., j] = np.einsum("nck,ock->no", patch, w)
    return y


GEOMETRIES = [
    # (n, k, s, (lo, hi), lhs_dilation, rhs_dilation)
    (5, 2, 1, (-1, 1), 1, 1), (5, 3, 1, (-2, 0), 1, 1), (6, 2, 2, (0, -1), 1, 1),
    (4, 1, 2, (1, 1), 1, 1), (4, 2, 1, (3, 3), 1, 1), (3, 3, 2, (5, 4), 1, 1),
    (5, 3, 3, (2, 2), 1, 1), (7, 2, 3, (0, 0), 1, 1), (4, 3, 1, (-1, -1), 2, 1),
    (4, 2, 1, (-3, 2), 3, 1), (3, 2, 2, (2, -2), 2, 2), (6, 3, 2, (-2, 4), 1, 2),
    (2, 4, 1, (3, 0), 1, 1), (5, 1, 1, (-4, 0), 1, 1), (3, 2, 1, (-5, 3), 1, 1),
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_normal_form_equals_the_convolution(geometry):
    n, k, s, pads, lhs_d, rhs_d = geometry
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, n)).astype(np.float32)
    w = rng.standard_normal((2, 3, k)).astype(np.float32)
    want = reference_conv(x.astype(np.float64), w.astype(np.float64), s, pads, lhs_d, rhs_d)
    got = _safe_conv.conv(jnp.asarray(x), jnp.asarray(w), (s,), [pads], lhs_dilation=(lhs_d,),
                          rhs_dilation=(rhs_d,), dimension_numbers=("NCH", "OIH", "NCH"))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    form = _safe_conv.normal_form(n, k, s, *pads, lhs_d, rhs_d)
    window = rhs_d * (k - 1) + 1
    if not form.empty:
        assert all(0 <= p <= max(window - 1, lhs_d - 1) for p in form.padding), form


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_normal_form_gradients(geometry):
    """Both gradients of the normal form against the hand-written convolution's, taken one
    basis vector at a time (the map is bilinear, so that is exact)."""
    n, k, s, pads, lhs_d, rhs_d = geometry
    rng = np.random.default_rng(1)
    x0, w0 = rng.standard_normal((1, 2, n)), rng.standard_normal((2, 2, k))
    g = rng.standard_normal(reference_conv(x0, w0, s, pads, lhs_d, rhs_d).shape)

    def ref(x, w):
        return float(np.vdot(reference_conv(x, w, s, pads, lhs_d, rhs_d), g))

    def basis(a):
        for idx in itertools.product(*map(range, a.shape)):
            e = np.zeros_like(a)
            e[idx] = 1
            yield idx, e

    dx, dw = np.zeros_like(x0), np.zeros_like(w0)
    for idx, e in basis(x0):
        dx[idx] = ref(e, w0)
    for idx, e in basis(w0):
        dw[idx] = ref(x0, e)
    kw = dict(lhs_dilation=(lhs_d,), rhs_dilation=(rhs_d,),
              dimension_numbers=("NCH", "OIH", "NCH"))
    with jax.enable_x64(True):
        got = jax.grad(lambda x, w: jnp.vdot(_safe_conv.conv(x, w, (s,), [pads], **kw),
                                             jnp.asarray(g)),
                       argnums=(0, 1))(jnp.asarray(x0), jnp.asarray(w0))
    np.testing.assert_allclose(got[0], dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got[1], dw, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------
# Issue 18's calls: every method, values and gradients.


@pytest.mark.parametrize("case", ISSUE_CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("method", METHODS)
def test_issue_18_calls_are_exact(case, method):
    x, w = case.arrays()
    for _ in range(2):  # the garbage changed from call to call: call twice
        y = jax_tconv.conv_transpose(x, w, method=method, **case.kwargs())
        np.testing.assert_allclose(y, case.reference(x, w), rtol=2e-5, atol=2e-5)
    g = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
    dx, dw = jax.grad(lambda x, w: jnp.vdot(jax_tconv.conv_transpose(
        x, w, method=method, **case.kwargs()), g), argnums=(0, 1))(x, w)
    ref_dx, ref_dw = case.reference_vjp(x, w, g)
    np.testing.assert_allclose(dx, ref_dx, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(dw, ref_dw, rtol=2e-5, atol=2e-5)


def test_issue_18_permuted_layout_is_exact():
    """Case 2 in the issue's own layout, ('CNWH', 'IOHW', 'HCWN'), against the NHWC call."""
    case = ISSUE_CASES[1]
    x, w = case.arrays()                       # NHWC / HWIO
    kw = {k: v for k, v in case.kwargs().items() if k != "dimension_numbers"}
    want = np.transpose(np.asarray(jax_tconv.conv_transpose(x, w, method="matmul", **kw)),
                        (3, 0, 2, 1))          # NHWC -> CNWH
    xp = np.transpose(x, (1, 3, 2, 0))         # NHWC -> HCWN
    wp = np.transpose(w, (2, 3, 0, 1))         # HWIO -> IOHW
    for method in METHODS:
        got = jax_tconv.conv_transpose(xp, wp, method=method,
                                       dimension_numbers=("CNWH", "IOHW", "HCWN"), **kw)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, err_msg=method)


# ----------------------------------------------------------------------------
# The programs.

LOWERED_CONV_PAD = re.compile(r"stablehlo\.convolution.*?pad = \[((?:\[-?\d+, -?\d+\](?:, )?)*)\]")
LOWERED_PAD = re.compile(r"stablehlo\.pad .*?low = \[([-\d, ]*)\], high = \[([-\d, ]*)\]")
COMPILED_CONV_PAD = re.compile(r"convolution\(.*window=\{[^}]*pad=([-\d_x]+)")


def lowered_negative(text, *, low_only=False):
    """Convolutions (and pads) in StableHLO with a negative padding edge."""
    found = []
    for pads in LOWERED_CONV_PAD.findall(text):
        pairs = [tuple(map(int, p)) for p in re.findall(r"\[(-?\d+), (-?\d+)\]", pads)]
        if any(lo < 0 or (hi < 0 and not low_only) for lo, hi in pairs):
            found.append(f"convolution pad {pads}")
    if not low_only:
        for lo, hi in LOWERED_PAD.findall(text):
            if "-" in lo or "-" in hi:
                found.append(f"pad low {lo} high {hi}")
    return found


def compiled_negative_low(text):
    """Convolutions in XLA's optimised HLO whose low padding is negative."""
    found = []
    for pads in COMPILED_CONV_PAD.findall(text):
        for pair in pads.split("x"):
            lo = int(re.match(r"(-?\d+)_", pair).group(1))
            if lo < 0:
                found.append(pads)
    return found


def programs(case, method):
    x, w = case.arrays()

    def f(x, w):
        return jax_tconv.conv_transpose(x, w, method=method, **case.kwargs())

    grad = jax.grad(lambda x, w: jnp.sum(f(x, w) ** 2), argnums=(0, 1))

    def second(x, w):   # the gradients and their JVP: the primal keeps them in the program
        return jax.jvp(grad, (x, w), (x, w))

    return x, w, {"forward": f, "gradients": grad, "second order": second}


GRID = CASES + ISSUE_CASES + PADDING_MODE_CASES


@pytest.mark.parametrize("case", GRID, ids=lambda c: c.name)
@pytest.mark.parametrize("method", METHODS)
def test_no_negative_padding_reaches_xla(case, method):
    x, w, progs = programs(case, method)
    for name, fn in progs.items():
        lowered = jax.jit(fn).lower(x, w)
        found = lowered_negative(lowered.as_text(), low_only=name == "second order")
        assert found == [], (name, found)
    # Compiled once: the second-order program returns the gradients too (its primal),
    # which hold the forward pass, so XLA's rewrites of all three are in it.
    assert compiled_negative_low(lowered.compile().as_text()) == []


def test_the_program_checks_can_fail():
    """lax's own negative padding is seen in both programs, and a negative pad in StableHLO."""
    x, w = jnp.ones((1, 5, 3, 2)), jnp.ones((2, 2, 2, 4))

    def f(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), ((-1, 1), (0, -1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    lowered = jax.jit(f).lower(x, w)
    assert lowered_negative(lowered.as_text()) == ["convolution pad [-1, 1], [0, -1]"]
    assert lowered_negative(lowered.as_text(), low_only=True) != []
    assert compiled_negative_low(lowered.compile().as_text()) != []
    padded = jax.jit(lambda a: lax.pad(a, 0.0, [(0, 0, 0), (-1, 0, 0)])).lower(jnp.ones((2, 3)))
    assert lowered_negative(padded.as_text()) == ["pad low 0, -1 high 0, 0"]
