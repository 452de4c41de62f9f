"""This machine's rates, measured once and remembered: what "auto" decides from on CPU.

A table of milliseconds measured on one CPU does not carry to another: on an
AVX2-only machine XLA:CPU's transposed-convolution formulations run at two
thirds of its matrix-product rate, on one with AVX-512 and AMX at about the
same rate (docs/performance.md). So "auto" asks *this* machine. `measure`
times, once, forward+backward of one reference layer (DCGAN's 16 -> 32 step,
k4 s2, 128 -> 64 channels, batch 4, channels-last) three ways:

- ``dot``: its three matrix products alone (``(N·∏i, C_in) @ (C_in, ∏k·C_out)``
  and the two of the gradients): the machine's limit for that arithmetic;
- ``conv``: the convolution formulation "auto" runs on 2-D layers otherwise
  (one input-dilated convolution, the strided convolution and the kernel
  gradient);
- ``products``: the "products" formulation: the same three matrix products,
  plus writing and reading its temporaries (P and the patches D, ``∏k / ∏s``
  times the output each).

They give three rates: the matrix-product and convolution rates in GFLOP/s
of useful arithmetic, and ``temp``, the GB/s at which the products'
temporaries cost time beyond the products themselves. `Rates.predict` turns
them into forward+backward times for any configuration: "products" takes
``3F / dot + B / temp`` (F the layer's useful FLOPs, B the bytes of P), a
convolution formulation ``3F / conv``; "auto" runs the faster.

The rates are measured (2-3 seconds on an idle 2-core CPU, mostly compiling;
longer on a loaded one; outside any trace) the first time
"auto" needs them on a machine, and kept in ``calibration.json`` beside the
tune cache (`jax_tconv._cache`), keyed by the machine: backend, device kind,
CPU model, cores, the ISA limit in ``XLA_FLAGS`` and the jax and jax_tconv
versions. ``JAX_TCONV_RATES="dot=GFLOPS,conv=GFLOPS,temp=GBS"`` fixes them
instead (reproducible choices, e.g. in tests, or to plan for another machine).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pathlib
import platform
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax_tconv._cache import cache_path, file_lock, outside_traces, write_json
from jax_tconv._spec import Spec, transpose_spec
from jax_tconv._version import __version__

__all__ = ["MAX_TEMP_BYTES", "RATES_ENV", "Rates", "calibration_path", "cpu_model", "isa_limit",
           "machine_key", "measure", "rates", "temporary_bytes"]

#: Environment variable fixing the rates: ``"dot=GFLOPS,conv=GFLOPS,temp=GBS"``, optionally
#: ``",conv3d=GFLOPS"`` (default: conv).
RATES_ENV = "JAX_TCONV_RATES"
#: "auto" runs "products" only where its temporary P (float32) is at most this many bytes:
#: the rates are measured on a 4 MiB one, and a layer whose P is gigabytes would hold
#: prod(k) / prod(s) times its output in memory where a convolution holds almost nothing.
MAX_TEMP_BYTES = 64 * 2**20
ROUNDS = 12
_FORMAT = "jax_tconv calibration"


@dataclasses.dataclass(frozen=True)
class Rates:
    """This machine's matrix-product and convolution-formulation rates (GFLOP/s of useful
    arithmetic) and the rate at which the products' temporaries cost time (GB/s)."""

    dot: float
    conv: float
    temp: float
    conv3d: float | None = None     # the convolution rate of 3-D layers (default: `conv`)
    source: str = "measured"

    def predict(self, spec: Spec, itemsize: int = 4) -> tuple[float, float]:
        """Predicted forward+backward milliseconds: ("products", a convolution formulation)."""
        flops, temp = _work(spec, itemsize)
        conv = self.conv3d if spec.num_spatial >= 3 and self.conv3d else self.conv
        return 3 * flops / (self.dot * 1e6) + temp / (self.temp * 1e6), \
            3 * flops / (conv * 1e6)

    def products_wins(self, spec: Spec) -> bool:
        """"products" predicted faster, and its temporary within `MAX_TEMP_BYTES`."""
        products, conv = self.predict(spec)
        return products < conv and temporary_bytes(spec) <= MAX_TEMP_BYTES

    def describe(self) -> str:
        conv3d = f" (3-D {self.conv3d:.0f})" if self.conv3d else ""
        return (f"matrix products {self.dot:.0f} GFLOP/s, convolution formulation "
                f"{self.conv:.0f}{conv3d} GFLOP/s, products' temporaries {self.temp:.0f} GB/s "
                f"({self.source})")


def temporary_bytes(spec: Spec, itemsize: int = 4) -> int:
    """Bytes of the "products" formulation's temporary P (and of the patches D)."""
    return _work(spec, itemsize)[1]


def _work(spec: Spec, itemsize: int = 4) -> tuple[int, int]:
    """(useful FLOPs of the forward pass, bytes of the products' temporary P). A symbolic
    batch size (`jax.export`'s shape polymorphism) counts as 1: the prediction's choice
    does not depend on it, and the temporary's bound then holds per example."""
    batch = spec.in_shape[spec.dn.out_spec[0]]
    n = (batch if isinstance(batch, int) else 1) * math.prod(spec.in_spatial)
    taps = math.prod(spec.kernel_size)
    flops = 2 * n * spec.in_channels * taps * spec.out_channels // spec.groups
    return flops, itemsize * n * taps * spec.out_channels


def cpu_model() -> str:
    """The CPU's model name, with its family and model numbers (which name its generation)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    name = fields.get("model name", platform.machine())
    if "cpu family" in fields:
        name += f" (family {fields['cpu family']} model {fields.get('model', '?')})"
    return name


def isa_limit() -> str | None:
    """The ISA that ``XLA_FLAGS=--xla_cpu_max_isa=...`` holds XLA:CPU to, if any."""
    return next((f.split("=", 1)[1] for f in os.environ.get("XLA_FLAGS", "").split()
                 if f.startswith("--xla_cpu_max_isa=")), None)


def machine_key(backend: str) -> str:
    """Everything the rates depend on, as one readable string."""
    return (f"backend={backend}; device={jax.devices(backend)[0].device_kind}; "
            f"cpu={cpu_model()}; cores={os.cpu_count()}; isa={isa_limit() or 'native'}; "
            f"jax={jax.__version__}; jax_tconv={__version__}")


def calibration_path() -> pathlib.Path:
    """``calibration.json`` beside the tune cache."""
    return cache_path().with_name("calibration.json")


def _best_ms(calls: dict[str, Any], rounds: int) -> dict[str, float]:
    """Each call's fastest time over `rounds` round-robin rounds (the least disturbed run:
    steadier than the median over a few milliseconds' calls)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):          # round-robin: a neighbour's load slows all alike
        for name, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * min(t) for name, t in times.items()}


#: The reference layer of `measure`: DCGAN's 16 -> 32 step at batch 4, channels-last.
REFERENCE: dict[str, Any] = dict(x=(4, 16, 16, 128), w=(4, 4, 64, 128), strides=2, padding=1)
#: The 3-D reference, for the convolution rate of 3-D layers (XLA:CPU's 3-D convolutions
#: run at their own rate): k4 s2 p1 on 8^3, 64 -> 32 channels, batch 2.
REFERENCE_3D: dict[str, Any] = dict(x=(2, 8, 8, 8, 64), w=(4, 4, 4, 32, 64), strides=2, padding=1)


def measure(conv: Callable, products: Callable, conv3d: Callable | None = None,
            backend: str = "cpu", rounds: int = ROUNDS) -> Rates:
    """Time the reference layers (module docstring) on `backend`: this machine's `Rates`.

    `conv`, `products` and `conv3d` (the 3-D convolution formulation; default `conv`) are
    formulations ``f(x, w, spec)``, passed in by the strategy layer, which owns them.
    """
    def work() -> Rates:
        device = jax.devices(backend)[0]
        rng = np.random.default_rng(0)

        def arr(*shape):
            return jax.device_put(jnp.asarray(rng.standard_normal(shape), jnp.float32), device)

        def step(f, ref):
            x, w = arr(*ref["x"]), arr(*ref["w"])
            spec = transpose_spec("auto_method", x, w, strides=ref["strides"],
                                  padding=ref["padding"], output_padding=0,
                                  output_shape=None, dilation=1, groups=1,
                                  dimension_numbers=None, precision=None,
                                  preferred_element_type=None)
            loss = lambda x, w, c: jnp.sum(f(x, w, spec) * c)  # noqa: E731
            call = functools.partial(jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), x, w,
                                     arr(*spec.out_shape))
            return call, spec

        m, c_in = math.prod(REFERENCE["x"][:3]), REFERENCE["x"][3]
        a, b, d = arr(m, c_in), arr(c_in, 16 * 64), arr(m, 16 * 64)
        calls = {"dot": functools.partial(jax.jit(lambda a, b, d: (a @ b, d @ b.T, a.T @ d)),
                                          a, b, d)}
        calls["conv"], spec = step(conv, REFERENCE)
        calls["products"], _ = step(products, REFERENCE)
        calls["conv3d"], spec3 = step(conv3d or conv, REFERENCE_3D)
        for call in calls.values():
            jax.block_until_ready(call())     # compile and warm up
        ms = _best_ms(calls, rounds)
        flops, temp = _work(spec)
        extra = max(ms["products"] - ms["dot"], 1e-3 * ms["dot"])  # the temporaries' cost
        return Rates(dot=3 * flops / (ms["dot"] * 1e6), conv=3 * flops / (ms["conv"] * 1e6),
                     temp=temp / (extra * 1e6),
                     conv3d=3 * _work(spec3)[0] / (ms["conv3d"] * 1e6))
    with jax.enable_x64(False):
        return outside_traces(work)


def _from_env(text: str) -> Rates:
    try:
        values = dict(item.split("=") for item in text.replace(" ", "").split(","))
        found = Rates(float(values["dot"]), float(values["conv"]), float(values["temp"]),
                      float(values.get("conv3d", values["conv"])),
                      source=f"{RATES_ENV}={text}")
        if min(found.dot, found.conv, found.temp, found.conv3d or 1) <= 0:
            raise ValueError("a rate is not positive")
        return found
    except (ValueError, KeyError) as e:
        raise ValueError(f"jax_tconv: {RATES_ENV}={text!r} is not 'dot=GFLOPS,conv=GFLOPS,"
                         f"temp=GBS' (three positive numbers), e.g. "
                         f"{RATES_ENV}='dot=150,conv=120,temp=40'; unset it to measure") from e


_LOCK = threading.Lock()
_MEMORY: dict[str, Rates] = {}


def rates(conv: Callable, products: Callable, conv3d: Callable | None = None,
          backend: str = "cpu") -> Rates:
    """This machine's rates: ``$JAX_TCONV_RATES``, else memory, else the file, else `measure`
    (of the formulations `conv`, `products` and `conv3d`)."""
    if os.environ.get(RATES_ENV):
        return _from_env(os.environ[RATES_ENV])
    key = machine_key(backend)
    with _LOCK:
        if key in _MEMORY:
            return _MEMORY[key]
        path = calibration_path()
        entry = _read(path).get(key)
        if entry is None:
            found = measure(conv, products, conv3d, backend)
            entry = {"dot": found.dot, "conv": found.conv, "temp": found.temp,
                     "conv3d": found.conv3d or found.conv}
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with file_lock(path):
                    write_json(path, {"format": _FORMAT, "entries": {**_read(path), key: entry}})
            except OSError as e:
                warnings.warn(f"jax_tconv: could not write the calibration file {path} ({e}); "
                              f"the rates are kept in memory for this process only",
                              UserWarning, stacklevel=3)
        _MEMORY[key] = Rates(entry["dot"], entry["conv"], entry["temp"], entry["conv3d"],
                             source=f"measured once, {path}")
        return _MEMORY[key]


def _read(path: pathlib.Path) -> dict[str, dict[str, float]]:
    """The file's valid entries (none if it is missing, corrupt or foreign: then measured again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return {}
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items()
            if isinstance(v, dict) and all(isinstance(v.get(f), int | float) and v[f] > 0
                                           for f in ("dot", "conv", "temp", "conv3d"))}
