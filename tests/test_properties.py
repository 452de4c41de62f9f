"""Property-based equivalence: every method against the NumPy scatter reference.

Hypothesis draws configurations nobody picked by hand: rank 1-3, batch, channels
and groups (depthwise included), kernel sizes, strides, dilation, every padding
form (int, per dimension, asymmetric (lo, hi) pairs, 'SAME', 'VALID') over its
whole valid range, the kernel's reach d*(k - 1) often,
output_padding or output_shape (spatial or full), every padding mode ('zeros'
half the time; 'circular', 'reflect', 'replicate' where PyTorch's rule allows
the padding, else 'replicate'), any layout of x, y and w (channels-last,
channels-first, PyTorch's 'OIHW' with 'NHWC', or any permutation lax
accepts), float32 and float64. The expected geometry
(padding pairs, output padding, output shape) is worked out here from the
rules of docs/contract.md, not by the library's geometry code.

A second family draws invalid configurations (one rule broken at a time):
each must raise jax_tconv's own ValueError/TypeError, whose message starts
with the function's name.

Profiles live in tests/conftest.py: "ci" (default) and "long"
(``JAX_TCONV_HYPOTHESIS_PROFILE=long``).

Replaying a run. An example that aborts the process (an XLA CHECK failure) takes its
xdist worker down before Hypothesis can report it. With ``JAX_TCONV_EXAMPLE_LOG=DIR``
every example is appended to ``DIR/<worker>.jsonl`` (one JSON line, flushed) before it
runs, as Python source that rebuilds it, with the run's seed; the last line of the
crashed worker's file is the example that crashed. ``JAX_TCONV_REPLAY=FILE[:LINE]``
(default: the last line) runs only that example, of only its test. docs/xla-bugs.md
has the commands.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import pathlib

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, given, note, settings

import jax_tconv
from jax_tconv.reference import conv_transpose_reference, conv_transpose_reference_vjp

METHODS = jax_tconv.METHODS + ("auto",)
FUNCTIONS = {m: getattr(jax_tconv, f"conv_transpose_{m}") for m in jax_tconv.METHODS}


def examples(fraction):
    """A share of the loaded profile's max_examples (conftest.py loads it before import)."""
    return max(1, int(settings.default.max_examples * fraction))


# ----------------------------------------------------------------------------
# Recording and replaying examples.

EXAMPLE_LOG = os.environ.get("JAX_TCONV_EXAMPLE_LOG")
REPLAY = os.environ.get("JAX_TCONV_REPLAY")


def source(value) -> str:
    """Python source that rebuilds `value` (evaluated by `rebuild`)."""
    if isinstance(value, Config):
        return repr(value)          # a dataclass of ints, strings and tuples of them
    if isinstance(value, np.ndarray | jax.Array):
        module = "jnp" if isinstance(value, jax.Array) else "np"
        return f"{module}.asarray({np.asarray(value).tolist()!r}, dtype={str(value.dtype)!r})"
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, tuple):
        return "(" + "".join(f"{source(v)}, " for v in value) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(map(source, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{source(k)}: {source(v)}" for k, v in value.items()) + "}"
    return repr(value)              # None, bool, int, float, str, NumPy scalars


def rebuild(text: str):
    import numpy

    names = dict(Config=Config, np=np, numpy=numpy, jnp=jnp, jax=jax,
                 nan=float("nan"), inf=float("inf"))
    return eval(text, names)        # noqa: S307 (our own record)


def _record(test: str, kwargs: dict) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    path = pathlib.Path(EXAMPLE_LOG) / f"{worker}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = dict(test=test, seed=os.environ.get("JAX_TCONV_HYPOTHESIS_SEED"),
                profile=settings.get_current_profile_name(),
                example={k: source(v) for k, v in kwargs.items()})
    with open(path, "a") as f:      # appended and closed: in the OS's hands before the run
        f.write(json.dumps(line) + "\n")


def _replay_record() -> dict:
    path, _, line = REPLAY.partition(":")
    lines = [x for x in pathlib.Path(path).read_text().splitlines() if x.strip()]
    return json.loads(lines[int(line) - 1] if line else lines[-1])


def replayable(test):
    """Record each example of the Hypothesis test `test` before it runs (JAX_TCONV_EXAMPLE_LOG);
    under JAX_TCONV_REPLAY, replace it by a run of the one recorded example, or skip it."""
    inner = test.hypothesis.inner_test
    if EXAMPLE_LOG:
        @functools.wraps(inner)
        def recorded(**kwargs):
            _record(test.__name__, kwargs)
            return inner(**kwargs)
        test.hypothesis.inner_test = recorded
    if not REPLAY:
        return test
    record = _replay_record()
    if record["test"] != test.__name__:
        return pytest.mark.skip(reason=f"JAX_TCONV_REPLAY replays {record['test']}")(test)
    drawn = {k: st.just(rebuild(v)) for k, v in record["example"].items()}
    replay = settings(max_examples=1, database=None, phases=[Phase.generate])(
        given(**drawn)(inner))
    replay.__name__ = test.__name__
    return replay


# ----------------------------------------------------------------------------
# Valid configurations.


@dataclasses.dataclass(frozen=True)
class Config:
    """One drawn transposed convolution and the geometry the README promises for it."""

    i: tuple           # input spatial sizes
    k: tuple           # kernel spatial sizes
    s: tuple
    d: tuple
    pads: tuple        # expected (lo, hi) per dimension: the forward conv's padding
    ops: tuple         # expected output padding per dimension
    batch: int
    cin: int
    cout: int
    groups: int
    specs: tuple       # (lhs, rhs, out): y's, w's and x's layouts
    kwargs: tuple      # the keyword arguments as passed, as (name, value) items
    dtype: str
    seed: int
    mode: str = "zeros"  # the padding mode

    @property
    def nd(self):
        return len(self.i)

    @property
    def o(self):
        """o = (i - 1)*s - lo - hi + d*(k - 1) + 1 + op (docs/contract.md, "The contract")."""
        return tuple((i - 1) * s - lo - hi + d * (k - 1) + 1 + op
                     for i, k, s, d, (lo, hi), op in zip(self.i, self.k, self.s, self.d,
                                                         self.pads, self.ops))

    @property
    def letters(self):
        """Spatial letters in lax's spatial order, the kernel spec's (per-dimension
        arguments follow it, as in lax.conv_general_dilated)."""
        return "".join(c for c in self.specs[1] if c not in "OI")

    def layout(self, canonical, spec):
        """Axis permutation taking an array in `canonical` letter order to `spec`."""
        return [canonical.index(c) for c in spec]

    def to_spec(self, a, canonical, spec):
        return np.transpose(a, self.layout(canonical, spec))

    def from_spec(self, a, spec, canonical):
        return np.transpose(a, self.layout(spec, canonical))

    @property
    def y_shape(self):
        lhs = self.specs[0]
        canonical = dict(zip("NC" + self.letters, (self.batch, self.cout, *self.o)))
        return tuple(canonical[c] for c in lhs)

    def arrays(self, seed_offset=0):
        """x (out spec), w (rhs spec), and their canonical (N, C_in, *i), (C_in, C_out/g, *k)."""
        rng = np.random.default_rng(self.seed + seed_offset)
        xc = rng.standard_normal((self.batch, self.cin, *self.i)).astype(self.dtype)
        wc = rng.standard_normal((self.cin, self.cout // self.groups, *self.k)).astype(self.dtype)
        lhs, rhs, out = self.specs
        return (self.to_spec(xc, "NC" + self.letters, out),
                self.to_spec(wc, "OI" + self.letters, rhs), xc, wc)

    def ref_kwargs(self):
        return dict(strides=self.s, padding=self.pads, output_padding=self.ops,
                    dilation=self.d, groups=self.groups, padding_mode=self.mode)

    def reference(self, xc, wc):
        """The reference output, laid out by the lhs spec."""
        y = conv_transpose_reference(xc, wc, **self.ref_kwargs())
        return self.to_spec(y, "NC" + self.letters, self.specs[0])

    def reference_vjp(self, xc, wc, g):
        """Reference (dx, dw) in x's and w's layouts, for a cotangent g in y's layout."""
        gc = self.from_spec(g, self.specs[0], "NC" + self.letters)
        dx, dw = conv_transpose_reference_vjp(xc, wc, gc, **self.ref_kwargs())
        return (self.to_spec(dx, "NC" + self.letters, self.specs[2]),
                self.to_spec(dw, "OI" + self.letters, self.specs[1]))

    def fn(self, method):
        kwargs = dict(self.kwargs)
        if method == "auto":
            return functools.partial(jax_tconv.conv_transpose, **kwargs)
        return functools.partial(FUNCTIONS[method], **kwargs)

    def precision(self):
        return jax.enable_x64(True) if self.dtype == "float64" else contextlib.nullcontext()

    @property
    def tol(self):
        return 1e-12 if self.dtype == "float64" else 2e-5


def layouts(nd):
    """(lhs, rhs, out) specs: the usual ones, PyTorch's kernel with NHWC, or any permutation."""
    sp = "DHW"[3 - nd:]
    last, first = f"N{sp}C", f"NC{sp}"
    any_io = st.permutations("NC" + sp).map("".join)
    any_kernel = st.permutations("OI" + sp).map("".join)
    return st.one_of(
        st.just((last, f"{sp}IO", last)),
        st.just((first, f"OI{sp}", first)),
        st.just((last, f"OI{sp}", last)),               # PyTorch weight, channels-last data
        st.tuples(st.sampled_from([last, first]), any_kernel, st.sampled_from([last, first])),
        st.tuples(any_io, any_kernel, any_io),
    )


@st.composite
def channels(draw):
    """(batch, C_in, C_out, groups): plain, grouped, or depthwise (groups == C_in)."""
    batch = draw(st.sampled_from([1, 2] * 5 + [0]))   # an empty batch one time in 11
    kind = draw(st.sampled_from(["plain", "grouped", "depthwise"]))
    if kind == "plain":
        return batch, draw(st.integers(1, 3)), draw(st.integers(1, 3)), 1
    if kind == "grouped":
        g = draw(st.integers(2, 3))
        return batch, g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2)), g
    g = draw(st.integers(1, 4))
    return batch, g, g * draw(st.integers(1, 2)), g


def _per_dim(draw, values):
    """An int when all entries agree (sometimes), else a tuple or list."""
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return draw(st.sampled_from([tuple, list]))(values)


@st.composite
def configs(draw, max_rank=3, dtypes=("float32", "float64")):
    nd = draw(st.integers(1, max_rank))
    size = 3 if nd == 3 else 4
    dims = lambda lo, hi: draw(st.lists(st.integers(lo, hi), min_size=nd, max_size=nd))  # noqa: E731
    i, k, s, d = dims(1, size), dims(1, size), dims(1, 3), dims(1, 3)
    batch, cin, cout, groups = draw(channels())
    specs = draw(layouts(nd))
    full = [(ij - 1) * sj + dj * (kj - 1) + 1 for ij, kj, sj, dj in zip(i, k, s, d)]
    kwargs = {}

    form = draw(st.sampled_from(["int", "per_dim", "pairs", "mixed", "SAME", "VALID", "default"]))
    # Output padding first (not with SAME): it counts towards o >= 1, so padding may
    # make the natural size (i - 1)*s - lo - hi + d*(k - 1) + 1 zero or negative.
    how = "SAME" if form == "SAME" else draw(
        st.sampled_from(["output_padding", "output_shape", "none"]))
    ops = [0] * nd
    if how in ("output_padding", "output_shape"):
        ops = [draw(st.integers(0, max(sj, dj) - 1)) for sj, dj in zip(s, d)]
    room = [f - 1 + op for f, op in zip(full, ops)]   # lo + hi <= room keeps o >= 1
    # Padding over its whole valid range (lo + hi <= room), with the reach d*(k - 1) of
    # the kernel drawn often: a low padding of d*(k - 1) in 2-D was issue 18's first call.
    reach = [dj * (kj - 1) for kj, dj in zip(k, d)]

    def amount(top, reach_here):
        return draw(st.integers(0, top) | st.just(min(reach_here, top)))

    if form == "int":
        p = amount(min(room) // 2, min(reach))
        pads, kwargs["padding"] = [(p, p)] * nd, p
    elif form == "per_dim":
        ps = [amount(r // 2, e) for r, e in zip(room, reach)]
        pads, kwargs["padding"] = [(p, p) for p in ps], draw(st.sampled_from([tuple, list]))(ps)
    elif form in ("pairs", "mixed"):   # asymmetric (lo, hi), or ints and pairs mixed
        pads, entries = [], []
        for r, e in zip(room, reach):
            lo = amount(r, e)
            hi = amount(r - lo, e)
            pads.append((lo, hi))
            as_int = form == "mixed" and lo == hi and draw(st.booleans())
            entries.append(lo if as_int else draw(st.sampled_from([tuple, list]))((lo, hi)))
        kwargs["padding"] = draw(st.sampled_from([tuple, list]))(entries)
    elif form == "VALID":
        pads, kwargs["padding"] = [(0, 0)] * nd, draw(st.sampled_from(["VALID", "valid"]))
    elif form == "default":
        pads = [(0, 0)] * nd
    if form == "SAME":
        kwargs["padding"] = "SAME"
        # Any o with ceil(o / s) == i; the forward conv's SAME padding for an input of size o.
        if draw(st.booleans()):
            target = [draw(st.integers((ij - 1) * sj + 1, ij * sj)) for ij, sj in zip(i, s)]
            kwargs["output_shape"] = _output_shape(draw, target, specs, batch, cout)
        else:
            target = [ij * sj for ij, sj in zip(i, s)]
        pads, ops = [], []
        for f, o in zip(full, target):
            total = max(f - o, 0)              # lax.padtype_to_pads's rule, written out
            pads.append((total // 2, total - total // 2))
            ops.append(o - (f - total))        # natural size f - total, the rest is op
    elif how == "output_padding":
        if any(ops) or draw(st.booleans()):
            kwargs["output_padding"] = _per_dim(draw, ops)
    elif how == "output_shape":
        target = [f - lo - hi + op for f, (lo, hi), op in zip(full, pads, ops)]
        kwargs["output_shape"] = _output_shape(draw, target, specs, batch, cout)
    if groups != 1 or draw(st.booleans()):
        kwargs["groups"] = groups
    if any(sj != 1 for sj in s) or draw(st.booleans()):
        kwargs["strides"] = _per_dim(draw, s)
    if any(dj != 1 for dj in d) or draw(st.booleans()):
        kwargs["dilation"] = _per_dim(draw, d)
    default = "DHW"[3 - nd:]
    if specs != (f"N{default}C", f"{default}IO", f"N{default}C") or draw(st.booleans()):
        kwargs["dimension_numbers"] = specs
    mode = draw(st.sampled_from(["zeros"] * 3 + ["circular", "reflect", "replicate"]))
    o = [f - lo - hi + op for f, (lo, hi), op in zip(full, pads, ops)]
    if mode == "reflect" and any(max(p) >= oj for p, oj in zip(pads, o)):
        mode = "replicate"     # PyTorch's F.pad rules: reflect pads < o, circular <= o
    if mode == "circular" and any(max(p) > oj for p, oj in zip(pads, o)):
        mode = "replicate"
    if mode != "zeros" or draw(st.booleans()):
        kwargs["padding_mode"] = mode
    dtype = draw(st.sampled_from(dtypes))
    return Config(tuple(i), tuple(k), tuple(s), tuple(d), tuple(map(tuple, pads)), tuple(ops),
                  batch, cin, cout, groups, specs, tuple(kwargs.items()), dtype,
                  draw(st.integers(0, 2**16)), mode)


def _output_shape(draw, target, specs, batch, cout):
    """The spatial target sizes, or (sometimes) the full output shape in y's layout."""
    if draw(st.booleans()):
        return draw(st.sampled_from([tuple, list]))(target)
    sizes = dict(zip((c for c in specs[1] if c not in "OI"), target))   # lax's spatial order
    return tuple(batch if c == "N" else cout if c == "C" else sizes[c] for c in specs[0])


def test_recorded_examples_rebuild_exactly(tmp_path, monkeypatch):
    """What the example log holds rebuilds the drawn values: dataclasses, arrays of any
    dtype (NumPy or JAX), dtype classes, NumPy scalars, NaN, nested containers."""
    cfg = Config(i=(3, 2), k=(2, 2), s=(2, 1), d=(1, 2), pads=((1, 1), (0, 2)), ops=(1, 0),
                 batch=2, cin=2, cout=4, groups=2, specs=("NCHW", "OIHW", "NCHW"),
                 kwargs=(("padding", [(1, 1), (0, 2)]), ("output_padding", (1, 0))),
                 dtype="float32", seed=7)
    call = ("dtype_mismatch", "vjp", np.arange(6, dtype=np.float32).reshape(1, 2, 3),
            jnp.ones((2, 2), jnp.bfloat16),
            {"preferred_element_type": jnp.int32, "kind": np.bool_, "scale": np.float32(1.5),
             "pads": [1, (2, 3)], "nan": float("nan"), "none": None})
    assert rebuild(source(cfg)) == cfg
    got = rebuild(source(call))
    assert got[:2] == call[:2]
    for a, b in zip(got[2:4], call[2:4]):
        assert type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)
    kw, want = got[4], call[4]
    assert kw["preferred_element_type"] is jnp.int32 and kw["kind"] is np.bool_
    assert kw["scale"] == want["scale"] and type(kw["scale"]) is np.float32
    assert kw["pads"] == [1, (2, 3)] and np.isnan(kw["nan"]) and kw["none"] is None

    # The record format, and which line a replay reads.
    log = tmp_path / "log"
    monkeypatch.setitem(globals(), "EXAMPLE_LOG", str(log))
    _record("test_a", {"cfg": cfg})
    _record("test_b", {"call": call, "public": True})
    path = log / f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.jsonl"
    monkeypatch.setitem(globals(), "REPLAY", str(path))
    last = _replay_record()
    assert last["test"] == "test_b"
    assert last["profile"] == settings.get_current_profile_name()
    assert rebuild(last["example"]["public"]) is True
    monkeypatch.setitem(globals(), "REPLAY", f"{path}:1")
    assert rebuild(_replay_record()["example"]["cfg"]) == cfg


def assert_close(actual, expected, tol):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


# ----------------------------------------------------------------------------
# Properties of valid configurations.


@replayable
@settings(max_examples=examples(1.0))
@given(cfg=configs())
def test_shape_and_values_match_reference(cfg):
    """Output shape as docs/contract.md says; values match the scatter reference, every method."""
    note(repr(cfg))
    with cfg.precision():
        x, w, xc, wc = cfg.arrays()
        expected = cfg.reference(xc, wc)
        assert expected.shape == cfg.y_shape
        for method in METHODS:
            y = cfg.fn(method)(x, w)
            assert y.shape == cfg.y_shape, (method, y.shape, cfg.y_shape)
            assert y.dtype == jnp.dtype(cfg.dtype), (method, y.dtype)
            assert_close(y, expected, cfg.tol)


@replayable
@settings(max_examples=examples(0.5))
@given(cfg=configs())
def test_gradients_match_reference(cfg):
    """Reverse-mode gradients w.r.t. x and w match the reference's gather, every method."""
    note(repr(cfg))
    with cfg.precision():
        x, w, xc, wc = cfg.arrays()
        g = np.random.default_rng(cfg.seed + 1).standard_normal(cfg.y_shape).astype(cfg.dtype)
        ref_dx, ref_dw = cfg.reference_vjp(xc, wc, g)
        for method in METHODS:
            f = cfg.fn(method)
            dx, dw = jax.jit(lambda x, w, g, f=f: jax.vjp(f, x, w)[1](g))(x, w, g)
            assert_close(dx, ref_dx, cfg.tol)
            assert_close(dw, ref_dw, cfg.tol)


@replayable
@settings(max_examples=examples(0.6))
@given(cfg=configs())
def test_adjoint_identity(cfg):
    """<conv(y), x> == <y, conv_transpose(x)>, conv being jax_tconv.conv (lax) with the
    forward padding: hi shrinks by s*(op // s) when op >= s (docs/contract.md, "one corner"),
    filled by the padding mode."""
    note(repr(cfg))
    with cfg.precision():
        x, w, _, _ = cfg.arrays()
        y = np.random.default_rng(cfg.seed + 2).standard_normal(cfg.y_shape).astype(cfg.dtype)
        fwd_pads = [(lo, hi - s * (op // s)) for (lo, hi), s, op in zip(cfg.pads, cfg.s, cfg.ops)]
        cy = np.asarray(jax_tconv.conv(y, w, strides=cfg.s, padding=fwd_pads, dilation=cfg.d,
                                       groups=cfg.groups, dimension_numbers=cfg.specs,
                                       padding_mode=cfg.mode), np.float64)
        assert cy.shape == x.shape
        lhs = np.vdot(cy, x.astype(np.float64))
        for method in METHODS:
            ty = np.asarray(cfg.fn(method)(x, w), np.float64)
            rhs = np.vdot(y.astype(np.float64), ty)
            bound = np.vdot(np.abs(cy), np.abs(x)) + np.vdot(np.abs(y), np.abs(ty))
            assert abs(lhs - rhs) <= cfg.tol * bound + 1e-30, (method, lhs, rhs)


@replayable
@settings(max_examples=examples(0.4))
@given(cfg=configs())
def test_jit_equals_eager(cfg):
    note(repr(cfg))
    with cfg.precision():
        x, w, _, _ = cfg.arrays()
        for method in METHODS:
            f = cfg.fn(method)
            eager = np.asarray(f(x, w))
            jitted = np.asarray(jax.jit(f)(x, w))
            assert_close(jitted, eager, cfg.tol / 10)


@replayable
@settings(max_examples=examples(0.4))
@given(cfg=configs(), axes=st.sampled_from([(0, None), (None, 0), (0, 0)]))
def test_vmap_equals_loop(cfg, axes):
    """vmap over a stack of inputs, of kernels, or of both, against a Python loop."""
    note(repr(cfg))
    with cfg.precision():
        (x0, w0, _, _), (x1, w1, _, _) = cfg.arrays(), cfg.arrays(seed_offset=7)
        xs, ws = np.stack([x0, x1]), np.stack([w0, w1])
        args = (xs if axes[0] == 0 else x0, ws if axes[1] == 0 else w0)
        for method in METHODS:
            f = cfg.fn(method)
            batched = jax.vmap(f, in_axes=axes)(*args)
            loop = np.stack([f(xs[b] if axes[0] == 0 else x0, ws[b] if axes[1] == 0 else w0)
                             for b in range(2)])
            assert_close(batched, loop, cfg.tol)


# ----------------------------------------------------------------------------
# Invalid configurations: one rule broken at a time.


BREAKS = [
    "groups_not_dividing", "groups_below_one", "output_padding_too_large",
    "output_padding_negative", "output_shape_unreachable", "output_shape_and_padding",
    "same_with_output_padding", "same_output_shape_out_of_range", "padding_too_large",
    "padding_negative", "stride_below_one", "dilation_below_one", "not_an_int",
    "wrong_length", "bad_pair", "bad_padding_string", "dtype_mismatch", "integer_dtype",
    "rank_mismatch", "rank_too_low", "channel_mismatch", "malformed_dimension_numbers",
    "dimension_numbers_not_strings", "full_output_shape_disagrees", "output_shape_wrong_length",
    "zero_size", "unknown_method", "bad_preferred_element_type", "padding_mode_unknown",
    "padding_mode_not_a_string", "padding_mode_padding_too_large",
]


@st.composite
def invalid_calls(draw):
    """(break name, method, x, w, kwargs) with exactly one rule of the contract broken."""
    cfg = draw(configs(max_rank=2, dtypes=("float32",)))
    brk = draw(st.sampled_from(BREAKS))
    x, w, _, _ = cfg.arrays()
    nd = cfg.nd
    kw = dict(cfg.kwargs)
    method = draw(st.sampled_from(METHODS))
    j = draw(st.integers(0, nd - 1))    # the dimension that breaks a per-dimension rule

    def per_dim(value, base=(0,) * nd):
        v = list(base)
        v[j] = value
        return tuple(v)

    def explicit_padding():
        # The same geometry as (lo, hi) pairs and output_padding, without SAME or output_shape.
        kw.pop("output_shape", None)
        kw["output_padding"] = tuple(cfg.ops)
        kw["padding"] = tuple(cfg.pads)

    full = [(i - 1) * s + d * (k - 1) + 1 for i, k, s, d in zip(cfg.i, cfg.k, cfg.s, cfg.d)]
    natural = [f - lo - hi for f, (lo, hi) in zip(full, cfg.pads)]
    if brk == "groups_not_dividing":
        kw["groups"] = cfg.cin + draw(st.integers(1, 3))
    elif brk == "groups_below_one":
        kw["groups"] = draw(st.integers(-2, 0))
    elif brk == "output_padding_too_large":
        explicit_padding()
        m = max(cfg.s[j], cfg.d[j])
        kw["output_padding"] = per_dim(m + draw(st.integers(0, 2)), cfg.ops)
    elif brk == "output_padding_negative":
        explicit_padding()
        kw["output_padding"] = per_dim(-draw(st.integers(1, 2)), cfg.ops)
    elif brk == "output_shape_unreachable":
        explicit_padding()
        del kw["output_padding"]
        target = [n + op for n, op in zip(natural, cfg.ops)]
        m = max(cfg.s[j], cfg.d[j])
        target[j] = draw(st.sampled_from([natural[j] + m, natural[j] + m + 1, natural[j] - 1,
                                          0, -1]))
        kw["output_shape"] = tuple(target)
    elif brk == "output_shape_and_padding":
        explicit_padding()
        kw["output_shape"] = tuple(n + op for n, op in zip(natural, cfg.ops))
        kw["output_padding"] = per_dim(draw(st.integers(1, 2)), cfg.ops)
    elif brk == "same_with_output_padding":
        kw.pop("output_shape", None)
        kw["padding"] = "SAME"
        kw["output_padding"] = per_dim(draw(st.integers(1, 3)))
    elif brk == "same_output_shape_out_of_range":
        kw.pop("output_padding", None)
        kw["padding"] = "SAME"
        target = [i * s for i, s in zip(cfg.i, cfg.s)]
        target[j] = draw(st.sampled_from([cfg.i[j] * cfg.s[j] + 1, (cfg.i[j] - 1) * cfg.s[j]]))
        kw["output_shape"] = tuple(target)
    elif brk == "padding_too_large":
        explicit_padding()
        pads = list(cfg.pads)
        extra = draw(st.integers(0, 2))
        too_much = full[j] + cfg.ops[j] + extra          # o = -extra <= 0
        pads[j] = (too_much, 0) if draw(st.booleans()) else (0, too_much)
        kw["padding"] = tuple(pads)
    elif brk == "padding_negative":
        explicit_padding()
        pads = list(cfg.pads)
        pads[j] = (-1, pads[j][1]) if draw(st.booleans()) else (pads[j][0], -1)
        kw["padding"] = draw(st.sampled_from([tuple(pads), -1]))
    elif brk == "stride_below_one":
        kw["strides"] = draw(st.sampled_from([0, -1, per_dim(0)]))
    elif brk == "dilation_below_one":
        kw["dilation"] = draw(st.sampled_from([0, -2, per_dim(0)]))
    elif brk == "not_an_int":
        name = draw(st.sampled_from(["strides", "dilation", "output_padding", "groups"]))
        kw.pop("output_shape", None)
        if name == "output_padding":
            explicit_padding()
        kw[name] = draw(st.sampled_from([1.5, 2.0, True, "2", None, np.float32(1.0)]))
    elif brk == "wrong_length":
        name = draw(st.sampled_from(["strides", "dilation", "output_padding", "padding"]))
        if name in ("output_padding", "padding"):
            explicit_padding()
        kw[name] = tuple([1] * (nd + draw(st.sampled_from([1, 2]))))
    elif brk == "bad_pair":
        explicit_padding()
        pads = [list(p) for p in cfg.pads]
        pads[j] = draw(st.sampled_from([[0, 0, 0], [1], []]))
        kw["padding"] = tuple(map(tuple, pads))
    elif brk == "bad_padding_string":
        kw["padding"] = draw(st.sampled_from(["FULL", "CAUSAL", "", "SAME "]))
    elif brk == "dtype_mismatch":
        other = draw(st.sampled_from([jnp.float16, jnp.bfloat16, jnp.complex64]))
        if draw(st.booleans()):
            w = jnp.asarray(w, other)
        else:
            x = jnp.asarray(x, other)
    elif brk == "integer_dtype":   # integers are accepted; bools, or one beside a float, are not
        dt = draw(st.sampled_from([np.int32, np.int8, np.bool_, np.uint8]))
        if dt is np.bool_:
            x, w = x.astype(dt), w.astype(dt)
        elif draw(st.booleans()):
            x = x.astype(dt)
        else:
            w = w.astype(dt)
    elif brk == "rank_mismatch":
        w = w[None]
    elif brk == "rank_too_low":
        x, w = np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)
        if draw(st.booleans()):
            x, w = x[0], w[0]
    elif brk == "channel_mismatch":
        o_axis = cfg.specs[1].index("O")
        w = np.concatenate([w, w.take([0], axis=o_axis)], axis=o_axis)
    elif brk == "malformed_dimension_numbers":
        lhs, rhs, out = cfg.specs
        kw["dimension_numbers"] = draw(st.sampled_from([
            (lhs, rhs.replace("I", "O"), out), (lhs + "X", rhs, out), (lhs, rhs, out[:-1]),
            (lhs.replace("N", "X"), rhs, out.replace("N", "X")), (lhs, rhs[::-1] + "O", out),
        ]))
    elif brk == "dimension_numbers_not_strings":
        kw["dimension_numbers"] = draw(st.sampled_from([
            cfg.specs[:2], (0, 1, 2), "NHWC", (cfg.specs[0], None, cfg.specs[2]),
        ]))
    elif brk == "full_output_shape_disagrees":
        explicit_padding()
        del kw["output_padding"]
        shape = list(cfg.y_shape)
        axis = cfg.specs[0].index(draw(st.sampled_from("NC")))
        shape[axis] += draw(st.integers(1, 2))
        kw["output_shape"] = tuple(shape)
    elif brk == "output_shape_wrong_length":
        explicit_padding()
        del kw["output_padding"]
        kw["output_shape"] = tuple(n + op for n, op in zip(natural, cfg.ops)) + (1,)
    elif brk == "zero_size":
        axis = draw(st.sampled_from([0, 1]))
        if axis == 0:
            x = x.take(np.array([], int), axis=cfg.specs[2].index(cfg.letters[j]))
        else:
            w = w.take(np.array([], int), axis=cfg.specs[1].index(cfg.letters[j]))
    elif brk == "unknown_method":
        method = draw(st.sampled_from(["fft", "AUTO", "", None, 0]))
    elif brk == "padding_mode_unknown":
        kw["padding_mode"] = draw(st.sampled_from(["wrap", "edge", "Zeros", "", "periodic"]))
    elif brk == "padding_mode_not_a_string":
        kw["padding_mode"] = draw(st.sampled_from([None, 0, True, ("circular",)]))
    elif brk == "padding_mode_padding_too_large":
        explicit_padding()
        room = full[j] + cfg.ops[j]                 # o = room - lo - hi
        pads = list(cfg.pads)
        mode = draw(st.sampled_from(["reflect", "circular"]))
        if room >= 2:                               # lo > o (circular) or lo >= o (reflect)
            lo = room // 2 + 1 if mode == "circular" and room >= 3 else (room + 1) // 2
            mode = "reflect" if lo == room - lo else mode
            pads[j] = (lo, 0) if draw(st.booleans()) else (0, lo)
            kw["padding"], kw["padding_mode"] = tuple(pads), mode
        else:                                       # o = 1 whatever the padding: no room
            kw["padding_mode"] = "reflected"
    elif brk == "bad_preferred_element_type":
        kw["preferred_element_type"] = draw(st.sampled_from(
            [jnp.int32, jnp.float16, jnp.bfloat16, jnp.complex64, np.bool_, "nonsense", 3]))
    return brk, method, x, w, kw


@replayable
@settings(max_examples=examples(1.5))
@given(call=invalid_calls(), public=st.booleans())
def test_invalid_configurations_raise_our_error(call, public):
    """ValueError/TypeError from jax_tconv itself, before any lax call: never an IndexError,
    a lax error, or a wrong-shaped result."""
    brk, method, x, w, kw = call
    note(f"{brk} method={method!r} x{np.shape(x)} w{np.shape(w)} {kw}")
    if public or method not in FUNCTIONS:
        fn = functools.partial(jax_tconv.conv_transpose, method=method)
    else:
        fn = FUNCTIONS[method]
    with pytest.raises((ValueError, TypeError)) as info:
        out = fn(x, w, **kw)
        note(f"returned shape {out.shape}")
    assert len(info.value.args) == 1, info.value.args     # one string, not a tuple
    message = str(info.value)
    assert message.startswith("conv_transpose"), message
