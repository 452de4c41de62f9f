"""Sharded over 8 virtual CPU devices, every method gives the single-device result.

tests/sharding_check.py runs in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` so the rest of the suite
keeps its single device: on a 2 x 4 mesh with Explicit, Auto and mixed axes,
every method, "auto" and "tune" under jax.jit with batch-sharded inputs, a
kernel sharded over either channel axis, batch + channel, and spatially sharded
inputs (forward, both gradients, second order; the output's sharding against
lax's), jax.shard_map (data, model, data + model parallel) on Auto and Explicit
meshes, inputs placed by jax.sharding.reshard, and the layouts JAX refuses.
"""

import os
import pathlib
import subprocess
import sys

import jax_tconv

HERE = pathlib.Path(__file__).parent
METHODS = jax_tconv.METHODS + ("auto", "tune")
ENV = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
           JAX_PLATFORMS="cpu")


def run(script, *args, timeout=600):
    proc = subprocess.run([sys.executable, str(HERE / script), *args], env=ENV,
                          capture_output=True, text=True, timeout=timeout)
    return proc, proc.stdout + proc.stderr


def test_every_method_sharded_matches_single_device():
    # The dilated, output-padded layer (the other one runs with no arguments).
    proc, report = run("sharding_check.py", "k3_s2_p1_op1_d2")
    assert proc.returncode == 0, report
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("ok ", "MISMATCH "))]
    # Per method: jit x (3 meshes x 6 placements, less Auto x space), shard_map x 2 meshes x 3;
    # then a reshard and an eager call, and three refusals.
    assert len(lines) == (17 + 6) * len(METHODS) + 3 + 3, report
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
