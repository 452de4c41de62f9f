"""What a padding mode costs: each mode against 'zeros', forward and forward+backward.

A padding mode runs the zero-padding transposed convolution onto the whole
padded output and then folds the border back in (the padding's adjoint):
that is a few slices and adds on the border, so it should cost little more
than 'zeros'. This script measures it on layers of the benchmark suite
(``python benchmarks/bench.py``) that have padding, channels-last, float32:
for each layer, method and mode, the median time of the forward pass and of
``value_and_grad`` of ``sum(y * c)`` with respect to x and w (what training
runs), all timed round-robin (one call of each per round) so that a noisy
neighbour slows them alike. It prints the ratio to 'zeros' per layer and the
geometric mean, and writes them as JSON. The "uncropped / o" column is the
area of the uncropped output, which the formulations compute with a mode,
over the output's, which they compute with 'zeros': ``prod((o + lo + hi) / o)``
over the dimensions (a dense formulation's work grows by about that much)::

    python benchmarks/padding_modes.py                  # "auto", 5 layers, 15 rounds
    python benchmarks/padding_modes.py --methods auto phase dilated vjp --rounds 25
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jax_tconv
from bench import SUITE  # the layers of ``python benchmarks/bench.py``

MODES = ("zeros", "circular", "reflect", "replicate")
DEFAULT_LAYERS = ("dcgan 16->32 128->64", "dcgan 32->64 64->3", "fcn k3s2p1op1 16->32 64->32",
                  "audio1d k16s8 256->2048 64->32", "3d k4s2p1 8->16 16->8")


def calls(layer, method: str, mode: str, rng):
    """(forward, forward+backward) zero-argument calls of one configuration, jitted."""
    x = jnp.asarray(rng.standard_normal((layer.batch, *layer.i, layer.c_in)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((*layer.k, layer.c_out, layer.c_in))
                    / math.sqrt(math.prod(layer.k) * layer.c_in), jnp.float32)
    f = functools.partial(jax_tconv.conv_transpose, strides=layer.s, padding=layer.p,
                          output_padding=layer.op, method=method, padding_mode=mode)
    c = jnp.asarray(rng.standard_normal(jax.eval_shape(f, x, w).shape), jnp.float32)
    fwd = jax.jit(f)
    fwd_bwd = jax.jit(jax.value_and_grad(lambda x, w, c: jnp.sum(f(x, w) * c), argnums=(0, 1)))
    return functools.partial(fwd, x, w), functools.partial(fwd_bwd, x, w, c)


def timed(call) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    return time.perf_counter() - t0


def measure(layer, method: str, rounds: int) -> dict[str, dict[str, float]]:
    """{mode: {"fwd_ms", "fwd_bwd_ms"}}: medians over `rounds` round-robin calls."""
    rng = np.random.default_rng(0)
    pairs = {mode: calls(layer, method, mode, rng) for mode in MODES}
    for fwd, fwd_bwd in pairs.values():      # compile and warm up
        timed(fwd), timed(fwd_bwd)
    samples: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in MODES}
    for _ in range(rounds):
        for mode, (fwd, fwd_bwd) in pairs.items():
            samples[mode][0].append(timed(fwd))
            samples[mode][1].append(timed(fwd_bwd))
    return {mode: {"fwd_ms": 1e3 * statistics.median(f), "fwd_bwd_ms": 1e3 * statistics.median(b)}
            for mode, (f, b) in samples.items()}


def uncropped_area(layer) -> float:
    """prod((o + lo + hi) / o): the uncropped output's area over the output's."""
    ratio = 1.0
    for i, k in zip(layer.i, layer.k):
        o = (i - 1) * layer.s - 2 * layer.p + k + layer.op
        ratio *= (o + 2 * layer.p) / o
    return ratio


def geomean(values) -> float:
    values = list(values)
    return math.exp(sum(map(math.log, values)) / len(values))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["auto"],
                   choices=["auto", *jax_tconv.METHODS])
    p.add_argument("--layers", nargs="+", default=list(DEFAULT_LAYERS),
                   help="names of layers of the bench suite (jax_tconv/_suite.py SUITE)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out", type=Path, default=Path("benchmarks/padding_modes.json"))
    args = p.parse_args(argv)
    by_name = {layer.name: layer for layer in SUITE}
    unknown = [n for n in args.layers if n not in by_name]
    if unknown:
        p.error(f"unknown layers {unknown}; the suite has {list(by_name)}")

    machine = (f"{platform.processor() or platform.machine()}, jax {jax.__version__} on "
               f"{jax.default_backend()} ({jax.devices()[0].device_kind})")
    print(f"{machine}; float32; median of {args.rounds} round-robin rounds")
    report: dict = {"machine": machine, "rounds": args.rounds, "results": {}}
    for method in args.methods:
        print(f"\nmethod={method!r}: time with the mode / time with 'zeros'")
        print("| layer | uncropped / o | " + " | ".join(f"{m} fwd | {m} fwd+bwd" for m in MODES[1:])
              + " | zeros fwd ms | zeros fwd+bwd ms |")
        print("|---|" + "---:|" * (2 * len(MODES) - 2 + 3))
        rows = {}
        for name in args.layers:
            t = measure(by_name[name], method, args.rounds)
            ratios = {m: {k: t[m][k] / t["zeros"][k] for k in ("fwd_ms", "fwd_bwd_ms")}
                      for m in MODES[1:]}
            area = uncropped_area(by_name[name])
            rows[name] = {"ms": t, "ratio": ratios, "uncropped_area": area}
            print(f"| {name} | {area:.2f} | " + " | ".join(f"{ratios[m]['fwd_ms']:.2f} | "
                                            f"{ratios[m]['fwd_bwd_ms']:.2f}" for m in MODES[1:])
                  + f" | {t['zeros']['fwd_ms']:.2f} | {t['zeros']['fwd_bwd_ms']:.2f} |",
                  flush=True)
        means = {m: {k: geomean(r["ratio"][m][k] for r in rows.values())
                     for k in ("fwd_ms", "fwd_bwd_ms")} for m in MODES[1:]}
        print("| **geometric mean** | | " + " | ".join(
            f"**{means[m]['fwd_ms']:.2f}** | **{means[m]['fwd_bwd_ms']:.2f}**" for m in MODES[1:])
            + " | | |")
        report["results"][method] = {"layers": rows, "geomean": means}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
