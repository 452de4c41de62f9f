"""``method="tune"`` against ``method="auto"``: forward+backward time on the benchmark suite.

For every layer of ``python benchmarks/bench.py`` in both layouts (channels-last
and PyTorch's channels-first), this script lets "tune" measure its choice once
(into a fresh cache file unless ``JAX_TCONV_TUNE_CACHE`` is set), then times the
two side by side, round-robin (one call of each per round), forward and
``value_and_grad`` of ``sum(y * c)`` with respect to x and w (what training
runs). It prints, per row, what each runs, the median times, the ratio
tune / auto, and the geometric means. "tune" is meant to cost at most 1.05x
"auto" (it times "auto" among its candidates) and to win where auto's table
is wrong for the machine::

    python benchmarks/tune_vs_auto.py --rounds 15
    python benchmarks/tune_vs_auto.py --layers dcgan,3d --layouts nchw
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import jax_tconv
from bench import SUITE, dimension_numbers_for, to_nchw, layout_label


def _calls(layer, layout, method):
    kw = dict(strides=layer.s, padding=layer.p, output_padding=layer.op,
              dimension_numbers=dimension_numbers_for(layer.nd, layout), method=method)

    def fwd(x, w):
        return jax_tconv.conv_transpose(x, w, **kw)

    fb = jax.value_and_grad(lambda x, w, c: jnp.sum(fwd(x, w) * c), argnums=(0, 1))
    return jax.jit(fwd), jax.jit(fb), kw


def _median_ms(fns, rounds):
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f())
            times[k].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--layers", default="", help="comma-separated substrings of layer names")
    p.add_argument("--layouts", default="nhwc,nchw")
    a = p.parse_args(argv)
    if "JAX_TCONV_TUNE_CACHE" not in os.environ:
        os.environ["JAX_TCONV_TUNE_CACHE"] = os.path.join(tempfile.mkdtemp(), "tune.json")
    wanted = [s for s in a.layers.split(",") if s]
    layers = [L for L in SUITE if not wanted or any(s in L.name for s in wanted)]
    rng = np.random.default_rng(0)
    print(f"{platform.machine()} {platform.processor() or ''}, jax {jax.__version__} on "
          f"{jax.default_backend()}; float32; medians of {a.rounds} round-robin rounds; "
          f"cache {os.environ['JAX_TCONV_TUNE_CACHE']}")
    print("| layer | layout | auto runs | tune runs | tune s | auto fwd ms | tune fwd ms | "
          "fwd tune/auto | auto fwd+bwd ms | tune fwd+bwd ms | fwd+bwd tune/auto |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    ratios = {"fwd": [], "fwd+bwd": []}
    for layer in layers:
        x = jnp.asarray(rng.standard_normal((layer.batch, *layer.i, layer.c_in)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((*layer.k, layer.c_out, layer.c_in))
                        / math.sqrt(layer.c_in * math.prod(layer.k)), jnp.float32)
        for layout in a.layouts.split(","):
            xl, wl = (x, w) if layout == "nhwc" else (to_nchw(x, layer.nd),
                                                      to_nchw(w, layer.nd, kernel=True))
            fa, fba, kw = _calls(layer, layout, "auto")
            ft, fbt, _ = _calls(layer, layout, "tune")
            cot = jnp.ones(fa(xl, wl).shape, jnp.float32)
            t0 = time.perf_counter()
            jax.block_until_ready(fbt(xl, wl, cot))     # the first trace measures
            jax.block_until_ready(ft(xl, wl))
            tune_s = time.perf_counter() - t0
            jax.block_until_ready(fba(xl, wl, cot))
            choice_kw = {k: v for k, v in kw.items() if k != "method"}
            chose = jax_tconv.tune_choice(xl, wl, **choice_kw)
            auto = jax_tconv.auto_method(xl, wl, **choice_kw)
            ms = _median_ms({"af": lambda: fa(xl, wl), "tf": lambda: ft(xl, wl),
                             "ab": lambda: fba(xl, wl, cot), "tb": lambda: fbt(xl, wl, cot)},
                            a.rounds)
            rf, rb = ms["tf"] / ms["af"], ms["tb"] / ms["ab"]
            ratios["fwd"].append(rf)
            ratios["fwd+bwd"].append(rb)
            auto_runs = auto.method + (" (channels-last)" if auto.channels_last else "")
            print(f"| {layer.name} | {layout_label(layout, layer.nd)} | {auto_runs} | "
                  f"{chose.method} | {tune_s:.1f} | {ms['af']:.3f} | {ms['tf']:.3f} | {rf:.2f} | "
                  f"{ms['ab']:.3f} | {ms['tb']:.3f} | {rb:.2f} |", flush=True)
    for k, v in ratios.items():
        if v:
            gm = math.exp(sum(map(math.log, v)) / len(v))
            print(f"{k}: tune / auto geometric mean {gm:.3f}, from {min(v):.2f} to {max(v):.2f} "
                  f"over {len(v)} rows")


if __name__ == "__main__":
    main()
