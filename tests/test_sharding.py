"""Sharded over 8 virtual CPU devices, every method gives the single-device result.

tests/sharding_check.py runs in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` so the rest of the suite
keeps its single device: jax.jit with NamedSharding (batch-sharded input,
channel-sharded kernel, both on a 2 x 4 mesh, spatially sharded input) and
jax.shard_map (data, model, data + model parallel), forward and gradients.
"""

import os
import pathlib
import subprocess
import sys

import jax_tconv

SCRIPT = pathlib.Path(__file__).parent / "sharding_check.py"
METHODS = jax_tconv.METHODS + ("auto",)


def test_every_method_sharded_matches_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    # The dilated, output-padded layer (the other one runs with no arguments).
    proc = subprocess.run([sys.executable, str(SCRIPT), "k3_s2_p1_op1_d2"], env=env,
                          capture_output=True, text=True, timeout=600)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("ok ", "MISMATCH "))]
    # Per method: jit x {batch, model, batch+model, spatial}, shard_map x 3.
    assert len(lines) == 7 * len(METHODS), report
    assert all(line.startswith("ok ") for line in lines), report
    for method in METHODS:
        assert f"ok shard_map batch+model k3_s2_p1_op1_d2 {method}" in lines
