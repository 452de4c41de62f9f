"""Smoke tests of examples/: each script runs with tiny settings and writes what it promises.

Every example runs in its own subprocess (they set JAX options at import, and
a script is what a user runs), with ``--out`` in the test's temporary folder.
Each test runs its own script when it runs, and waits for it however long it
takes: the settings below bound the work (steps, sizes, samples), never the
time, so a slow or shared machine only makes the suite longer. How many scripts
run at once is up to pytest-xdist: one per worker (pyproject's ``-n 2``: at most
two, one per core of a 2-core machine). Each test then checks its script's
files (real PNG files of a sensible size, JSON reports) and that the figures
they report lie in their valid ranges; the runs are seeded, so those figures
are the same however fast the machine is.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the examples extra (matplotlib) is not installed")
pytest.importorskip("sklearn", reason="the examples extra (scikit-learn) is not installed")
pytest.importorskip("tqdm", reason="the examples extra (tqdm) is not installed")

import matplotlib.image  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

SCRIPTS = ("textbook", "functional_transforms", "dcgan_digits", "segmentation", "checkerboard",
           "sharded_training", "unrolled_deconvolution", "multiprocess_training",
           "periodic_upsampling")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# Tiny settings: a few steps on small inputs, so each run is short on any machine; the work
# is bounded, not the time. Every run's --out is the test's own temporary folder.
RUNS = {
    "textbook": [],
    "functional_transforms": ["--size", "3", "--batch", "2", "--methods", "auto", "phase"],
    "dcgan_digits": ["--steps", "20", "--width", "8", "--batch", "16", "--classifier-steps",
                     "150", "--eval-samples", "100", "--method", "phase"],
    "segmentation": ["--size", "13", "--train", "32", "--test", "8", "--steps", "2",
                     "--width", "4", "--panels", "2"],
    "checkerboard": ["--samples", "4", "--steps", "2", "--width", "8"],
    # Size 26 as by default (26 -> 13 -> 7 -> 4), with JAX's default partitioner (Shardy).
    "sharded_training": ["--steps", "3", "--train", "16", "--batch", "8", "--size", "26",
                         "--width", "4", "--x64"],
    "unrolled_deconvolution": ["--steps", "5", "--unroll", "2", "--kernel", "3",
                               "--panels", "2"],
    # Two local processes of 2 CPU devices each, and the single-process run, in float64.
    "multiprocess_training": ["--processes", "2", "--local-devices", "2", "--steps", "3",
                              "--size", "8", "--width", "2", "--train", "16", "--batch", "8",
                              "--x64"],
    # 24 = 2 x 12: the interior (>= 4 * factor pixels from the edge) is not empty.
    "periodic_upsampling": ["--size", "24", "--factor", "2", "--train", "16", "--test", "8",
                            "--steps", "3", "--batch", "4", "--width", "4"],
}
# Added to the caller's XLA_FLAGS (kept, e.g. --xla_cpu_max_isa) for every example run: LLVM
# at optimisation level 0 halves the CPU time of these compile-bound runs (a third of it for
# multiprocess_training's three processes), and the figures checked here agree with the
# default level's to about 1e-7 relative. The runs check values, not speed.
XLA_FLAGS = "--xla_backend_optimization_level=0"


def python(args, label: str, env=None) -> str:
    """Run ``python ARGS`` from the repository root to its end (no time limit); return its
    stdout, or fail with the end of its stderr."""
    proc = subprocess.run([sys.executable, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=EXAMPLES.parent,
                          env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})
    assert proc.returncode == 0, f"{label} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc.stdout


def run_example(script: str, out: Path) -> str:
    """Run ``examples/SCRIPT.py`` with its tiny settings, writing to `out`; return its stdout."""
    args = [str(EXAMPLES / f"{script}.py"), "--out", str(out), "--no-progress", *RUNS[script]]
    flags = f"{os.environ.get('XLA_FLAGS', '')} {XLA_FLAGS}".strip()
    return python(args, script, {"XLA_FLAGS": flags})


def check_png(path: Path, min_side: int = 20) -> None:
    assert path.is_file(), f"missing {path.name}"
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG file"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= min_side, (path.name, image.shape)
    assert image.std() > 0, f"{path.name} is blank"


def check_lists_its_files(out: str, folder: Path) -> None:
    """The script printed ``wrote PATH`` for every file it wrote, and only for those."""
    listed = {Path(line.removeprefix("wrote ")).name for line in out.splitlines()
              if line.startswith("wrote ")}
    assert listed == {p.name for p in folder.iterdir()}, (listed, sorted(folder.iterdir()))


def read_json(path: Path):
    assert path.is_file(), f"missing {path.name}"
    return json.loads(path.read_text())


def test_textbook(tmp_path):
    out = run_example("textbook", tmp_path)
    check_lists_its_files(out, tmp_path)
    assert "[[1 2 3 0 4 5 6 0 7 8 9 0 0 0 0 0]" in out            # the 4x16 matrix, row 1
    diffs = [float(d) for d in re.findall(r"max \|diff\| = (\S+)", out)]
    assert len(diffs) >= 15 and max(diffs) < 1e-4, diffs
    assert read_json(tmp_path / "textbook.json")["max_abs_diff"] < 1e-4
    for name in ("textbook.png", "textbook_stride2.png"):
        check_png(tmp_path / name, min_side=200)


def test_functional_transforms(tmp_path):
    out = run_example("functional_transforms", tmp_path)
    check_lists_its_files(out, tmp_path)
    assert "FAIL" not in out
    report = read_json(tmp_path / "functional_transforms.json")
    assert set(report["checks"]) == {"auto", "phase"}
    for checks in report["checks"].values():
        assert len(checks) == 6 and all(0 <= d <= 1e-4 for d in checks.values()), checks
    check_png(tmp_path / "functional_transforms.png", min_side=200)


def test_dcgan_digits(tmp_path):
    out = run_example("dcgan_digits", tmp_path)
    check_lists_its_files(out, tmp_path)
    assert "Fréchet distance" in out
    report = read_json(tmp_path / "dcgan_digits.json")
    assert 0.8 <= report["classifier_accuracy"] <= 1.0
    for name in ("real", "trained", "untrained"):
        f = report["figures"][name]
        assert math.isfinite(f["frechet_distance"]) and f["frechet_distance"] >= 0, f
        assert 1.0 - 1e-6 <= f["classifier_score"] <= 10.0 + 1e-6, f
        assert 0.1 - 1e-6 <= f["mean_confidence"] <= 1.0 + 1e-6, f
        assert len(f["class_share"]) == 10 and abs(sum(f["class_share"]) - 1) < 1e-3, f
    real, untrained = report["figures"]["real"], report["figures"]["untrained"]
    assert real["frechet_distance"] < untrained["frechet_distance"]
    assert real["classifier_score"] > 5
    assert "Fréchet distance" in (tmp_path / "dcgan_digits.md").read_text()
    for name in ("dcgan_digits.png", "dcgan_digits_losses.png", "dcgan_digits_samples.png"):
        check_png(tmp_path / name)


def test_segmentation(tmp_path):
    out = run_example("segmentation", tmp_path)
    check_lists_its_files(out, tmp_path)
    assert "13 -> 7 -> 4 -> 2" in out                         # odd sizes on the way down
    report = read_json(tmp_path / "segmentation.json")
    assert set(report["results"]) == {"ConvTranspose", "ResizeConv"}
    for r in report["results"].values():
        assert 0 <= r["pixel_accuracy"] <= 1 and 0 <= r["mean_iou"] <= 1, r
        assert math.isfinite(r["final_loss"])
    table = (tmp_path / "segmentation.md").read_text()
    assert "| ConvTranspose |" in table and "| ResizeConv |" in table
    check_png(tmp_path / "segmentation.png", min_side=200)


def test_checkerboard(tmp_path):
    out = run_example("checkerboard", tmp_path)
    check_lists_its_files(out, tmp_path)
    report = read_json(tmp_path / "checkerboard.json")
    variants = [k for k in report if k != "targets"]
    assert len(variants) == 4
    for name in variants:
        for key in ("nyquist_init", "nyquist_trained", "high_band_init", "high_band_trained"):
            assert 0 <= report[name][key] <= 1, (name, key, report[name][key])
    # The measurable checkerboard: k3-s2 transposed convolution against resize-conv, at init.
    assert report["ConvTranspose k3 s2"]["nyquist_init"] > 10 * report["ResizeConv k3"][
        "nyquist_init"]
    assert report["SubPixelConv k3 + icnr"]["nyquist_init"] < 1e-6   # ICNR: exactly none
    check_png(tmp_path / "checkerboard.png", min_side=200)


def test_sharded_training(tmp_path):
    out = run_example("sharded_training", tmp_path)
    check_lists_its_files(out, tmp_path)
    assert out.startswith("8 devices: cpu")            # the script forced 8 virtual devices
    report = read_json(tmp_path / "sharded_training.json")
    assert report["devices"] == 8 and report["dtype"] == "float64"
    runs_ = report["runs"]
    assert runs_["1 device"]["shard_shape"] == [8, 26, 26, 1]
    assert runs_["data-parallel, mesh (8,)"]["shard_shape"] == [1, 26, 26, 1]
    assert runs_["data x space, mesh (4, 2)"]["shard_shape"] == [2, 13, 26, 1]
    for run in ("data-parallel, mesh (8,)", "data x space, mesh (4, 2)"):
        # float64: only the order of the sums differs from the single-device run.
        assert runs_[run]["max_loss_diff"] < 1e-10, runs_[run]
        assert runs_[run]["max_weight_diff"] < 1e-10, runs_[run]
        assert runs_[run]["losses_equal"] and runs_[run]["weights_equal"], runs_[run]
        # One verdict per quantity, each from its own figure and its own tolerance.
        block = out[out.index(f"\n{run}\n") + 1:].splitlines()[1:3]
        assert re.fullmatch(r"  losses: +max \|diff\| \S+; tolerance 1e-10: equal", block[0]), block
        assert re.fullmatch(r"  final weights: max \|diff\| \S+, \S+ of their change in training; "
                            r"tolerance 1e-10: equal", block[1]), block
    assert report["loss_tolerance"] == report["weight_tolerance"] == 1e-10
    check_png(tmp_path / "sharded_training.png", min_side=200)


def test_unrolled_deconvolution(tmp_path):
    out = run_example("unrolled_deconvolution", tmp_path)
    check_lists_its_files(out, tmp_path)
    assert re.search(r"^tied: \|C_k\| = \S+, \S+; step sizes = \S+, \S+$", out, re.MULTILINE), out
    report = read_json(tmp_path / "unrolled_deconvolution.json")
    results = report["results"]
    assert list(results) == ["bicubic", "untied", "tied"] and report["unroll"] == 2
    for r in results.values():
        assert 5 < r["psnr"] < 60 and -1 <= r["ssim"] <= 1 and len(r["psnr_each"]) == 2, r
    # One kernel per step, shared by C_k and its adjoint, plus the step sizes' alphas.
    assert results["tied"]["parameters"] == 2 * 9 + 2
    assert results["untied"]["parameters"] == 2 * 2 * 9 + 2
    for norm, eta in zip(results["tied"]["operator_norms"], results["tied"]["step_sizes"]):
        assert 0 < eta * norm ** 2 < 2 * (1 + 1e-3)         # eta = alpha / |C|^2, alpha < 2
    assert "| tied |" in (tmp_path / "unrolled_deconvolution.md").read_text()
    check_png(tmp_path / "unrolled_deconvolution.png", min_side=200)


def test_multiprocess_training(tmp_path):
    out = run_example("multiprocess_training", tmp_path)
    check_lists_its_files(out, tmp_path)
    assert out.startswith("2 processes x 2 CPU devices")
    for pid, rows in ((0, "0:4"), (1, "4:8")):       # each process builds its own rows
        assert (f"process {pid} of 2: 2 of 4 cpu devices, mesh {{'data': 4}}" in out
                and f"its rows {rows} of each global batch of 8" in out), out
    assert "every process ends with the same weights and losses: yes (bit for bit)" in out
    report = read_json(tmp_path / "multiprocess_training.json")
    assert report["processes"] == 2 and report["devices"] == 4 and report["dtype"] == "float64"
    assert report["identical_across_processes"]
    # float64: only the order of the sums differs from the single-process run (~1e-15).
    assert report["max_loss_diff"] < 1e-10 and report["max_weight_diff"] < 1e-10, report
    assert report["losses_equal"] and report["weights_equal"], report
    assert report["loss_tolerance"] == report["weight_tolerance"] == 1e-10
    assert len(report["losses"]) == 3 and all(math.isfinite(v) for v in report["losses"])
    for pid in (0, 1):
        assert (tmp_path / f"multiprocess_training_process{pid}.npz").is_file()
    check_png(tmp_path / "multiprocess_training.png", min_side=200)


def test_periodic_upsampling(tmp_path):
    out = run_example("periodic_upsampling", tmp_path)
    check_lists_its_files(out, tmp_path)
    report = read_json(tmp_path / "periodic_upsampling.json")
    assert report["settings"]["factor"] == 2 and report["settings"]["size"] == 24
    results = report["results"]
    assert set(results) == {"zeros", "circular"}
    for r in results.values():
        for key in ("mse", "border_mse", "interior_mse", "seam_ratio", "final_train_loss"):
            assert math.isfinite(r[key]) and r[key] > 0, (key, r)
        assert len(r["mse_by_input_pixels_to_edge"]) == 6           # 12 input pixels: 0..5
    # Circular padding makes the network commute with shifts (trained or not); zeros cannot.
    assert results["circular"]["shift_error"] < 1e-4, results["circular"]
    assert results["zeros"]["shift_error"] > 1e-3, results["zeros"]
    assert "| circular |" in out and "| zeros |" in out
    check_png(tmp_path / "periodic_upsampling.png", min_side=200)


def test_progress_bars_end_their_line_in_a_log():
    """Written to a file or pipe, a finished bar ends its line: what follows starts a new one,
    and what was printed before the bar comes before it."""
    code = (f"import sys; sys.path.insert(0, {str(EXAMPLES)!r}); import _common\n"
            "print('before')\n"
            "for _ in _common.progress(range(3), desc='bar', leave=False):\n"
            "    pass\n"
            "print('after')\n")
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert "before" in lines and "after" in lines, lines
    bar = next(j for j, line in enumerate(lines) if "bar" in line and "3/3" in line)
    assert lines.index("before") < bar < lines.index("after"), lines


def test_help():
    """Every script's --help, in one interpreter (each script's main(argv) parses argv)."""
    code = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(EXAMPLES)!r})\n"
        f"for name in {SCRIPTS!r}:\n"
        "    print('=== ' + name, flush=True)\n"
        f"    main = runpy.run_path({str(EXAMPLES)!r} + '/' + name + '.py')['main']\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (name, e.code)\n"
    )
    out = python(["-c", code], "--help of every example")
    parts = re.split(r"^=== (\w+)$", out, flags=re.MULTILINE)[1:]
    helps = dict(zip(parts[0::2], parts[1::2]))
    assert list(helps) == list(SCRIPTS), list(helps)
    for script, text in helps.items():
        assert text.strip().startswith("usage:"), (script, text[:200])
        assert "--out" in text and "--seed" in text and "--no-progress" in text, script
