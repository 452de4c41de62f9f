"""The command lines: the self-check fails when a method is wrong; the bench (benchmarks/bench.py)
writes its reports, and ``python -m jax_tconv bench`` says where it went."""

import math
import pathlib
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jax_tconv
from jax_tconv import __main__ as cli
from jax_tconv import _strategy

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "benchmarks"))  # run from a clone
import bench as _bench  # noqa: E402


def test_self_check_passes_for_one_method(capsys):
    assert cli.main(["--method", "phase"]) == 0
    out = capsys.readouterr().out
    assert "all methods agree" in out and "MISMATCH" not in out
    # The first line names the versions it ran on, as installed (docs/versions.md).
    assert out.startswith(f"versions: python {platform.python_version()}, jax_tconv ")
    assert f", jax {jax.__version__}, jaxlib " in out.splitlines()[0]


def test_self_check_fails_when_a_method_is_wrong(monkeypatch, capsys):
    wrong = dict(_strategy.FORMULATIONS)
    right = wrong["dilated"]
    wrong["dilated"] = lambda x, w, spec: right(x, w, spec) * 1.001
    monkeypatch.setattr(_strategy, "FORMULATIONS", wrong)
    assert cli.main(["--method", "dilated"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_bench_runs_every_contestant_and_writes_reports(tmp_path, monkeypatch):
    events = []

    class Bar:                     # records when the progress bar moves and closes
        def update(self):
            events.append("update")

        def close(self):
            events.append("close")

    monkeypatch.setattr(_bench, "_progress", lambda total, enabled: Bar())
    monkeypatch.setattr(_bench, "PEAK_N", 256)     # a quick (if low) matmul peak
    layer = _bench.Layer("tiny 2d", 1, (4, 4), 4, 2, (4, 4), 2, 1)
    rows = _bench.run([layer], rounds=2, out_dir=tmp_path, progress=True,
                      print_fn=lambda text: events.append(text))
    # The bar is closed before any result is printed (else the table lands on the bar's line):
    # before it, only the notes printed before the bar starts (Flax's layout; PyTorch's
    # absence where it is not installed) and its updates (2 modes x 2 layouts).
    closed, first = events.index("close"), events.index("update")
    assert events[first:closed] == ["update"] * 4, events[:closed]
    assert _bench.FLAX_NOTE in events[:first], events[:first]
    assert set(events[:first]) <= {_bench.FLAX_NOTE, _bench.NO_TORCH_NOTE}, events[:first]
    assert "update" not in events[closed:] and "close" not in events[closed + 1:]
    for name in ("bench.md", "bench.json", "bench.png"):   # every file written is named
        assert f"wrote {tmp_path / name}" in events, name
    names = {r["name"] for r in rows}
    assert set(jax_tconv.METHODS) | {"auto", "lax", "flax", "anchor"} <= names
    for r in rows:
        assert r["mode"] in ("fwd", "fwd+bwd")
        assert r["ms"] > 0 and math.isfinite(r["ms"])
        anchor = next(a for a in rows if a["mode"] == r["mode"] and a["name"] == "anchor"
                      and a["layout"] == r["layout"])
        assert np.isclose(r["vs_anchor"], r["ms"] / anchor["ms"])
        macs = layer.macs() * (1 if r["mode"] == "fwd" else 3)
        assert np.isclose(r["gflops"], 2 * macs / (r["ms"] * 1e6))
    text = (tmp_path / "bench.md").read_text()
    assert "| tiny 2d | NHWC | fwd | phase |" in text and "geomean" in text
    assert "| tiny 2d | NCHW | fwd | phase |" in text
    assert "| tiny 2d | NCHW (ran NHWC) | fwd | flax |" in text
    assert "| tiny 2d | " in _bench.auto_table(rows)
    assert (tmp_path / "bench.json").exists()
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_layer_macs_count_useful_work():
    layer = _bench.Layer("x", 2, (3, 5), 4, 6, (2, 3), 2, 0)
    # Every input element meets every tap and every output channel once.
    assert layer.macs() == 2 * 3 * 5 * 4 * 6 * 2 * 3
    x = jnp.ones((2, 3, 5, 4))
    w = jnp.ones((2, 3, 6, 4))
    y = jax_tconv.conv_transpose(x, w, strides=2)
    assert float(y.sum()) == layer.macs()  # ones in, ones kernel: the sum counts the products


def test_bench_list(capsys):
    assert _bench.main(["--list"]) == 0
    assert "dcgan 4->8 512->256" in capsys.readouterr().out


def test_bench_help_names_every_default_and_the_files():
    bench = _bench.build_parser()
    text = bench.format_help()
    assert "time, round-robin" in text.lower()                    # a description
    for action in bench._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{action.option_strings} has no help"
        if action.default is not None and action.nargs != 0:      # flags have no default to show
            assert f"(default: {action.default})" in " ".join(text.split()), action.option_strings
    for flag, default in (("--rounds", 15), ("--out", "bench_out"), ("--dtype", "float32")):
        assert any(a.option_strings == [flag] and a.default == default for a in bench._actions)
    for name in ("bench.md", "bench.json", "bench.png", "models.md", "models.json"):
        assert f"OUT/{name}" in text, name
    assert "benchmarks/bench.py" in cli.build_parser().format_help()


def test_the_old_bench_command_says_where_the_benchmark_went(capsys):
    assert cli.main(["bench", "--layout", "both", "--rounds", "7"]) == 2
    err = capsys.readouterr().err
    assert "no longer part of the installed package" in err and "benchmarks/bench.py" in err


def test_bench_says_when_torch_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)       # `import torch` raises ImportError
    lines = []
    _bench.run([], rounds=1, progress=False, print_fn=lines.append)
    assert any("PyTorch is not installed" in line for line in lines), lines
    lines.clear()
    _bench.run([], rounds=1, progress=False, with_torch=False, print_fn=lines.append)
    assert not any("PyTorch" in line for line in lines), lines   # --no-torch: nothing to say
