"""Padding modes against PyTorch: stored golden values, no torch needed.

tests/golden/torch_padding_modes.npz is written by tests/make_golden_modes.py
(torch 2.13.0): for each of 'circular', 'reflect' and 'replicate', in 1-, 2- and
3-D, PyTorch's ``F.conv{n}d(F.pad(u, pads, mode), ...)``, the gradient of
``<C(u), x>`` with respect to ``u`` (the transposed convolution, which PyTorch's
ConvTranspose cannot compute: pytorch#46027) and its gradients with respect to
x and the weight by double backward. Every method must reproduce all of them
from PyTorch's own Conv weight, with ``dimension_numbers=('NC..', 'OI..', 'NC..')``.
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import pytest
from make_golden_modes import CONFIGS

import jax_tconv

GOLDEN = np.load(pathlib.Path(__file__).parent / "golden" / "torch_padding_modes.npz")
NAMES = sorted(k.removeprefix("config/") for k in GOLDEN if k.startswith("config/"))
METHODS = jax_tconv.METHODS + ("auto",)
TOL = 3e-5
KEYS = ("u", "conv", "x", "weight", "y", "g", "grad_x", "grad_w")


def dimension_numbers(nd):
    sp = "DHW"[3 - nd:]
    return (f"NC{sp}", f"OI{sp}", f"NC{sp}")


def assert_close(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=TOL, atol=TOL * scale, err_msg=what)


def test_golden_file_covers_every_mode_and_rank():
    cfgs = [json.loads(str(GOLDEN[f"config/{n}"])) for n in NAMES]
    assert {(c["mode"], len(c["o"])) for c in cfgs} == {
        (m, nd) for m in ("circular", "reflect", "replicate") for nd in (1, 2, 3)}
    assert any(c["groups"] > 1 for c in cfgs) and any(max(c["dilation"]) > 1 for c in cfgs)
    assert any(lo != hi for c in cfgs for lo, hi in c["pads"])
    # The stored configurations are the ones make_golden_modes.py would write today.
    assert {n: json.loads(str(GOLDEN[f"config/{n}"])) for n in NAMES} == CONFIGS


@pytest.mark.parametrize("name", NAMES)
def test_every_method_matches_torch(name):
    cfg = json.loads(str(GOLDEN[f"config/{name}"]))
    data = {key: GOLDEN[f"{name}/{key}"] for key in KEYS}
    nd, pads = len(cfg["o"]), [tuple(p) for p in cfg["pads"]]
    kwargs = dict(strides=cfg["stride"], padding=pads, padding_mode=cfg["mode"],
                  dilation=cfg["dilation"], groups=cfg["groups"],
                  dimension_numbers=dimension_numbers(nd))

    def run(u, x, w, g):
        out = {"conv": jax_tconv.conv(u, w, **kwargs)}
        for method in METHODS:
            f = lambda x, w, method=method: jax_tconv.conv_transpose(  # noqa: E731
                x, w, method=method, output_shape=u.shape[2:], **kwargs)
            y, pullback = jax.vjp(f, x, w)
            out[method] = (y, *pullback(g))
        return out

    out = jax.jit(run)(data["u"], data["x"], data["weight"], data["g"])
    assert_close(out.pop("conv"), data["conv"], "conv")
    for method, (y, dx, dw) in out.items():
        assert_close(y, data["y"], f"{method}: output")
        assert_close(dx, data["grad_x"], f"{method}: grad_x")
        assert_close(dw, data["grad_w"], f"{method}: grad_w")
