"""The machine calibration "auto" decides from: measured once, cached, overridable, used."""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import pytest

import jax_tconv
from jax_tconv import _cache, _calibrate, _strategy
from jax_tconv._spec import transpose_spec


def _spec(x_shape, w_shape, **kw):
    args = dict(strides=1, padding=0, output_padding=0, output_shape=None, dilation=1,
                groups=1, dimension_numbers=None, precision=None, preferred_element_type=None)
    args.update(kw)
    return transpose_spec("test", jnp.zeros(x_shape), jnp.zeros(w_shape), **args)


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """No rates in the environment, an empty cache folder, nothing in memory."""
    monkeypatch.delenv(_calibrate.RATES_ENV, raising=False)
    monkeypatch.setenv(_cache.CACHE_ENV, str(tmp_path / "tune.json"))
    monkeypatch.setattr(_calibrate, "_MEMORY", {})
    return tmp_path / "calibration.json"


def _formulations():
    return (_strategy.AUTO_FORWARDS["dilated"], _strategy.FORMULATIONS["products"],
            _strategy.AUTO_FORWARDS["phase"])


def test_measured_once_then_read_from_memory_and_file(fresh, monkeypatch):
    rates = _calibrate.rates(*_formulations())
    assert all(math.isfinite(v) and v > 0
               for v in (rates.dot, rates.conv, rates.temp, rates.conv3d))
    data = json.loads(fresh.read_text())
    key = _calibrate.machine_key("cpu")
    assert data["format"] == "jax_tconv calibration" and set(data["entries"]) == {key}
    assert "isa=native" in key and "cpu=" in key and "jax=" in key
    # From memory, then (a new process, emulated) from the file: nothing measured again.
    monkeypatch.setattr(_calibrate, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert _calibrate.rates(*_formulations()) == rates
    monkeypatch.setattr(_calibrate, "_MEMORY", {})
    again = _calibrate.rates(*_formulations())
    assert (again.dot, again.conv, again.temp, again.conv3d) == (rates.dot, rates.conv,
                                                                  rates.temp, rates.conv3d)


def test_an_isa_limit_is_another_machine(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX2")
    assert "isa=AVX2" in _calibrate.machine_key("cpu")


def test_a_corrupt_file_is_measured_again(fresh, monkeypatch):
    fresh.write_text("{not json")
    monkeypatch.setattr(_calibrate, "measure",
                        lambda *a, **k: _calibrate.Rates(100.0, 50.0, 10.0, 40.0))
    assert _calibrate.rates(*_formulations()).dot == 100.0
    assert json.loads(fresh.read_text())["format"] == "jax_tconv calibration"


def test_rates_from_the_environment(monkeypatch):
    monkeypatch.setenv(_calibrate.RATES_ENV, "dot=200, conv=50,temp=8")
    rates = _calibrate.rates(*_formulations())
    assert (rates.dot, rates.conv, rates.temp, rates.conv3d) == (200.0, 50.0, 8.0, 50.0)
    monkeypatch.setenv(_calibrate.RATES_ENV, "dot=200,conv=50,temp=8,conv3d=20")
    assert _calibrate.rates(*_formulations()).conv3d == 20.0
    for bad in ("dot=1,conv=2", "dot=a,conv=1,temp=1", "dot=0,conv=1,temp=1"):
        monkeypatch.setenv(_calibrate.RATES_ENV, bad)
        with pytest.raises(ValueError, match=r"JAX_TCONV_RATES=.*dot=GFLOPS,conv=GFLOPS,temp=GBS"
                                             r".*unset it to measure"):
            _calibrate.rates(*_formulations())


def test_the_prediction_by_hand():
    """DCGAN 8 -> 16, 256 -> 128 channels, k4 s2, batch 8: F = 2*8*64*256*16*128 FLOPs,
    P holds 8*64*16*128 float32 values."""
    spec = _spec((8, 8, 8, 256), (4, 4, 128, 256), strides=2, padding=1)
    rates = _calibrate.Rates(dot=100.0, conv=50.0, temp=4.0)
    flops, temp = 2 * 8 * 64 * 256 * 16 * 128, 4 * 8 * 64 * 16 * 128
    products, conv = rates.predict(spec)
    assert products == pytest.approx(3 * flops / 100e6 + temp / 4e6)
    assert conv == pytest.approx(3 * flops / 50e6)
    assert rates.products_wins(spec)
    # The same machine with few input channels: the temporaries dominate.
    narrow = _spec((8, 8, 8, 4), (4, 4, 128, 4), strides=2, padding=1)
    assert not rates.products_wins(narrow)
    # A temporary over MAX_TEMP_BYTES: never, however fast the products.
    huge = _spec((64, 64, 64, 128), (4, 4, 128, 128), strides=2, padding=1)
    assert _calibrate.temporary_bytes(huge) == 4 * 64 * 64 * 64 * 16 * 128
    assert not _calibrate.Rates(dot=1000.0, conv=1.0, temp=1000.0).products_wins(huge)
    # 3-D layers are predicted with the 3-D convolution rate.
    vol = _spec((2, 8, 8, 8, 16), (4, 4, 4, 8, 16), strides=2, padding=1)
    assert _calibrate.Rates(100.0, 50.0, 4.0, conv3d=10.0).predict(vol)[1] == pytest.approx(
        5 * _calibrate.Rates(100.0, 50.0, 4.0).predict(vol)[1])


@pytest.mark.parametrize("rates,expect", [("dot=400,conv=100,temp=50", "products"),
                                          ("dot=100,conv=400,temp=50", "dilated")])
def test_auto_follows_the_machine(monkeypatch, rates, expect):
    monkeypatch.setenv(_calibrate.RATES_ENV, rates)
    x, w = jnp.ones((2, 8, 8, 64)), jnp.ones((4, 4, 32, 64))
    choice = jax_tconv.auto_method(x, w, strides=2, padding=1, backend="cpu")
    assert choice.method == expect
    assert "this machine" in choice.reason and "GFLOP/s" in choice.reason
    # Every layout of the geometry gets the same choice; the result is the formulation's.
    xn, wn = jnp.moveaxis(x, -1, 1), jnp.transpose(w, (3, 2, 0, 1))
    dn = ("NCHW", "OIHW", "NCHW")
    assert jax_tconv.auto_method(xn, wn, strides=2, padding=1, dimension_numbers=dn,
                                 backend="cpu").method == expect
    got = jax_tconv.conv_transpose(xn, wn, strides=2, padding=1, dimension_numbers=dn)
    want = jax_tconv.conv_transpose(xn, wn, strides=2, padding=1, dimension_numbers=dn,
                                    method="matmul")
    assert float(jnp.abs(got - want).max()) <= 1e-4 * float(jnp.abs(want).max())


def test_other_backends_do_not_calibrate(monkeypatch):
    monkeypatch.setattr(_calibrate, "rates", lambda *a, **k: pytest.fail("calibrated"))
    x, w = jnp.ones((2, 8, 8, 64)), jnp.ones((4, 4, 32, 64))
    assert jax_tconv.auto_method(x, w, strides=2, backend="gpu").method == "vjp"
