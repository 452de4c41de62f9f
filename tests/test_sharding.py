"""Sharded over 8 virtual CPU devices, every method gives the single-device result.

tests/sharding_check.py runs in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` so the rest of the suite
keeps its single device: on a 2 x 4 mesh with Explicit, Auto and mixed axes,
every method, "auto" and "tune" under jax.jit with batch-sharded inputs, a
kernel sharded over either channel axis, batch + channel, and spatially sharded
inputs (forward, both gradients, second order; the output's sharding against
lax's), jax.shard_map (data, model, data + model parallel) on Auto and Explicit
meshes, inputs placed by jax.sharding.reshard, one row per device, circular
padding, and the layouts JAX refuses; the Flax layers with partitioned
parameters (tests/layers_sharding_check.py); every block of docs/sharding.md on
8 devices; and, as strict xfails, the page's JAX-only reproductions of two XLA
partitioner bugs.
"""

import concurrent.futures
import os
import pathlib
import subprocess
import sys

import pytest

import jax_tconv

HERE = pathlib.Path(__file__).parent
METHODS = jax_tconv.METHODS + ("auto", "tune")
# LLVM at optimisation level 0: these programs check values and shardings, not speed, and
# compile in about half the time (XLA's partitioner, whose work they check, runs as ever).
ENV = dict(os.environ, JAX_PLATFORMS="cpu",
           XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")


def run(script, *args):
    """Run ``tests/SCRIPT ARGS`` on 8 devices to its end, however long that takes."""
    proc = subprocess.run([sys.executable, str(HERE / script), *args], env=ENV,
                          capture_output=True, text=True)
    return proc, proc.stdout + proc.stderr


def test_every_method_sharded_matches_single_device():
    # The dilated, output-padded layer (the other one runs with no arguments).
    proc, report = run("sharding_check.py", "k3_s2_p1_op1_d2")
    assert proc.returncode == 0, report
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("ok ", "MISMATCH "))]
    # Per method: jit x (3 meshes x 6 placements, less Auto x space), shard_map x 2 meshes x 3;
    # then a reshard and an eager call, one row per device, circular padding, three refusals.
    assert len(lines) == (17 + 6 + 2) * len(METHODS) + 3 + 3, report
    assert all(line.startswith("ok ") for line in lines), report
    for method in METHODS:
        assert any(line.startswith(f"ok jit explicit batch+channel k3_s2_p1_op1_d2 {method}")
                   for line in lines), method
        assert f"ok shard_map explicit batch+model k3_s2_p1_op1_d2 {method}" in lines
    # Second-order gradients: each method on every mesh kind.
    for method in METHODS:
        for kind in ("explicit", "auto", "mixed"):
            assert any(line.startswith(f"ok jit {kind} ") and line.split()[5:7] == [method, "+2nd"]
                       for line in lines), (method, kind)


def test_layers_with_partitioned_parameters_train_sharded():
    """linen and nnx ConvTranspose, with_partitioning on kernel and bias, explicit and auto."""
    proc, report = run("layers_sharding_check.py")
    assert proc.returncode == 0, report
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("ok ", "MISMATCH "))]
    assert len(lines) == 2 * 2 * 3 and all(line.startswith("ok ") for line in lines), report


# --- docs/sharding.md: its blocks need 8 devices, so they run here -----------------------------

PAGE = HERE.parent / "docs" / "sharding.md"
# The blocks reproducing XLA's bugs with plain JAX: each says so in its expected output.
XLA_BUG, SHARDY_BUG = "XLA's bug", "Shardy's bug"


def page_blocks():
    from test_docs import fenced_blocks

    return [(line, code) for info, line, code in fenced_blocks(PAGE.read_text())
            if info == "python no-run"]


def run_blocks(blocks):
    """Run each block in its own process on 8 devices, as many at once as there are cores,
    each to its end (no time limit); their stdout in order."""
    def one(block):
        line, code = block
        return subprocess.run([sys.executable, "-c", "\n" * (line - 1) + code], env=ENV,
                              capture_output=True, text=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        procs = list(pool.map(one, blocks))
    outs = []
    for (line, _), proc in zip(blocks, procs):
        if proc.returncode:  # not an AssertionError: the xfails below expect only their own
            pytest.fail(f"docs/sharding.md:{line} failed:\n{proc.stderr[-3000:]}")
        outs.append(proc.stdout)
    return outs


def test_sharding_page_blocks_print_what_they_say_on_8_devices():
    from test_docs import expected_output, matches

    blocks = [b for b in page_blocks() if XLA_BUG not in b[1] and SHARDY_BUG not in b[1]]
    assert len(blocks) >= 3
    for (line, code), out in zip(blocks, run_blocks(blocks)):
        printed, expected = out.splitlines(), expected_output(code)
        assert len(printed) == len(expected), (line, printed, expected)
        for got, want in zip(printed, expected):
            assert matches(got, want), f"docs/sharding.md:{line}: printed {got!r}, says {want!r}"


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="XLA's partitioner multiplies the kernel gradient of a spatially split "
                   "convolution by the size of a mesh axis the input is "
                   "replicated over (jax 0.10.2 and 0.12, Shardy and GSPMD); docs/sharding.md")
def test_xla_kernel_gradient_of_a_spatially_split_conv():
    """The JAX-only reproduction in docs/sharding.md: passes once a JAX release fixes it."""
    (block,) = [b for b in page_blocks() if XLA_BUG in b[1]]
    (out,) = run_blocks([block])
    single, split = out.split()
    if float(single) != 36.0:
        pytest.fail(f"one device: {single}, not 36.0")
    assert float(split) == float(single), f"split over devices: {split}, one device: {single}"


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="Shardy's halo exchange gets the input gradient wrong for "
                   "a convolution whose split spatial axis holds no more rows per device than "
                   "the kernel reaches across, the batch split over another axis (jax 0.10.2 "
                   "and 0.12; GSPMD is right); docs/sharding.md")
def test_shardy_input_gradient_with_one_row_per_device():
    """The JAX-only reproduction of examples/sharded_training.py's Shardy mismatch."""
    (block,) = [b for b in page_blocks() if SHARDY_BUG in b[1]]
    (out,) = run_blocks([block])
    single, shardy, gspmd = out.splitlines()
    if not single == gspmd == "[12. 12. 28. 28.]":
        pytest.fail(f"one device or GSPMD changed: {out}")
    assert shardy == single, f"Shardy: {shardy}, one device: {single}"
