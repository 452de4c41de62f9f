"""``python benchmarks/bench.py``: every method against lax, Flax, PyTorch and the anchor.

The anchor is the forward strided convolution whose adjoint the layer is: it
does exactly the useful multiply-adds of the transposed convolution, so
"ratio to anchor" says how close a method comes to the cost of the
arithmetic itself. Contestants are timed round-robin (one call each per round)
so that a noisy neighbour slows all of them alike; the table reports medians.

Each layer runs in the layouts asked for: channels-last (``nhwc``: NWC, NHWC,
NDHWC by rank, kernel ``(*k, C_out, C_in)``) and channels-first (``nchw``:
PyTorch's NCW, NCHW, NCDHW, kernel ``(C_in, C_out, *k)`` as PyTorch stores
it). Every row also states its useful FLOP rate as a share of the machine's
matrix-product rate, a large `jnp.dot` timed in the same round-robin (`Peak`),
so that both are measured under the same load.

The roofline of each layer (`roofline_calls`) is the limit of *this* machine
for *this* layer's arithmetic: XLA's `jnp.dot` doing exactly the layer's
multiply-adds as matrix products, ``(N·∏i, C_in) @ (C_in, ∏k·C_out)`` for the
forward pass and that product plus the two of its gradients for
forward+backward, timed in the same round-robin; or, where it is slower, the
bytes the layer must read and write at the rate of a same-run copy (`Copy`:
the RGB output layer is memory-bound). "auto / roofline" is a ratio of two
times from one run, so it carries from one CPU to another where a table of
milliseconds does not.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jax_tconv
from jax_tconv.__main__ import HelpFormatter, wrap  # the package's CLI style
from jax_tconv._calibrate import cpu_model, isa_limit
from jax_tconv._spec import transpose_spec
from jax_tconv._suite import SUITE, Layer


LAYOUTS = ("nhwc", "nchw")
ROOFLINE = "roofline"      # the layer's matrix products (not a contestant: the machine's limit)
#: XLA and oneDNN held to AVX2 (``--isa avx2``): a machine without AVX-512 or AMX, emulated.
AVX2_ENV = {"XLA_FLAGS": "--xla_cpu_max_isa=AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# Flax's nn.ConvTranspose has no layout option; PyTorch's conv_transpose is channels-first.
FIXED_LAYOUT = {"flax": "nhwc", "torch": "nchw"}
NO_TORCH_NOTE = ("PyTorch is not installed: it is left out of the comparison (pip install "
                 "torch to include it)")
FLAX_NOTE = ("Flax's nn.ConvTranspose has no layout option: in the NCHW rows it runs on "
             "channels-last (NHWC) arrays, as in the NHWC rows. PyTorch runs its native NCHW in "
             "both.")


def dimension_numbers_for(nd, layout="nhwc"):
    """Dimension numbers of the transposed conv (and of its anchor) in `layout`.

    The kernel spec names the *forward* conv's kernel: 'O' is x's channel axis,
    so ``OIHW`` is PyTorch's ``ConvTranspose`` weight ``(C_in, C_out, *k)``.
    """
    sp = "DHW"[3 - nd:]
    if layout == "nhwc":
        return (f"N{sp}C", f"{sp}IO", f"N{sp}C")
    return (f"NC{sp}", f"OI{sp}", f"NC{sp}")


def to_nchw(a, nd, kernel=False):
    """A channels-last array (or ``(*k, C_out, C_in)`` kernel) in channels-first order."""
    if kernel:
        return jnp.transpose(a, (nd + 1, nd, *range(nd)))
    return jnp.moveaxis(a, -1, 1)


def layout_label(layout, nd=2):
    """'NHWC'/'NCHW' for a rank (NWC, NCDHW, ...)."""
    return dimension_numbers_for(nd, layout)[0]


class _Call:
    """A jitted function with its arguments: every array is an argument, never a constant
    that XLA could fold or pre-transform at compile time."""

    def __init__(self, fn, *args):
        self.fn, self.args = jax.jit(fn), args

    def __call__(self):
        return self.fn(*self.args)

    def lower(self):
        return self.fn.lower(*self.args)


def _loss_grad(f):
    """Forward+backward: the loss value keeps the forward alive (its gradient needs no y)."""
    return jax.value_and_grad(lambda a, w, c: jnp.sum(f(a, w) * c), argnums=(0, 1))


def _contestants(layer: Layer, arrays, dtype, with_torch, layout="nhwc"):
    """name -> (forward call, forward+backward call), every jax contestant in `layout`.

    `arrays` maps each layout to its ``(x, w, cot)``; Flax always gets the
    channels-last ones and PyTorch the channels-first ones (`FIXED_LAYOUT`).
    """
    nd, dn = layer.nd, dimension_numbers_for(layer.nd, layout)
    x, w, cot = arrays[layout]
    kw = dict(strides=layer.s, padding=layer.p, output_padding=layer.op, dimension_numbers=dn)

    def pair(f, a=x, kernel=w, c=cot):
        return _Call(f, a, kernel), _Call(_loss_grad(f), a, kernel, c)

    out = {ROOFLINE: roofline_calls(layer, dtype)}
    for method in jax_tconv.METHODS + ("auto",):
        out[method] = pair(functools.partial(jax_tconv.conv_transpose, method=method, **kw))
    # lax.conv_transpose pads the dilated input: d*(k-1) - p below, d*(k-1) - p + op above.
    lax_pad = [(k - 1 - layer.p, k - 1 - layer.p + layer.op) for k in layer.k]

    def lax_f(x, w):
        return lax.conv_transpose(x, w, (layer.s,) * nd, lax_pad, dimension_numbers=dn,
                                  transpose_kernel=True)
    out["lax"] = pair(lax_f)

    import flax.linen as nn
    module = nn.ConvTranspose(layer.c_out, layer.k, (layer.s,) * nd, padding=lax_pad,
                              transpose_kernel=True, use_bias=False, dtype=dtype,
                              param_dtype=dtype)
    out["flax"] = pair(lambda x, w: module.apply({"params": {"kernel": w}}, x),
                       *arrays[FIXED_LAYOUT["flax"]])

    # The anchor: the forward conv y -> x (same multiply-adds), and its gradients.
    spec = transpose_spec("bench", x, w, precision=None, preferred_element_type=None,
                          output_shape=None, dilation=1, groups=1, **kw)

    def anchor_f(y, w):
        return lax.conv_general_dilated(y, w, (layer.s,) * nd, spec.forward_padding,
                                        dimension_numbers=dn)
    out["anchor"] = pair(anchor_f, a=cot, c=x)

    if with_torch:
        out["torch"] = _torch_contestant(layer, *arrays[FIXED_LAYOUT["torch"]])
    return out


def roofline_calls(layer: Layer, dtype):
    """(forward, forward+backward) as bare matrix products with the layer's arithmetic.

    Forward: ``A @ B`` with A ``(N·∏i, C_in)`` and B ``(C_in, ∏k·C_out)``, every input
    element times every tap; forward+backward adds the input gradient ``D @ Bᵀ`` and
    the kernel gradient ``Aᵀ @ D`` (D the cotangent's patches, ``(N·∏i, ∏k·C_out)``).
    """
    rng = np.random.default_rng(2)
    m, k, n = layer.batch * math.prod(layer.i), layer.c_in, math.prod(layer.k) * layer.c_out
    a, b, d = (jnp.asarray(rng.standard_normal(shape), dtype)
               for shape in ((m, k), (k, n), (m, n)))
    return (_Call(jnp.dot, a, b),
            _Call(lambda a, b, d: (a @ b, d @ b.T, a.T @ d), a, b, d))


def layer_bytes(layer: Layer, dtype, mode: str) -> int:
    """Bytes a layer must move at least: read x and w, write y (forward); forward+backward
    also reads the cotangent and writes both gradients (y is reduced into the loss)."""
    o = [(i - 1) * layer.s + k - 2 * layer.p + layer.op for i, k in zip(layer.i, layer.k)]
    x = layer.batch * math.prod(layer.i) * layer.c_in
    w = math.prod(layer.k) * layer.c_in * layer.c_out
    y = layer.batch * math.prod(o) * layer.c_out
    elements = x + w + y if mode == "fwd" else 2 * x + 2 * w + y
    return elements * jnp.dtype(dtype).itemsize


def _torch_contestant(layer, x, w, cot):
    """PyTorch's conv_transpose on channels-first x, cot and its own kernel layout."""
    import torch
    import torch.nn.functional as F

    conv_t = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[layer.nd]
    tx, tw, tc = (torch.from_numpy(np.array(a, np.float32)) for a in (x, w, cot))
    args = dict(stride=layer.s, padding=layer.p, output_padding=layer.op)

    def fwd():
        with torch.no_grad():
            return conv_t(tx, tw, **args)

    def fwd_bwd():
        a, b = tx.detach().requires_grad_(), tw.detach().requires_grad_()
        loss = (conv_t(a, b, **args) * tc).sum()
        loss.backward()
        return loss, a.grad, b.grad
    return fwd, fwd_bwd


def torch_threads():
    """Give PyTorch as many threads as XLA:CPU uses: the cores this process may run on."""
    import torch
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(cores)
    return cores


def _block(v):
    """Wait for every jax array in `v` (any pytree; other leaves, e.g. PyTorch's, as they are)."""
    return jax.block_until_ready(v)


def _compile_stats(fn):
    """(compile seconds, temporary bytes) for a jitted function; (nan, nan) otherwise."""
    if not hasattr(fn, "lower"):
        return float("nan"), float("nan")
    t0 = time.perf_counter()
    compiled = fn.lower().compile()
    seconds = time.perf_counter() - t0
    try:
        temp = float(compiled.memory_analysis().temp_size_in_bytes)
    except Exception:  # memory_analysis is backend-dependent
        temp = float("nan")
    return seconds, temp


def _medians(fns, rounds, best_of=None):
    """Median milliseconds of each call, timed round-robin: one call of each per round.

    With `best_of`, also the fastest call of that one: ``(medians, best ms)``.
    """
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            _block(fn())
            times[name].append(time.perf_counter() - t0)
    medians = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    return medians if best_of is None else (medians, 1e3 * min(times[best_of]))


# The side of the matrices whose product measures the machine's peak: on the 2-core machine
# of docs/performance.md XLA:CPU's jnp.dot ran fastest at 512-1024 (about 150 GFLOP/s median
# under load, 320 at best) and 20-50% slower at 2048, which would flatter every row.
PEAK_N = 1024
PEAK = "matmul peak"


class Peak:
    """The machine's matrix-product rate: an ``n x n`` by ``n x n`` `jnp.dot` (n = `PEAK_N`).

    `call` joins every round-robin beside the contestants, so that each group of
    rows is set against a rate measured under the same load (other jobs on a
    shared machine come and go); `gflops` turns that group's median into GFLOP/s.
    """

    def __init__(self, dtype):
        self.n, self.dtype, self.seen, self.best = PEAK_N, dtype, [], 0.0
        rng = np.random.default_rng(1)
        self.call = _Call(jnp.dot, *(jnp.asarray(rng.standard_normal((self.n, self.n)), dtype)
                                     for _ in range(2)))
        _block(self.call())

    def gflops(self, ms):
        rate = 2 * self.n**3 / (ms * 1e6)
        self.seen.append(rate)
        return rate

    def describe(self):
        seen = self.seen or [float("nan")]
        return (f"matmul peak: a {self.n}x{self.n} {jnp.dtype(self.dtype).name} jnp.dot timed "
                f"beside the contestants in each of {len(self.seen)} round-robins, median "
                f"{statistics.median(seen):.1f} GFLOP/s (from {min(seen):.1f} to "
                f"{max(seen):.1f}; its fastest single call {self.best:.1f}); each row's % of "
                f"peak is its median rate over its own round-robin's median matmul rate")


COPY = "copy rate"
COPY_MIB = 64


class Copy:
    """The machine's memory rate: ``a + 1`` on a `COPY_MIB` MiB array (read it, write a new
    one), timed beside the contestants like `Peak`; `gbs` turns a median into GB/s."""

    def __init__(self, dtype):
        self.bytes = 2 * COPY_MIB * 2**20
        n = COPY_MIB * 2**20 // jnp.dtype(dtype).itemsize
        self.call = _Call(lambda a: a + 1, jnp.zeros((n,), dtype))
        _block(self.call())
        self.seen = []

    def gbs(self, ms):
        rate = self.bytes / (ms * 1e6)
        self.seen.append(rate)
        return rate

    def describe(self):
        seen = self.seen or [float("nan")]
        return (f"copy rate: a + 1 on a {COPY_MIB} MiB array beside the contestants, median "
                f"{statistics.median(seen):.1f} GB/s (read + write)")


def _timed(fns, rounds, peak, copy=None):
    """`_medians` of `fns` with the peak's matrix product (and the copy) among them:
    (medians, peak GFLOP/s, copy GB/s or nan)."""
    extra = {PEAK: peak.call} | ({COPY: copy.call} if copy is not None else {})
    ms, best = _medians({**fns, **extra}, rounds, best_of=PEAK)
    peak.best = max(peak.best, 2 * peak.n**3 / (best * 1e6))
    gbs = copy.gbs(ms.pop(COPY)) if copy is not None else float("nan")
    return ms, peak.gflops(ms.pop(PEAK)), gbs


def _check_torch(with_torch, print_fn):
    if not with_torch:
        return False
    # PyTorch runs with its defaults, as its users run it: only its thread count is set,
    # to the cores XLA uses (`torch_threads`); --omp-passive changes its OpenMP wait policy.
    try:
        import torch  # noqa: F401
    except ImportError:
        print_fn(NO_TORCH_NOTE)
        return False
    torch_threads()
    return True


def run(layers, *, rounds=15, dtype=jnp.float32, with_torch=True, out_dir=None,
        progress=True, print_fn=print, layouts=LAYOUTS):
    """Benchmark `layers` in each of `layouts`; return a list of result rows (dicts)."""
    rng = np.random.default_rng(0)
    with_torch = _check_torch(with_torch, print_fn)
    if not layers:
        return []
    if "nchw" in layouts:
        print_fn(FLAX_NOTE)
    peak, copy = Peak(dtype), Copy(dtype)
    rows = []
    sys.stdout.flush()            # what was printed comes before the bar, also in a file
    bar = _progress(len(layers) * 2 * len(layouts), progress)
    for layer in layers:
        nd = layer.nd
        x = jnp.asarray(rng.standard_normal((layer.batch, *layer.i, layer.c_in)), dtype)
        w = jnp.asarray(rng.standard_normal((*layer.k, layer.c_out, layer.c_in))
                        / math.sqrt(layer.c_in * math.prod(layer.k)), dtype)
        y_shape = jax_tconv.conv_transpose(x, w, strides=layer.s, padding=layer.p,
                                      output_padding=layer.op).shape
        cot = jnp.asarray(rng.standard_normal(y_shape), dtype)
        # The same numbers in both layouts; PyTorch's kernel layout is (C_in, C_out, *k).
        arrays = {"nhwc": (x, w, cot),
                  "nchw": (to_nchw(x, nd), to_nchw(w, nd, kernel=True), to_nchw(cot, nd))}
        for layout in layouts:
            try:
                contestants = _contestants(layer, arrays, dtype, with_torch, layout)
            except ValueError as e:  # pragma: no cover - reported, not fatal
                print_fn(f"skip {layer.name} {layout}: {e}")
                continue
            lx, lw, _ = arrays[layout]
            runs = jax_tconv.auto_method(lx, lw, strides=layer.s, padding=layer.p,
                                         output_padding=layer.op,
                                         dimension_numbers=dimension_numbers_for(nd, layout))
            for mode, idx in (("fwd", 0), ("fwd+bwd", 1)):
                fns, stats = {}, {}
                for name, pair in contestants.items():
                    where = dict(layer=layer.name, layout=layout, label=layout_label(layout, nd),
                                 arrays=layout_label(FIXED_LAYOUT.get(name, layout), nd),
                                 mode=mode, name=name, auto_runs=runs.method)
                    fn = pair[idx]
                    try:
                        stats[name] = _compile_stats(fn)
                        _block(fn())
                    except ValueError as e:  # matmul refuses large layers
                        rows.append(dict(where, ms=float("nan"), compile_s=float("nan"),
                                         temp=float("nan"), note=str(e).split(";")[0]))
                        continue
                    fns[name] = fn
                    stats[name] = (where, *stats[name])
                medians, peak_gflops, copy_gbs = _timed(fns, rounds, peak, copy)
                for name, ms in medians.items():
                    where, compile_s, temp = stats[name]
                    rows.append(dict(where, ms=ms, compile_s=compile_s, temp=temp,
                                     macs=layer.macs() * (1 if idx == 0 else 3),
                                     bytes=layer_bytes(layer, dtype, mode),
                                     peak_gflops=peak_gflops, copy_gbs=copy_gbs, note=""))
                bar.update()
    bar.close()                   # before any result is printed, so none lands on the bar's line
    _derive(rows)
    text = format_table(rows)
    print_fn(text)
    print_fn(peak.describe())
    print_fn(copy.describe())
    print_fn(roofline_summary(rows))
    if out_dir is not None:
        _write(rows, text, pathlib.Path(out_dir), rounds, dtype, with_torch, peak, print_fn,
               copy)
    return rows


def _derive(rows):
    """Add ratio to the anchor, speedup over lax, GFLOP/s and its share of the row's peak."""
    by = {(r["layout"], r["layer"], r["mode"], r["name"]): r for r in rows}
    for r in rows:
        key = (r["layout"], r["layer"], r["mode"])
        anchor = by.get((*key, "anchor"), {}).get("ms", float("nan"))
        lax_ms = by.get((*key, "lax"), {}).get("ms", float("nan"))
        r["vs_anchor"] = r["ms"] / anchor
        r["lax_speedup"] = lax_ms / r["ms"]
        # The roofline: the layer's matrix products, or its bytes at the copy rate if slower.
        dot_ms = by.get((*key, ROOFLINE), {}).get("ms", float("nan"))
        memory_ms = r.get("bytes", float("nan")) / (r.get("copy_gbs", float("nan")) * 1e6)
        r["roof_ms"] = max(dot_ms, memory_ms)
        r["roof_kind"] = "memory" if memory_ms > dot_ms else "compute"
        r["vs_roof"] = r["ms"] / r["roof_ms"]
        r["gflops"] = 2 * r.get("macs", float("nan")) / (r["ms"] * 1e6)
        r["peak_pct"] = 100 * r["gflops"] / r.get("peak_gflops", float("nan"))


def roofline_summary(rows) -> str:
    """Per layout and mode: each contestant's time / roofline (geomean, worst), and the
    peers' time / auto's; the figures issue-style targets are stated in."""
    by = _index(rows)
    layers, out = _layers(rows), []
    for layout in _layouts(rows):
        for mode in ("fwd", "fwd+bwd"):
            autos = [(by[(layout, lay, mode, "auto")]["vs_roof"], lay) for lay in layers
                     if (layout, lay, mode, "auto") in by]
            if not autos:
                continue
            worst = max(autos)
            memory = [lay for lay in layers if by.get((layout, lay, mode, "auto"), {}).get(
                "roof_kind") == "memory"]
            line = (f"{layout.upper()}  {mode:8} auto / roofline geomean "
                    f"{_gm([v for v, _ in autos]):.2f}, worst {worst[0]:.2f} ({worst[1]})")
            for name in ("torch", "lax", "flax"):
                rs = [by[(layout, lay, mode, name)]["ms"] / by[(layout, lay, mode, "auto")]["ms"]
                      for lay in layers if (layout, lay, mode, name) in by
                      and (layout, lay, mode, "auto") in by]
                if rs:
                    line += (f"; {name} / auto geomean {_gm(rs):.2f} "
                             f"(layers {min(rs):.2f} to {max(rs):.2f})")
            rs = [by[(layout, lay, mode, "torch")]["vs_roof"] for lay in layers
                  if (layout, lay, mode, "torch") in by]
            if rs:
                line += f"; torch / roofline geomean {_gm(rs):.2f}"
            if memory:
                line += f"; memory-bound: {', '.join(memory)}"
            out.append(line)
    return "\n".join(out)


def roofline_table(rows) -> str:
    """Per layer, layout and mode: the roofline and each contestant's time over it."""
    by = _index(rows)
    names = [n for n in ("auto", *jax_tconv.METHODS, "torch", "lax", "flax")
             if any(r["name"] == n for r in rows)]
    lines = ["| layer | layout | mode | roofline ms | bound | auto runs | " + " | ".join(
        f"{n} / roofline" for n in names) + " |",
        "|---|---|---|---:|---|---|" + "---:|" * len(names)]
    for layout in _layouts(rows):
        for layer in _layers(rows):
            for mode in ("fwd", "fwd+bwd"):
                auto = by.get((layout, layer, mode, "auto"))
                if auto is None:
                    continue
                cells = [f"{by[(layout, layer, mode, n)]['vs_roof']:.2f}"
                         if (layout, layer, mode, n) in by else "" for n in names]
                lines.append(f"| {layer} | {auto['label']} | {mode} | {auto['roof_ms']:.3f} | "
                             f"{auto['roof_kind']} | {auto.get('auto_runs', '')} | "
                             + " | ".join(cells) + " |")
    return "\n".join(lines)


def layout_cell(r) -> str:
    """The row's layout, and the one its arrays really had when the contestant has no choice."""
    return r["label"] if r["arrays"] == r["label"] else f"{r['label']} (ran {r['arrays']})"


def format_table(rows) -> str:
    head = ("| layer | layout | mode | contestant | ms (median) | / anchor | / roofline | "
            "lax speedup | GFLOP/s | % of peak | compile s | temp MiB |\n|---|---|---|---|"
            + "---:|" * 8)
    lines = [head]
    for r in rows:
        start = f"| {r['layer']} | {layout_cell(r)} | {r['mode']} | {r['name']} |"
        if r["note"]:
            lines.append(f"{start} {r['note']} | | | | | | | |")
            continue
        lines.append(
            f"{start} {r['ms']:.3f} | {r['vs_anchor']:.2f} | {r['vs_roof']:.2f} | "
            f"{r['lax_speedup']:.2f} | "
            f"{r['gflops']:.1f} | {r['peak_pct']:.1f} | {r['compile_s']:.2f} | "
            f"{r['temp'] / 2**20:.2f} |")
    return "\n".join(lines)


def _index(rows):
    return {(r["layout"], r["layer"], r["mode"], r["name"]): r for r in rows if not r["note"]}


def _layers(rows):
    return list(dict.fromkeys(r["layer"] for r in rows))


def _layouts(rows):
    return [lay for lay in LAYOUTS if any(r["layout"] == lay for r in rows)]


def _pair_cell(a, b, key, scale=1.0, fmt=".2f"):
    va, vb = (float("nan") if r is None else r[key] / scale for r in (a, b))
    return f"{va:{fmt}} / {vb:{fmt}}"


def auto_table(rows) -> str:
    """Per layer and layout: "auto" against the anchor, lax and the fastest method, forward
    and fwd+bwd; its share of the peak; temporary memory and compile time against lax."""
    by = _index(rows)
    lines = ["| layer | layout | fwd: auto / anchor | fwd: lax / auto | fwd: fastest method "
             "(auto / it) | fwd+bwd: auto / anchor | fwd+bwd: lax / auto | fwd+bwd: fastest "
             "(auto / it) | auto % of peak: fwd / fwd+bwd | temp MiB fwd+bwd: auto / lax "
             "| compile s fwd+bwd: auto / lax |", "|---|---|" + "---:|" * 9]
    for layout in _layouts(rows):
        for layer in _layers(rows):
            cells = []
            for mode in ("fwd", "fwd+bwd"):
                auto = by.get((layout, layer, mode, "auto"))
                if auto is None:
                    cells += ["", "", ""]
                    continue
                best = min((by[(layout, layer, mode, m)] for m in jax_tconv.METHODS
                            if (layout, layer, mode, m) in by), key=lambda r: r["ms"])
                cells += [f"{auto['vs_anchor']:.2f}", f"{auto['lax_speedup']:.1f}x",
                          f"{best['name']} ({auto['ms'] / best['ms']:.2f})"]
            af, ab = (by.get((layout, layer, m, "auto")) for m in ("fwd", "fwd+bwd"))
            lb = by.get((layout, layer, "fwd+bwd", "lax"))
            if af is None and ab is None:
                continue
            cells += [_pair_cell(af, ab, "peak_pct", fmt=".1f"),
                      _pair_cell(ab, lb, "temp", 2**20), _pair_cell(ab, lb, "compile_s")]
            label = (af or ab)["label"]
            lines.append(f"| {layer} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def layouts_table(rows) -> str:
    """Per layer and mode: "auto" in NCHW against NHWC, and PyTorch and lax against it."""
    by = _index(rows)
    lines = ["| layer | mode | auto NHWC ms | auto NCHW ms | auto NCHW / NHWC | torch / auto NHWC "
             "| torch / auto NCHW | lax NCHW / auto NCHW | lax NCHW / lax NHWC |",
             "|---|---|" + "---:|" * 7]
    nan = {"ms": float("nan")}
    for layer in _layers(rows):
        for mode in ("fwd", "fwd+bwd"):
            get = lambda layout, name: by.get((layout, layer, mode, name), nan)  # noqa: E731
            a_l, a_f = get("nhwc", "auto")["ms"], get("nchw", "auto")["ms"]
            t = get("nchw", "torch")["ms"]
            l_l, l_f = get("nhwc", "lax")["ms"], get("nchw", "lax")["ms"]
            lines.append(f"| {layer} | {mode} | {a_l:.3f} | {a_f:.3f} | {a_f / a_l:.2f} | "
                         f"{t / a_l:.2f} | {t / a_f:.2f} | {l_f / a_f:.2f} | {l_f / l_l:.2f} |")
    return "\n".join(lines)


def _gm(values):
    values = [v for v in values if math.isfinite(v)]
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else float("nan")


def headline(rows) -> str:
    """The figures a reader asks first, per layout; then NCHW against NHWC per layer."""
    by = _index(rows)
    out = []
    layers = _layers(rows)
    for layout in _layouts(rows):
        tag = layout.upper()

        def ratios(mode, num, den="auto", key="ms"):
            pairs = [(by.get((layout, lay, mode, num)), by.get((layout, lay, mode, den)))
                     for lay in layers]
            return [(a[key] / b[key], a["layer"]) for a, b in pairs if a and b]

        fwd = ratios("fwd", "auto", "anchor")
        if fwd:
            worst = max(fwd)
            out.append(f"{tag}  fwd      auto / anchor    geomean {_gm([v for v, _ in fwd]):6.2f}"
                       f"   worst {worst[0]:6.2f} ({worst[1]})")
        for mode in ("fwd", "fwd+bwd"):
            parts = []
            for name in ("torch", "lax", "flax"):
                rs = ratios(mode, name)
                if rs:
                    parts.append(f"{name} / auto geomean {_gm([v for v, _ in rs]):6.2f}")
            if parts:
                out.append(f"{tag}  {mode:8} " + "   ".join(parts))
        for mode in ("fwd", "fwd+bwd"):
            pct = [by[(layout, lay, mode, "auto")]["peak_pct"] for lay in layers
                   if (layout, lay, mode, "auto") in by]
            if pct:
                out.append(f"{tag}  {mode:8} auto's useful FLOP rate: geomean {_gm(pct):.1f}% "
                           f"of the matmul peak, range {min(pct):.1f}% to {max(pct):.1f}%")
        comp = ratios("fwd+bwd", "auto", "lax", key="compile_s")
        temp = [(by.get((layout, lay, "fwd+bwd", "auto")), by.get((layout, lay, "fwd+bwd", "lax")))
                for lay in layers]
        temp = [(a["temp"] / 2**20, b["temp"] / 2**20) for a, b in temp if a and b]
        if comp and temp:
            out.append(f"{tag}  fwd+bwd  auto / lax: compile time geomean "
                       f"{_gm([v for v, _ in comp]):.2f}, temp memory summed over the layers "
                       f"{sum(a for a, _ in temp):.1f} / {sum(b for _, b in temp):.1f} MiB")
    if len(_layouts(rows)) == 2:
        for mode in ("fwd", "fwd+bwd"):
            rs = [(by[("nchw", lay, mode, "auto")]["ms"] / by[("nhwc", lay, mode, "auto")]["ms"],
                   lay) for lay in layers
                  if ("nchw", lay, mode, "auto") in by and ("nhwc", lay, mode, "auto") in by]
            if rs:
                worst = max(rs)
                out.append(f"NCHW / NHWC  {mode:8} auto per layer: geomean "
                           f"{_gm([v for v, _ in rs]):.2f}   worst {worst[0]:.2f} ({worst[1]})")
    return "\n".join(out)


def summary(rows) -> str:
    """Geometric means of the ratios per layout, contestant and mode."""
    out = []
    names = sorted({r["name"] for r in rows}, key=lambda n: (n != "auto", n))
    for layout in _layouts(rows):
        for mode in ("fwd", "fwd+bwd"):
            for name in names:
                rs = [r for r in rows if r["layout"] == layout and r["mode"] == mode
                      and r["name"] == name and not r["note"]]
                if not rs:
                    continue
                out.append(f"{layout.upper()}  {mode:8} {name:8} geomean / anchor "
                           f"{_gm([r['vs_anchor'] for r in rs]):6.2f}"
                           f"   geomean lax speedup {_gm([r['lax_speedup'] for r in rs]):6.2f}"
                           f"   worst / anchor {max(r['vs_anchor'] for r in rs):6.2f}"
                           f"   % of peak {_gm([r['peak_pct'] for r in rs]):5.1f}"
                           f"   over {len(rs)} layers")
    return "\n".join(out)


def cpu_isa() -> str:
    """The vector ISA XLA may use, and PyTorch's oneDNN: the CPU's best unless limited."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        flags = set()
    native = next((name for flag, name in (("amx_tile", "AMX"), ("avx512f", "AVX-512"),
                                           ("avx2", "AVX2"), ("avx", "AVX"))
                   if flag in flags), "unknown")
    limit = isa_limit()
    xla = f"XLA limited to {limit}" if limit else f"XLA native ({native})"
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA")
    torch = sys.modules.get("torch")
    if torch is not None:
        cap = torch.backends.cpu.get_cpu_capability()
        onednn_text = (f"PyTorch {cap}" + (f", oneDNN limited to {onednn}" if onednn else ""))
    else:
        onednn_text = f"oneDNN limited to {onednn}" if onednn else ""
    return "; ".join(t for t in (f"CPU has {native}", xla, onednn_text) if t)


def machine() -> str:
    dev = jax.devices()[0]
    return (f"{cpu_model()}, {os.cpu_count()} cores, {cpu_isa()}; "
            f"jax {jax.__version__} on {jax.default_backend()} ({dev.device_kind})")


class _Count:
    """A progress counter without tqdm: one ``[i/total]`` line per step."""

    def __init__(self, total, enabled):
        self.total, self.enabled, self.n = total, enabled, 0

    def update(self):
        self.n += 1
        if self.enabled:
            print(f"  [{self.n}/{self.total}]", flush=True)

    def close(self):
        pass


def _progress(total, enabled):
    """A progress bar with ``update()`` and ``close()``: tqdm's on stderr, or ``_Count``."""
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            # A terminal gets a bar that erases itself; a file or pipe keeps its last state and
            # a newline, so that what is printed next starts a line of its own.
            return tqdm(total=total, desc="bench", leave=not sys.stderr.isatty())
    return _Count(total, enabled)


def torch_setup() -> str:
    """How PyTorch runs here (threads, OpenMP wait policy), for the report's header."""
    torch = sys.modules.get("torch")
    if torch is None:
        return "torch off"
    return (f"torch {torch.__version__.split('+')[0]} CPU, {torch.get_num_threads()} threads, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")


def _write(rows, text, out_dir, rounds, dtype, with_torch, peak, print_fn, copy=None):
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "bench.md"
    layouts = _layouts(rows)
    parts = [f"Machine: {machine()}; dtype {jnp.dtype(dtype).name}; {rounds} rounds; "
             f"{torch_setup() if with_torch else 'torch off'}; layouts {', '.join(layouts)}; "
             f"{peak.describe()}" + (f"; {copy.describe()}" if copy else "") + "."]
    if "nchw" in layouts:
        parts.append(FLAX_NOTE)
    parts += [f"```\n{headline(rows)}\n{roofline_summary(rows)}\n```", auto_table(rows),
              roofline_table(rows)]
    if len(layouts) == 2:
        parts.append(layouts_table(rows))
    parts += [f"```\n{summary(rows)}\n```", f"All rows:\n\n{text}"]
    md.write_text("\n\n".join(parts) + "\n")
    (out_dir / "bench.json").write_text(json.dumps(rows, indent=1))
    print_fn(auto_table(rows))
    if len(layouts) == 2:
        print_fn(layouts_table(rows))
    print_fn(summary(rows))
    print_fn(headline(rows))
    print_fn(f"wrote {md}")
    print_fn(f"wrote {out_dir / 'bench.json'}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print_fn("matplotlib not installed: no chart (pip install -e '.[examples]')")
        return
    names = [n for n in dict.fromkeys(r["name"] for r in rows) if n != "anchor"]
    layers = _layers(rows)
    panels = [(layout, mode) for layout in layouts for mode in ("fwd", "fwd+bwd")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 1.2 * len(layers)), 4 * len(panels)),
                             sharex=True, squeeze=False)
    by = _index(rows)
    for ax, (layout, mode) in zip(axes[:, 0], panels):
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            vals = [by.get((layout, lay, mode, name), {}).get("vs_anchor", np.nan)
                    for lay in layers]
            ax.bar(np.arange(len(layers)) + j * width, vals, width, label=name)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylabel(f"{layout.upper()} {mode}: time / anchor")
    axes[-1, 0].set_xticks(np.arange(len(layers)) + 0.4, layers, rotation=30, ha="right",
                           fontsize=8)
    axes[0, 0].legend(ncol=4, fontsize=8)
    axes[0, 0].set_title(f"jax_tconv bench — {machine()}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "bench.png", dpi=100)
    plt.close(fig)
    print_fn(f"wrote {out_dir / 'bench.png'}")


# ----------------------------------------------------------------------------
# The command line.

BENCH_FILES = (
    ("bench.md", "headlines, auto per layer, NCHW / NHWC, geomeans, all rows"),
    ("bench.json", "every row: ms, ratios, GFLOP/s, % of peak, compile s, temp"),
    ("bench.png", "time / anchor per layer, layout, contestant (matplotlib)"),
)
MODEL_FILES = (
    ("models.md", "--models: step times, ratios, memory, compile s, agreement"),
    ("models.json", "--models: every row"),
)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python benchmarks/bench.py``."""
    files = "\n".join(f"  OUT/{name:<12s}{what}" for name, what in BENCH_FILES + MODEL_FILES)
    bench = argparse.ArgumentParser(
        prog="python benchmarks/bench.py", formatter_class=HelpFormatter,
        description=wrap(
            "Time, round-robin (one call of each contestant per round), every method, 'auto', "
            "lax.conv_transpose, Flax's nn.ConvTranspose, PyTorch's conv_transpose{1,2,3}d "
            "(when torch is installed) and the anchor, the forward strided convolution whose "
            "adjoint the layer is, forward and forward+backward, on a suite of layers from "
            "DCGAN, U-Net, FCN, 1-D audio and 3-D volumes, in channels-last (NHWC) and "
            "channels-first (NCHW) layout. Flax's nn.ConvTranspose has no layout option and "
            "runs channels-last in both; PyTorch runs its native NCHW in both. Every row also "
            "gives its useful FLOP rate as a share of the machine's matmul peak, measured in "
            "the same run. With --models: a jitted training step of four small decoders "
            "(DCGAN, U-Net, 3-D V-Net, 1-D vocoder) instead, jax_tconv's 'auto' in each layout "
            "against lax, Flax and PyTorch, after checking that all give the same loss and "
            "gradients. Prints the median times and ratios, then writes the files below."),
        epilog=f"files written to --out:\n{files}\n\nMeasured results: docs/performance.md.")
    bench.add_argument("--layers", default=None,
                       help="comma-separated substrings of layer (with --models: model) names "
                            "to run (see --list); default: the whole suite")
    bench.add_argument("--layout", default="both", choices=["nhwc", "nchw", "both"],
                       help="the layout of jax_tconv's, lax's and the anchor's arrays: "
                            "channels-last (NWC/NHWC/NDHWC, kernel (*k, C_out, C_in)), "
                            "channels-first (NCW/NCHW/NCDHW, PyTorch's kernel (C_in, C_out, *k)), "
                            "or both; with --models, jax_tconv's only (lax and Flax run "
                            "channels-last there, PyTorch channels-first)")
    bench.add_argument("--models", action="store_true",
                       help="time a training step of whole models (DCGAN generator, U-Net "
                            "decoder, 3-D V-Net decoder, 1-D vocoder; float32) instead of "
                            "single layers")
    bench.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                       help="dtype of inputs, kernels and results")
    bench.add_argument("--rounds", type=int, default=15,
                       help="timed rounds per contestant; the median is reported")
    bench.add_argument("--out", default="bench_out",
                       help="folder for the files listed below (created if missing)")
    bench.add_argument("--no-torch", action="store_true",
                       help="leave PyTorch out (it is left out anyway when not installed)")
    bench.add_argument("--isa", default="native", choices=["native", "avx2"],
                       help="avx2: rerun with XLA and PyTorch's oneDNN held to AVX2 "
                            "(XLA_FLAGS=--xla_cpu_max_isa=AVX2 ONEDNN_MAX_CPU_ISA=AVX2), a "
                            "machine without AVX-512 or AMX emulated; the report says which")
    bench.add_argument("--omp-passive", action="store_true",
                       help="set OMP_WAIT_POLICY=PASSIVE for PyTorch (default: its own "
                            "defaults; the report says which)")
    bench.add_argument("--list", action="store_true",
                       help="list the suite's layers (with --models: models) and exit")
    return bench


def _held_to_avx2() -> bool:
    return all(v in os.environ.get(k, "") for k, v in AVX2_ENV.items())


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.isa == "avx2" and not _held_to_avx2():
        # Both libraries read these once, at start-up: run this command again with them.
        env = dict(os.environ)
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {AVX2_ENV['XLA_FLAGS']}".strip()
        env["ONEDNN_MAX_CPU_ISA"] = AVX2_ENV["ONEDNN_MAX_CPU_ISA"]
        argv = sys.argv[1:] if argv is None else list(argv)
        return subprocess.call([sys.executable, os.path.abspath(__file__), *argv], env=env)
    if args.omp_passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    layouts = LAYOUTS if args.layout == "both" else (args.layout,)
    patterns = args.layers.split(",") if args.layers else []
    if args.models:
        import bench_models as models  # beside this file

        suite = models.suite()
    else:
        suite = SUITE
    chosen = [item for item in suite if not patterns or any(p in item.name for p in patterns)]
    if args.list or not chosen:
        print("\n".join(item.name for item in suite))
        return 0 if chosen else 2
    if not args.models:
        run(chosen, rounds=args.rounds, dtype=getattr(jnp, args.dtype),
            with_torch=not args.no_torch, out_dir=args.out, layouts=layouts)
        return 0
    if args.dtype != "float32":
        print(f"bench.py --models: runs float32 only (its contestants must agree to 1e-4 "
              f"before they are timed), not --dtype {args.dtype}")
        return 2
    try:
        models.run(chosen, rounds=args.rounds, with_torch=not args.no_torch,
                   layouts=layouts, out_dir=args.out)
    except models.ModelMismatch as e:
        print(f"bench.py --models: FAILED, nothing timed: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
