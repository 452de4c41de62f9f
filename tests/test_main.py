"""The command line: the self-check fails when a method is wrong; the bench writes its reports."""

import math
import platform

import jax
import jax.numpy as jnp
import numpy as np

import jax_tconv
from jax_tconv import __main__ as cli
from jax_tconv import _api, _bench


def test_self_check_passes_for_one_method(capsys):
    assert cli.main(["--method", "phase"]) == 0
    out = capsys.readouterr().out
    assert "all methods agree" in out and "MISMATCH" not in out
    # The first line names the versions it ran on, as installed (docs/versions.md).
    assert out.startswith(f"versions: python {platform.python_version()}, jax_tconv ")
    assert f", jax {jax.__version__}, jaxlib " in out.splitlines()[0]


def test_self_check_fails_when_a_method_is_wrong(monkeypatch, capsys):
    wrong = dict(_api._FORMULATIONS)
    right = wrong["dilated"]
    wrong["dilated"] = lambda x, w, spec: right(x, w, spec) * 1.001
    monkeypatch.setattr(_api, "_FORMULATIONS", wrong)
    assert cli.main(["--method", "dilated"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_bench_runs_every_contestant_and_writes_reports(tmp_path):
    layer = _bench.Layer("tiny 2d", 1, (4, 4), 4, 2, (4, 4), 2, 1)
    rows = _bench.run([layer], rounds=2, out_dir=tmp_path, progress=False,
                      print_fn=lambda *a: None)
    names = {r["name"] for r in rows}
    assert set(jax_tconv.METHODS) | {"auto", "lax", "flax", "anchor"} <= names
    for r in rows:
        assert r["mode"] in ("fwd", "fwd+bwd")
        assert r["ms"] > 0 and math.isfinite(r["ms"])
        anchor = next(a for a in rows if a["mode"] == r["mode"] and a["name"] == "anchor")
        assert np.isclose(r["vs_anchor"], r["ms"] / anchor["ms"])
        macs = layer.macs() * (1 if r["mode"] == "fwd" else 3)
        assert np.isclose(r["gflops"], 2 * macs / (r["ms"] * 1e6))
    text = (tmp_path / "bench.md").read_text()
    assert "| tiny 2d | fwd | phase |" in text and "geomean" in text
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
    assert cli.main(["bench", "--list"]) == 0
    assert "dcgan 4->8 512->256" in capsys.readouterr().out
