"""The benchmark's layouts, share of the peak and model suite: flags, rows, agreement."""

import importlib.util
import json
import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "benchmarks"))  # run from a clone
import bench as _bench  # noqa: E402
import bench_models as _bench_models  # noqa: E402

import numpy as np
import pytest


HAVE_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture
def small_peak(monkeypatch):
    """A 256x256 product for the peak: the figure is then low, but the test is fast."""
    monkeypatch.setattr(_bench, "PEAK_N", 256)


def test_layout_and_models_flags_parse_with_their_defaults():
    bench = _bench.build_parser()
    args = bench.parse_args([])
    assert args.layout == "both" and args.models is False
    args = bench.parse_args(["--layout", "nchw", "--models"])
    assert args.layout == "nchw" and args.models is True
    with pytest.raises(SystemExit):
        bench.parse_args(["--layout", "nchwc"])
    text = " ".join(bench.format_help().split())
    assert "--layout {nhwc,nchw,both}" in text and "(default: both)" in text
    assert "--models" in text and "training step" in text
    assert "no layout option" in text                    # says what Flax does in NCHW


def test_a_tiny_run_writes_rows_for_both_layouts(tmp_path, small_peak, capsys):
    assert _bench.main(["--layers", "1d k4s2", "--rounds", "1", "--layout", "both",
                     "--no-torch", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert _bench.FLAX_NOTE in out and "matmul peak" in out
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert {r["layout"] for r in rows} == {"nhwc", "nchw"}
    assert {r["mode"] for r in rows} == {"fwd", "fwd+bwd"}
    for r in rows:
        assert r["layer"] == "1d k4s2 512->1024 64->64"
        assert r["label"] == {"nhwc": "NWC", "nchw": "NCW"}[r["layout"]]
        # Flax has no layout option: it runs channels-last arrays in the NCHW rows too.
        assert r["arrays"] == ("NWC" if r["name"] == "flax" else r["label"])
        if r["note"]:
            continue
        assert r["ms"] > 0 and math.isfinite(r["ms"])
        assert r["peak_gflops"] > 0
        assert np.isclose(r["peak_pct"], 100 * r["gflops"] / r["peak_gflops"])
        if r["name"] in ("auto", "lax"):                  # memory and compile time beside speed
            assert r["compile_s"] > 0 and r["temp"] >= 0
    text = (tmp_path / "bench.md").read_text()
    for needle in ("| 1d k4s2 512->1024 64->64 | NCW | fwd | auto |",
                   "| 1d k4s2 512->1024 64->64 | NCW (ran NWC) | fwd+bwd | flax |",
                   "| layout |", "% of peak", "auto NCHW / NHWC", "NCHW / NHWC  fwd ",
                   "NHWC  fwd      auto / anchor", "NCHW  fwd+bwd  lax / auto geomean",
                   "temp MiB fwd+bwd: auto / lax", "compile s fwd+bwd: auto / lax"):
        assert needle in text, needle


def test_one_layout_has_no_cross_layout_table(tmp_path, small_peak):
    layer = _bench.Layer("tiny 1d", 1, (5,), 3, 2, (4,), 2, 1)
    lines = []
    rows = _bench.run([layer], rounds=1, with_torch=False, out_dir=tmp_path, progress=False,
                      layouts=("nchw",), print_fn=lines.append)
    assert {r["layout"] for r in rows} == {"nchw"}
    text = (tmp_path / "bench.md").read_text()
    assert "auto NCHW / NHWC" not in text and "| tiny 1d | NCW |" in text


def test_gflops_are_useful_flops_over_time():
    layer = _bench.Layer("x", 2, (3, 5), 4, 6, (2, 3), 2, 0)
    row = dict(layout="nhwc", layer="x", mode="fwd", name="auto", ms=2.0, macs=layer.macs(),
               peak_gflops=10.0)
    _bench._derive([row])
    flops = 2 * 2 * 4 * (3 * 5) * 6 * (2 * 3)           # 2 N C_in prod(i) C_out prod(k)
    assert np.isclose(row["gflops"], flops / 2e6)
    assert np.isclose(row["peak_pct"], 100 * row["gflops"] / 10.0)


def test_model_flops_count_every_convolution():
    m = _bench_models.vocoder(batch=2, width=32, length=5)
    fwd, step = _bench_models.useful_flops(m)
    lengths, expected = [5], []
    for layer in m.layers.values():
        expected.append(2 * 2 * lengths[-1] * layer.c_in * layer.c_out * layer.k[0])
        lengths.append(layer.out(lengths[-1]))
    assert lengths[-1] == 5 * 256
    assert fwd == sum(expected)
    assert step == 3 * sum(expected) - expected[0]     # no input gradient for the first layer


@pytest.mark.parametrize("model", _bench_models.tiny_suite(), ids=lambda m: m.name.split()[0])
def test_models_agree_across_contestants(model):
    """Each model, written once, gives the same loss and kernel gradients with jax_tconv in
    both layouts, lax, Flax and (when installed) PyTorch: `evaluate` raises if not."""
    names = _bench_models.contestants(with_torch=HAVE_TORCH)
    steps = _bench_models.training_steps(model, names)
    agreement = _bench_models.evaluate(model, steps)
    assert set(agreement) == set(names)
    losses = [a["loss"] for a in agreement.values()]
    assert all(np.isfinite(losses)) and min(losses) > 0
    for key, a in agreement.items():
        assert a["loss_rel"] <= 1e-5 and a["grad_rel"] <= 1e-5, (key, a)


def test_a_wrong_contestant_stops_the_model_run():
    m = _bench_models.vnet(batch=1, width=16, size=2)
    grads = {name: np.ones(3) for name in m.layers}
    good = (1.0, grads)
    bad = (1.001, grads)
    with pytest.raises(_bench_models.ModelMismatch, match=r"lax \(NHWC\): loss 1\.001"):
        _bench_models.check(m, {("auto", "nhwc"): good, ("lax", "nhwc"): bad})
    off = {name: g * 1.01 for name, g in grads.items()}
    with pytest.raises(_bench_models.ModelMismatch, match="gradients relative 1.00e-02"):
        _bench_models.check(m, {("auto", "nhwc"): good, ("flax", "nhwc"): (1.0, off)})


def test_the_model_run_writes_its_tables(tmp_path, small_peak, monkeypatch):
    monkeypatch.setattr(_bench_models, "suite", lambda: _bench_models.tiny_suite())
    assert _bench.main(["--models", "--layers", "vocoder", "--rounds", "1", "--no-torch",
                     "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "models.json").read_text())
    assert {(r["name"], r["layout"]) for r in rows} == {
        ("auto", "nhwc"), ("auto", "nchw"), ("lax", "nhwc"), ("flax", "nhwc")}
    for r in rows:
        assert r["ms"] > 0 and r["peak_pct"] > 0 and r["compile_s"] > 0 and r["temp"] >= 0
    text = (tmp_path / "models.md").read_text()
    for needle in ("auto NHWC ms (% of peak)", "lax NHWC / auto NCHW", "auto NCHW temp MiB",
                   "lax NHWC compile s", "loss / grad rel. diff", "1-D vocoder upsampler"):
        assert needle in text, needle
    assert _bench.main(["--models", "--dtype", "bfloat16"]) == 2


def test_rows_carry_the_roofline_and_the_report_names_cpu_and_isa(tmp_path, small_peak):
    rows = _bench.run([_bench.Layer("tiny 2d", 1, (4, 4), 8, 4, (4, 4), 2, 1)], rounds=1,
                      with_torch=False, out_dir=tmp_path, progress=False,
                      print_fn=lambda text: None, layouts=("nhwc",))
    by = {(r["mode"], r["name"]): r for r in rows}
    for mode, products in (("fwd", 1), ("fwd+bwd", 3)):
        roof = by[(mode, "roofline")]
        # The roofline is the layer's own arithmetic as matrix products: the same MACs.
        assert roof["macs"] == products * 1 * 16 * 8 * 4 * 16
        for name in ("auto", "products", "lax"):
            r = by[(mode, name)]
            memory_ms = r["bytes"] / (r["copy_gbs"] * 1e6)
            assert r["roof_ms"] == max(roof["ms"], memory_ms)
            assert np.isclose(r["vs_roof"], r["ms"] / r["roof_ms"])
            assert r["roof_kind"] in ("compute", "memory")
            assert r["auto_runs"] in _bench.jax_tconv.METHODS
    # Bytes: x, w and y forward; forward+backward also the cotangent and both gradients.
    x, w, y = 16 * 8, 16 * 8 * 4, 64 * 4
    assert by[("fwd", "auto")]["bytes"] == 4 * (x + w + y)
    assert by[("fwd+bwd", "auto")]["bytes"] == 4 * (2 * x + 2 * w + y)
    text = (tmp_path / "bench.md").read_text()
    assert "CPU has " in text and ("XLA native" in text or "XLA limited to" in text)
    assert "auto / roofline geomean" in text and "| auto runs |" in text


def test_isa_avx2_reruns_with_both_limits(monkeypatch):
    seen = {}

    def call(cmd, env):
        seen.update(cmd=cmd, env=env)
        return 0
    monkeypatch.setattr(_bench.subprocess, "call", call)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert _bench.main(["--isa", "avx2", "--list"]) == 0
    assert seen["env"]["XLA_FLAGS"] == "--xla_cpu_max_isa=AVX2"
    assert seen["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert seen["cmd"][-3:] == ["--isa", "avx2", "--list"]
    # Already limited: runs here, without another process.
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    seen.clear()
    assert _bench.main(["--isa", "avx2", "--list"]) == 0 and not seen
