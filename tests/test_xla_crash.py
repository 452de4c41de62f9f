"""No method may abort the process: XLA CHECK failures are hunted in a subprocess."""

import pathlib
import subprocess
import sys

import pytest

import jax_tconv

HUNT = pathlib.Path(__file__).with_name("crash_hunt.py")


@pytest.mark.parametrize("method", jax_tconv.METHODS + ("auto",))
def test_no_method_aborts_on_random_configurations(method):
    proc = subprocess.run([sys.executable, str(HUNT), "--methods", method, "--count", "12",
                           "--seed", "2026"], capture_output=True, text=True, timeout=600)
    last = proc.stdout.strip().splitlines()[-1:] or ["<nothing>"]
    assert proc.returncode == 0 and last == ["DONE"], (
        f"{method} aborted (rc={proc.returncode}) on: {last[0]}\n{proc.stderr[-2000:]}")
