"""``method="tune"``: every strategy it can pick is exact, the cache behaves, and it measures
inside jit, vmap, grad and shard_map.

Every test points ``JAX_TCONV_TUNE_CACHE`` at its own ``tmp_path`` (the autouse fixture),
so none touches the user's cache. Most tests replace `_tune.measure` by a fake that
names the choice and counts its calls; the tests that run the real measurement limit
the candidates and rounds to keep the file fast.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import Case, tolerance
from jax.sharding import PartitionSpec as P

import jax_tconv
from jax_tconv import __main__ as cli
from jax_tconv import _checks, _spec, _strategy, _tune

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A fresh cache file and an empty in-memory cache for every test."""
    path = tmp_path / "tune.json"
    monkeypatch.setenv(_tune.CACHE_ENV, str(path))
    monkeypatch.setattr(_tune, "_MEMORY", {})
    return path


def fake_entry(choice):
    return {"choice": choice, "candidates": {choice: {"fwd_bwd_ms": 1.0, "fwd_ms": 0.5,
                                                      "note": ""}},
            "rounds": 1, "seconds": 0.0, "measured_at": "test"}


@pytest.fixture
def fake_measure(monkeypatch):
    """Replace the measurement: ``fake_measure.choice`` is picked, ``.calls`` counts."""
    class Fake:
        choice = "vjp"
        delay = 0.0
        calls: list = []

        def __call__(self, spec, dtype, *, rounds=None, fn="tune_choice"):
            self.calls.append((spec, np.dtype(dtype).name))
            time.sleep(self.delay)
            return fake_entry(self.choice)

    fake = Fake()
    fake.calls = []
    monkeypatch.setattr(_tune, "measure", fake)
    return fake


def read(path):
    data = json.loads(path.read_text())
    assert data["format"] == _tune.FORMAT and data["schema"] == _tune.SCHEMA
    return data["entries"]


# A channels-first 2-D case with groups and output padding, so the channels-last
# candidates really transpose.
CASE = Case("tune-2d-first", (3, 3), (3, 3), cin=4, cout=6, groups=2, strides=2, padding=1,
            output_padding=1, layout="first")
SMALL = dict(strides=2, padding=1)  # with X, W below: a tiny 1-D channels-last layer
X, W = jnp.ones((1, 4, 2)), jnp.full((4, 3, 2), 0.5)


# ----------------------------------------------------------------------------
# Every strategy tune can pick: values and both gradients against the NumPy reference.


@pytest.mark.parametrize("name", _tune.ALL_CANDIDATES)
def test_every_candidate_matches_the_reference(name, fake_measure, monkeypatch):
    fake_measure.choice = name
    ran = []
    real_run = _strategy.run
    monkeypatch.setattr(_strategy, "run", lambda n, *a: (ran.append(n), real_run(n, *a))[1])
    x, w = CASE.arrays(seed=3)
    f = lambda x, w: jax_tconv.conv_transpose(x, w, method="tune", **CASE.kwargs())  # noqa: E731
    y, vjp = jax.vjp(f, jnp.asarray(x), jnp.asarray(w))
    g = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
    dx, dw = vjp(jnp.asarray(g))
    tol = tolerance(np.float32)
    np.testing.assert_allclose(y, CASE.reference(x, w), rtol=tol, atol=tol)
    rdx, rdw = CASE.reference_vjp(x, w, g)
    np.testing.assert_allclose(dx, rdx, rtol=tol, atol=tol)
    np.testing.assert_allclose(dw, rdw, rtol=tol, atol=tol)
    assert set(ran) == {name} and len(fake_measure.calls) == 1
    assert jax_tconv.tune_choice(x, w, **CASE.kwargs()).method == name


def test_candidates_offer_channels_last_only_for_other_layouts():
    x, w = CASE.arrays()
    first = _spec.transpose_spec("t", jnp.asarray(x), jnp.asarray(w), precision=None,
                                preferred_element_type=None, **CASE.kwargs())
    last = _spec.transpose_spec("t", X, W, output_padding=0, output_shape=None, dilation=1,
                               groups=1, dimension_numbers=None, precision=None,
                               preferred_element_type=None, **SMALL)
    assert _tune.candidates(first) == _tune.ALL_CANDIDATES
    assert _tune.candidates(last) == _tune.BASE_CANDIDATES


# ----------------------------------------------------------------------------
# The real measurement.


def test_measure_times_the_candidates_and_never_picks_a_failing_one(cache, monkeypatch):
    monkeypatch.setattr(_tune, "ROUNDS", 2)
    monkeypatch.setattr(_tune, "MATMUL_TUNE_BYTES", 1)
    monkeypatch.setattr(_tune, "candidates", lambda spec: ("vjp", "matmul", "dilated", "phase",
                                                           "auto"))
    formulations = dict(_strategy.FORMULATIONS)
    dilated = formulations["dilated"]

    def broken(x, w, spec):
        raise RuntimeError("phase is broken today")
    formulations["phase"] = broken
    formulations["dilated"] = lambda x, w, spec: dilated(x, w, spec) * jnp.nan
    monkeypatch.setattr(_strategy, "FORMULATIONS", formulations)
    timed = []
    real_time = _tune._time
    monkeypatch.setattr(_tune, "_time", lambda call: (timed.append(1), real_time(call))[1])

    choice = jax_tconv.tune_choice(X, W, **SMALL)
    t = choice.timings
    assert choice.measured and choice.seconds > 0
    assert t["phase"].note == "failed: RuntimeError: phase is broken today"
    assert t["dilated"].note == "failed: non-finite values on finite inputs"
    assert t["matmul"].note.startswith("skipped: its dense matrix would be")
    measured = {n for n, v in t.items() if v.fwd_bwd_ms is not None}
    assert measured == {"vjp", "auto"}  # "auto" is dilated forward + adjoint derivatives on CPU
    assert all(t[n].fwd_bwd_ms > 0 and t[n].fwd_ms > 0 and t[n].note == "" for n in measured)
    fastest = min(measured, key=lambda n: t[n].fwd_bwd_ms)
    kept = t["auto"].fwd_bwd_ms <= _tune.AUTO_MARGIN * t[fastest].fwd_bwd_ms
    assert choice.method == ("auto" if kept else fastest)
    assert len(timed) == 2 * 2 * 2  # 2 candidates x (fwd, fwd+bwd) x 2 rounds
    entry = read(cache)[choice.key]
    assert entry["choice"] == choice.method and entry["rounds"] == 2
    # A hit measures nothing, and "tune" runs the choice.
    again = jax_tconv.tune_choice(X, W, **SMALL)
    assert not again.measured and again.method == choice.method and len(timed) == 8
    y = jax_tconv.conv_transpose(X, W, method="tune", **SMALL)
    assert len(timed) == 8
    np.testing.assert_allclose(y, jax_tconv.conv_transpose_vjp(X, W, **SMALL), rtol=1e-6)


def test_auto_is_not_timed_twice_when_it_is_another_candidate(monkeypatch):
    monkeypatch.setattr(_tune, "ROUNDS", 1)
    monkeypatch.setattr(_tune, "candidates", lambda spec: ("phase", "auto"))
    x, w = jnp.ones((1, 2, 2, 2, 2)), jnp.ones((2, 2, 2, 1, 2))  # 3-D: "auto" runs "phase"
    choice = jax_tconv.tune_choice(x, w, strides=2)
    assert choice.timings["auto"] == _tune.Timing(None, None, "same as phase")
    assert choice.method == "phase"


def test_no_working_candidate_is_an_error(monkeypatch):
    monkeypatch.setattr(_tune, "candidates", lambda spec: ("phase",))

    def broken(x, w, spec):
        raise RuntimeError("broken")
    monkeypatch.setattr(_strategy, "FORMULATIONS", {**_strategy.FORMULATIONS, "phase": broken})
    with pytest.raises(RuntimeError, match=r"method='tune' found no strategy that runs this "
                                           r"configuration .*phase: failed: RuntimeError: broken"):
        jax_tconv.conv_transpose(X, W, method="tune", **SMALL)


def test_float64_is_measured_in_float64(cache, monkeypatch):
    monkeypatch.setattr(_tune, "ROUNDS", 1)
    monkeypatch.setattr(_tune, "candidates", lambda spec: ("vjp",))
    with jax.enable_x64(True):
        x, w = X.astype(jnp.float64), W.astype(jnp.float64)
        y = jax.jit(lambda x, w: jax_tconv.conv_transpose(x, w, method="tune", **SMALL))(x, w)
        assert y.dtype == jnp.float64
    (key,) = read(cache)
    assert "dtype=float64" in key


# ----------------------------------------------------------------------------
# Inside transforms: measured once, at trace time, with concrete arrays of its own.


def _mesh():
    # Automatic axes so that shard_map places the test's unplaced arrays itself (under
    # explicit axes, the default, it wants them placed first); jax_tconv runs under both
    # (tests/test_sharding.py).
    return jax.make_mesh((1,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))


TRANSFORMS = {
    "jit": lambda f: jax.jit(f),
    "vmap": lambda f: lambda x, w: jax.vmap(f, in_axes=(0, None))(x[:, None], w)[:, 0],
    "grad": lambda f: lambda x, w: jax.grad(lambda w: jnp.sum(f(x, w) ** 2))(w),
    "shard_map": lambda f: jax.jit(jax.shard_map(f, mesh=_mesh(), in_specs=(P("x"), P()),
                                                 out_specs=P("x"))),
}


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_tune_inside_transforms(transform, cache, monkeypatch):
    monkeypatch.setattr(_tune, "ROUNDS", 1)
    monkeypatch.setattr(_tune, "candidates", lambda spec: ("vjp", "phase"))
    calls = []
    real_measure = _tune.measure
    monkeypatch.setattr(_tune, "measure", lambda *a, **k: (calls.append(1),
                                                           real_measure(*a, **k))[1])
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 2)), jnp.float32)

    def f(method):
        return lambda x, w: jax_tconv.conv_transpose(x, w, method=method, **SMALL)
    got = TRANSFORMS[transform](f("tune"))(x, W)
    want = TRANSFORMS[transform](f("vjp"))(x, W)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert len(calls) == 1
    (key,) = read(cache)
    # vmap measures one example: the shapes the traced function sees.
    assert f"in_shape={(1 if transform == 'vmap' else 2, 4, 2)}" in key
    TRANSFORMS[transform](f("tune"))(x + 1, W)
    assert len(calls) == 1


# ----------------------------------------------------------------------------
# The cache: hits, misses, a corrupt or foreign file, processes, threads, its location.


def test_hit_miss_and_the_file(cache, fake_measure):
    a = jax_tconv.tune_choice(X, W, **SMALL)
    assert a.measured and len(fake_measure.calls) == 1 and a.cache == str(cache)
    assert not jax_tconv.tune_choice(X, W, **SMALL).measured
    jax_tconv.conv_transpose(X, W, method="tune", **SMALL)
    jax.jit(lambda x: jax_tconv.conv_transpose(x, W, method="tune", **SMALL))(X)
    assert len(fake_measure.calls) == 1
    b = jax_tconv.tune_choice(X, W, strides=2, padding=0)  # another configuration: a miss
    assert b.measured and len(fake_measure.calls) == 2 and b.key != a.key
    assert set(read(cache)) == {a.key, b.key}
    # A new process (here: an empty memory) reads the file and measures nothing.
    _tune._MEMORY.clear()
    assert not jax_tconv.tune_choice(X, W, **SMALL).measured
    assert len(fake_measure.calls) == 2
    assert not list(cache.parent.glob("*.tmp"))
    # refresh measures again.
    assert jax_tconv.tune_choice(X, W, **SMALL, refresh=True).measured
    assert len(fake_measure.calls) == 3


def test_the_key_holds_the_whole_configuration():
    spec = _spec.transpose_spec("t", X, W, output_padding=0, output_shape=None, dilation=1,
                               groups=1, dimension_numbers=None, precision=None,
                               preferred_element_type=None, **SMALL)
    key = _tune.cache_key(spec, "float32", "cpu")
    device = jax.devices("cpu")[0].device_kind
    for part in ("backend=cpu", f"device={device}", f"jax={jax.__version__}",
                 f"jax_tconv={jax_tconv.__version__}", "dtype=float32", repr(spec)):
        assert part in key
    import dataclasses
    other = [dataclasses.replace(spec, precision=jax.lax.Precision.HIGHEST),
             dataclasses.replace(spec, strides=(3,))]
    assert len({key, _tune.cache_key(spec, "bfloat16", "cpu"),
                *(_tune.cache_key(s, "float32", "cpu") for s in other)}) == 4
    as_class = dataclasses.replace(spec, preferred_element_type=jnp.float32)
    as_dtype = dataclasses.replace(spec, preferred_element_type=np.dtype("float32"))
    assert _tune.cache_key(as_class, "float32", "cpu") == _tune.cache_key(as_dtype, "float32",
                                                                           "cpu")


BAD_FILES = {
    "corrupt": "{ not json",
    "list": "[1, 2, 3]",
    "other-json": json.dumps({"hello": "world"}),
    "schema": json.dumps({"format": _tune.FORMAT, "schema": 99, "entries": {}}),
    "bad-entry": json.dumps({"format": _tune.FORMAT, "schema": _tune.SCHEMA,
                             "entries": {"k": {"choice": "fft"}}}),
}


@pytest.mark.parametrize("content", BAD_FILES.values(), ids=BAD_FILES)
def test_corrupt_or_foreign_file_warns_remeasures_and_is_rewritten(content, cache,
                                                                   fake_measure):
    cache.write_text(content)
    with pytest.warns(UserWarning, match=rf"ignoring the cache file {re.escape(str(cache))}"):
        choice = jax_tconv.tune_choice(X, W, **SMALL)
    assert choice.measured and len(fake_measure.calls) == 1
    assert list(read(cache)) == [choice.key]  # valid JSON again, the bad entry gone
    assert not jax_tconv.tune_choice(X, W, **SMALL).measured


def test_unwritable_cache_warns_and_keeps_the_choice_in_memory(tmp_path, monkeypatch,
                                                               fake_measure):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(_tune.CACHE_ENV, str(tmp_path / "a-file" / "tune.json"))
    with pytest.warns(UserWarning, match=r"could not write the cache file .*a-file"):
        assert jax_tconv.tune_choice(X, W, **SMALL).measured
    assert not jax_tconv.tune_choice(X, W, **SMALL).measured


def test_env_var_is_read_at_call_time(tmp_path, monkeypatch, fake_measure):
    first, second = tmp_path / "one" / "t.json", tmp_path / "two" / "t.json"
    monkeypatch.setenv(_tune.CACHE_ENV, str(first))
    jax_tconv.conv_transpose(X, W, method="tune", **SMALL)
    monkeypatch.setenv(_tune.CACHE_ENV, str(second))
    jax_tconv.conv_transpose(X, W, method="tune", **SMALL)
    assert len(fake_measure.calls) == 2 and first.exists() and second.exists()


def test_default_location(tmp_path, monkeypatch):
    monkeypatch.delenv(_tune.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _tune.cache_path() == tmp_path / "xdg" / "jax_tconv" / "tune.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _tune.cache_path() == tmp_path / "home" / ".cache" / "jax_tconv" / "tune.json"


WRITER = """
import os, sys, time
import jax, jax.numpy as jnp
from jax_tconv import _tune
_tune.measure = lambda spec, dtype, **kw: {
    "choice": "phase", "candidates": {"phase": {"fwd_bwd_ms": 1.0, "fwd_ms": 1.0, "note": ""}},
    "rounds": 1, "seconds": 0.0, "measured_at": "test"}
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
for c in range(1, 9):   # one write per configuration, as fast as they go
    x = jax.ShapeDtypeStruct((1, 4, c), jnp.float32)
    w = jax.ShapeDtypeStruct((int(sys.argv[1]), 1, c), jnp.float32)
    assert _tune.tune_choice(x, w, strides=2).measured
"""


def test_two_processes_writing_at_once_keep_every_entry(cache, tmp_path):
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")]), JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(k), str(go)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for k in (2, 3)]
    go.touch()
    for p in procs:
        out, _ = p.communicate()
        assert p.returncode == 0, out
    entries = read(cache)
    assert len(entries) == 16
    assert {k.count("kernel_shape=(2, 1,") for k in entries} == {0, 1}
    assert not list(cache.parent.glob("*.tmp"))


def test_threads_measure_each_configuration_once(cache, fake_measure):
    fake_measure.delay = 0.05
    configs = [dict(strides=2), dict(strides=3)] * 3
    results, errors = [None] * len(configs), []

    def work(i):
        try:
            results[i] = jax_tconv.tune_choice(X, W, **configs[i])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(configs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(fake_measure.calls) == 2
    assert sum(r.measured for r in results) == 2
    assert set(read(cache)) == {r.key for r in results}


# ----------------------------------------------------------------------------
# Wiring: method checks, layers, the command line.


def test_method_check_accepts_tune_and_names_it():
    assert _checks.method("f", "tune") == "tune"
    assert _checks.METHODS == jax_tconv.METHODS == ("vjp", "matmul", "dilated", "phase",
                                                   "products")
    with pytest.raises(ValueError, match=r"^f: unknown method 'Tune'; choose 'auto', 'tune' or "
                                         r"one of 'vjp', 'matmul', 'dilated', 'phase', 'products'\.$"):
        _checks.method("f", "Tune")


def test_layer_method_tune_runs_the_choice(fake_measure, monkeypatch):
    from jax_tconv.nn import linen

    fake_measure.choice = "phase+cl"
    ran = []
    real_run = _strategy.run
    monkeypatch.setattr(_strategy, "run", lambda n, *a: (ran.append(n), real_run(n, *a))[1])
    layer = linen.ConvTranspose(features=3, kernel_size=(3,), strides=2, method="tune")
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 4, 2)), jnp.float32)
    params = layer.init(jax.random.key(0), x)
    y = layer.apply(params, x)
    assert ran and set(ran) == {"phase+cl"}
    want = linen.ConvTranspose(features=3, kernel_size=(3,), strides=2,
                               method="vjp").apply(params, x)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_cli_tune_fills_the_cache_and_prints_the_table(cache, fake_measure, capsys):
    fake_measure.choice = "dilated"
    assert cli.main(["tune", "--layers", "dcgan 4->8,1d k4"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| dcgan 4->8 512->256 \| dilated \| .*\*\*1.000\*\* .* measured in", out)
    assert "| 1d k4s2 512->1024 64->64 | dilated |" in out and str(cache) in out
    assert len(read(cache)) == 2
    assert cli.main(["tune", "--layers", "dcgan 4->8"]) == 0
    assert "| cached |" in capsys.readouterr().out and len(fake_measure.calls) == 2
    assert cli.main(["tune", "--layers", "no such layer"]) == 2
    assert cli.main(["tune", "--list"]) == 0
    assert "3d k4s2p1 8->16 16->8" in capsys.readouterr().out


def test_table_shows_why_a_candidate_has_no_time():
    t = _tune.Timing
    r = _tune.TuneChoice("vjp", {"vjp": t(1.5, 1.0), "matmul": t(None, None, "skipped: big"),
                                 "phase": t(None, None, "failed: ValueError: x"),
                                 "auto": t(None, None, "same as vjp")}, "k", True, 2.0, "c")
    row = _tune.format_table(["L"], [r]).splitlines()[2]
    assert row == "| L | vjp | **1.500** | skipped | failed | = vjp | measured in 2.0 s |"


def test_auto_is_kept_unless_beaten_by_more_than_the_margin():
    order = ("vjp", "matmul", "dilated", "phase", "auto")
    assert _tune.AUTO_MARGIN == 1.05
    assert _tune.pick({"vjp": 0.97, "auto": 1.0}, order, "auto") == "auto"
    assert _tune.pick({"vjp": 0.90, "auto": 1.0}, order, "auto") == "vjp"
    # "auto" runs phase's program: phase stands for it
    assert _tune.pick({"vjp": 0.97, "phase": 1.0}, order, "phase") == "phase"
    assert _tune.pick({"vjp": 1.0, "dilated": 1.0}, order, "auto") == "vjp"   # ties: order
    assert _tune.pick({"dilated": 2.0}, order, "auto") == "dilated"            # auto failed


def test_a_wrong_candidate_is_dropped_with_a_warning(cache, monkeypatch):
    """A candidate that runs, is finite, and is wrong (here "phase" off by 1% of y and of
    its gradients) is checked against the median of all candidates, named in a warning,
    never timed and never picked."""
    monkeypatch.setattr(_tune, "ROUNDS", 1)
    monkeypatch.setattr(_tune, "candidates", lambda spec: ("vjp", "dilated", "phase", "auto"))
    formulations = dict(_strategy.FORMULATIONS)
    phase = formulations["phase"]
    formulations["phase"] = lambda x, w, spec: phase(x, w, spec) * 1.01
    monkeypatch.setattr(_strategy, "FORMULATIONS", formulations)
    monkeypatch.setattr(_strategy, "same_program", lambda name, spec: None)
    with pytest.warns(RuntimeWarning, match=r"dropped the candidate 'phase': its result "
                                            r"disagrees with the other candidates'"):
        choice = jax_tconv.tune_choice(X, W, **SMALL)
    assert choice.timings["phase"].note.startswith("dropped: disagrees with the others")
    assert choice.timings["phase"].fwd_bwd_ms is None
    assert choice.method != "phase"
    assert {n for n, t in choice.timings.items() if t.fwd_bwd_ms is not None} == {
        "vjp", "dilated", "auto"}


@pytest.mark.parametrize("results,expect", [
    ({"a": [np.ones(3)], "b": [np.ones(3)], "c": [np.ones(3) * 1.5]}, {"c"}),
    ({"a": [np.ones(3, np.float32)], "b": [np.ones(3, np.float32) + 1e-6]}, set()),
    ({"a": [np.ones(3)], "b": [np.ones(3) * 2]}, {"a", "b"}),   # no majority: both named
    ({"a": [np.ones(3, np.float16)], "b": [np.ones(3, np.float16)],
      "c": [np.ones(3, np.float16) * 1.01]}, set()),              # within float16's tolerance
    ({"a": [np.zeros(2), np.ones(2)], "b": [np.zeros(2), np.ones(2)],
      "c": [np.zeros(2), -np.ones(2)]}, {"c"}),                  # the second array differs
])
def test_disagreements_against_the_median(results, expect):
    assert set(_tune.disagreements(results)) == expect
