"""Compile time and program size of ``method="auto"`` against ``lax.conv_transpose``.

On large-stride layers (2-D k32 s16, 3-D k8 s4, 1-D k64 s32) and on the benchmark
suite's layers, both layouts, this script lowers and compiles, from scratch each
time, the forward pass and ``value_and_grad`` of ``sum(y * c)`` with respect to x
and w, for jax_tconv's "auto" and for ``lax.conv_transpose`` (``transpose_kernel=True``,
the same operator), and prints the median compile seconds, the ratio, the
target ``2 x lax + 0.5 s``, and the number of instructions in the optimised
program (a form whose size grew with ``s**n``, such as one sub-convolution per
phase, would show there)::

    python benchmarks/compile_time.py --repeats 3
    python benchmarks/compile_time.py --suite        # the benchmark suite's layers too
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jax_tconv
from bench import SUITE, Layer, dimension_numbers_for, to_nchw, layout_label

LARGE_STRIDE = [
    Layer("2d k32 s16 8->128 16->8", 2, (8, 8), 16, 8, (32, 32), 16, 8),
    Layer("3d k8 s4 4->16 16->8", 2, (4, 4, 4), 16, 8, (8, 8, 8), 4, 2),
    Layer("1d k64 s32 64->2048 32->16", 2, (64,), 32, 16, (64,), 32, 16),
]


def _fns(layer, layout, which):
    nd, dn = layer.nd, dimension_numbers_for(layer.nd, layout)
    if which == "auto":
        def fwd(x, w):
            return jax_tconv.conv_transpose(x, w, strides=layer.s, padding=layer.p,
                                            output_padding=layer.op, dimension_numbers=dn)
    else:
        # lax's padding is that of the zero-inserted input: k - 1 - p, k - 1 - p + op.
        lax_pads = [(k - 1 - layer.p, k - 1 - layer.p + layer.op) for k in layer.k]

        def fwd(x, w):
            return lax.conv_transpose(x, w, (layer.s,) * nd, lax_pads, dimension_numbers=dn,
                                      transpose_kernel=True)

    fb = jax.value_and_grad(lambda x, w, c: jnp.sum(fwd(x, w) * c), argnums=(0, 1))
    return fwd, fb


def _compile(fn, *args):
    """Seconds to trace, lower and compile `fn` from nothing, and the optimised program's size.

    JAX caches traces, lowerings and executables (jax_tconv's formulations are jitted
    functions of their own), so every cache is cleared first: this is what a first call
    costs.
    """
    jax.clear_caches()
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - t0
    text = compiled.as_text() or ""
    instructions = sum(1 for line in text.splitlines() if " = " in line)
    return seconds, instructions


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="compiles per row; the median is kept")
    p.add_argument("--suite", action="store_true", help="the benchmark suite's layers too")
    p.add_argument("--layouts", default="nhwc,nchw")
    a = p.parse_args(argv)
    layers = LARGE_STRIDE + (SUITE if a.suite else [])
    rng = np.random.default_rng(0)
    print(f"{platform.machine()}, jax {jax.__version__} on {jax.default_backend()}; float32; "
          f"median of {a.repeats} compiles per cell")
    print("| layer | layout | pass | auto runs | auto s | lax s | auto / lax | "
          "target s (2 lax + 0.5) | met | auto instr | lax instr |")
    print("|---|---|---|---|---:|---:|---:|---:|---|---:|---:|")
    met = []
    for layer in layers:
        x = jnp.asarray(rng.standard_normal((layer.batch, *layer.i, layer.c_in)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((*layer.k, layer.c_out, layer.c_in)), jnp.float32)
        for layout in a.layouts.split(","):
            xl, wl = (x, w) if layout == "nhwc" else (to_nchw(x, layer.nd),
                                                      to_nchw(w, layer.nd, kernel=True))
            dn = dimension_numbers_for(layer.nd, layout)
            choice = jax_tconv.auto_method(xl, wl, strides=layer.s, padding=layer.p,
                                           output_padding=layer.op, dimension_numbers=dn)
            y = jax_tconv.conv_transpose(xl, wl, strides=layer.s, padding=layer.p,
                                         output_padding=layer.op, dimension_numbers=dn)
            cot = jnp.ones(y.shape, jnp.float32)
            f_auto, fb_auto = _fns(layer, layout, "auto")
            f_lax, fb_lax = _fns(layer, layout, "lax")
            for pass_, fa, fl, args in (("fwd", f_auto, f_lax, (xl, wl)),
                                        ("fwd+bwd", fb_auto, fb_lax, (xl, wl, cot))):
                ra = [_compile(fa, *args) for _ in range(a.repeats)]
                rl = [_compile(fl, *args) for _ in range(a.repeats)]
                sa, sl = (statistics.median(r[0] for r in rs) for rs in (ra, rl))
                target = 2 * sl + 0.5
                met.append(sa <= target)
                print(f"| {layer.name} | {layout_label(layout, layer.nd)} | {pass_} | "
                      f"{choice.method} | {sa:.2f} | {sl:.2f} | {sa / sl:.2f} | {target:.2f} | "
                      f"{'yes' if sa <= target else 'NO'} | {ra[0][1]} | {rl[0][1]} |",
                      flush=True)
    print(f"auto within 2 x lax + 0.5 s on {sum(met)} of {len(met)} rows")


if __name__ == "__main__":
    main()
