"""Every method against PyTorch: stored golden values (no torch needed) and live draws.

tests/golden/torch_golden.npz is written by tests/make_golden.py (needs torch
2.13.0): 72 configurations over 1-, 2- and 3-D with groups, depthwise,
dilation, output_padding and asymmetric sizes, each with PyTorch's output and
its gradients for a fixed cotangent. jax_tconv takes PyTorch's own weight with
``dimension_numbers=('NCHW', 'OIHW', 'NCHW')`` (and the 1-D, 3-D analogues).
"""

from __future__ import annotations

import json
import pathlib

import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from hypothesis import given, note, settings
from make_golden import configs, random_config, torch_golden

import jax_tconv

GOLDEN = np.load(pathlib.Path(__file__).parent / "golden" / "torch_golden.npz")
NAMES = sorted(k.removeprefix("config/") for k in GOLDEN if k.startswith("config/"))
METHODS = jax_tconv.METHODS + ("auto",)
TOL = 3e-5


def dimension_numbers(nd):
    sp = "DHW"[3 - nd:]
    return (f"NC{sp}", f"OI{sp}", f"NC{sp}")


def values_and_grads(cfg):
    """jit(x, w, g -> {method: (y, dx, dw)}), PyTorch's layout and argument names.

    One program for all methods: one compilation per configuration.
    """
    kwargs = dict(strides=cfg["stride"], padding=cfg["padding"],
                  output_padding=cfg["output_padding"], dilation=cfg["dilation"],
                  groups=cfg["groups"], dimension_numbers=dimension_numbers(len(cfg["i"])))

    def run(x, w, g):
        out = {}
        for method in METHODS:
            f = lambda x, w, method=method: jax_tconv.conv_transpose(x, w, method=method, **kwargs)  # noqa: E731
            y, pullback = jax.vjp(f, x, w)
            out[method] = (y, *pullback(g))
        return out

    return jax.jit(run)


def assert_close(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=TOL, atol=TOL * scale, err_msg=what)


def check(cfg, data):
    results = values_and_grads(cfg)(data["x"], data["weight"], data["g"])
    for method, (y, dx, dw) in results.items():
        assert_close(y, data["y"], f"{method}: output")
        assert_close(dx, data["grad_x"], f"{method}: grad_x")
        assert_close(dw, data["grad_w"], f"{method}: grad_w")


def test_golden_file_covers_the_issue():
    """At least 60 configurations over 1-3 D with groups, dilation, output_padding; < 2 MB."""
    cfgs = [json.loads(str(GOLDEN[f"config/{n}"])) for n in NAMES]
    assert len(cfgs) >= 60
    assert {len(c["i"]) for c in cfgs} == {1, 2, 3}
    for nd in (1, 2, 3):
        of_rank = [c for c in cfgs if len(c["i"]) == nd]
        assert any(c["groups"] > 1 for c in of_rank)
        assert any(c["groups"] == c["cin"] > 1 for c in of_rank)       # depthwise
        assert any(max(c["dilation"]) > 1 for c in of_rank)
        assert any(max(c["output_padding"]) > 0 for c in of_rank)
        assert any(len(set(c["i"])) > 1 or len(set(c["k"])) > 1 for c in of_rank) or nd == 1
    assert (pathlib.Path(__file__).parent / "golden" / "torch_golden.npz").stat().st_size < 2e6
    # The stored configurations are the ones make_golden.py would write today.
    assert {n: json.loads(str(GOLDEN[f"config/{n}"])) for n in NAMES} == configs()


@pytest.mark.parametrize("name", NAMES)
def test_every_method_matches_torch_golden(name):
    cfg = json.loads(str(GOLDEN[f"config/{name}"]))
    data = {key: GOLDEN[f"{name}/{key}"] for key in ("x", "weight", "y", "g", "grad_x", "grad_w")}
    assert data["y"].shape[:2] == (cfg["batch"], cfg["cout"])
    check(cfg, data)


@settings(max_examples=max(1, settings.default.max_examples // 4))
@given(nd=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_every_method_matches_live_torch(nd, seed):
    """Freshly drawn configurations, computed by the installed torch."""
    pytest.importorskip("torch")
    cfg = random_config(np.random.default_rng(seed), nd)
    note(repr(cfg))
    check(cfg, torch_golden(cfg, seed))
