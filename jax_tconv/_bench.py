"""``python -m jax_tconv bench``: every method against lax, Flax, PyTorch and the anchor.

The anchor is the forward strided convolution whose adjoint the layer is: it
does exactly the useful multiply-adds of the transposed convolution, so
"ratio to anchor" says how close a method comes to the cost of the
arithmetic itself. Contestants are timed round-robin (one call each per round)
so that a noisy neighbour slows all of them alike; the table reports medians.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_tconv import _api
from jax_tconv._spec import transpose_spec


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    batch: int
    i: tuple          # input spatial size
    c_in: int
    c_out: int
    k: tuple
    s: int
    p: int
    op: int = 0

    @property
    def nd(self):
        return len(self.i)

    def macs(self):
        """Useful multiply-adds: every input element times every tap and output channel."""
        return self.batch * math.prod(self.i) * self.c_in * self.c_out * math.prod(self.k)


SUITE = [
    Layer("dcgan 4->8 512->256", 8, (4, 4), 512, 256, (4, 4), 2, 1),
    Layer("dcgan 8->16 256->128", 8, (8, 8), 256, 128, (4, 4), 2, 1),
    Layer("dcgan 16->32 128->64", 8, (16, 16), 128, 64, (4, 4), 2, 1),
    Layer("dcgan 32->64 64->3", 8, (32, 32), 64, 3, (4, 4), 2, 1),
    Layer("unet k2s2 16->32 128->64", 4, (16, 16), 128, 64, (2, 2), 2, 0),
    Layer("fcn k3s2p1op1 16->32 64->32", 4, (16, 16), 64, 32, (3, 3), 2, 1, 1),
    Layer("k5s3 12->36 32->32", 4, (12, 12), 32, 32, (5, 5), 3, 1),
    Layer("audio1d k16s8 256->2048 64->32", 4, (256,), 64, 32, (16,), 8, 4),
    Layer("1d k4s2 512->1024 64->64", 4, (512,), 64, 64, (4,), 2, 1),
    Layer("3d k2s2 8->16 32->16", 2, (8, 8, 8), 32, 16, (2, 2, 2), 2, 0),
    Layer("3d k4s2p1 8->16 16->8", 2, (8, 8, 8), 16, 8, (4, 4, 4), 2, 1),
]


def _dn(nd):
    sp = "DHW"[3 - nd:]
    return (f"N{sp}C", f"{sp}IO", f"N{sp}C")


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


def _contestants(layer: Layer, x, w, cot, dtype, with_torch):
    """name -> (forward call, forward+backward call)."""
    nd, dn = layer.nd, _dn(layer.nd)
    kw = dict(strides=layer.s, padding=layer.p, output_padding=layer.op, dimension_numbers=dn)

    def pair(f, a=x, c=cot):
        return _Call(f, a, w), _Call(_loss_grad(f), a, w, c)

    out = {}
    for method in _api.METHODS + ("auto",):
        out[method] = pair(functools.partial(_api.conv_transpose, method=method, **kw))
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
    out["flax"] = pair(lambda x, w: module.apply({"params": {"kernel": w}}, x))

    # The anchor: the forward conv y -> x (same multiply-adds), and its gradients.
    spec = transpose_spec("bench", x, w, precision=None, preferred_element_type=None,
                          output_shape=None, dilation=1, groups=1, **kw)

    def anchor_f(y, w):
        return lax.conv_general_dilated(y, w, (layer.s,) * nd, spec.forward_padding,
                                        dimension_numbers=dn)
    out["anchor"] = pair(anchor_f, a=cot, c=x)

    if with_torch:
        out["torch"] = _torch_contestant(layer, x, w, cot)
    return out


def _torch_contestant(layer, x, w, cot):
    import torch
    import torch.nn.functional as F

    conv_t = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[layer.nd]
    # channels-first copies; PyTorch's weight layout is (C_in, C_out, *k).
    perm_x = (0, layer.nd + 1, *range(1, layer.nd + 1))
    tx = torch.from_numpy(np.asarray(x, np.float32).transpose(perm_x).copy())
    tw = torch.from_numpy(np.asarray(w, np.float32).transpose(
        layer.nd + 1, layer.nd, *range(layer.nd)).copy())
    tc = torch.from_numpy(np.asarray(cot, np.float32).transpose(perm_x).copy())
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


def _block(v):
    if isinstance(v, tuple):
        return tuple(_block(a) for a in v)
    return v.block_until_ready() if hasattr(v, "block_until_ready") else v


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


def run(layers, *, rounds=15, dtype=jnp.float32, with_torch=True, out_dir=None,
        progress=True, print_fn=print):
    """Benchmark `layers`; return a list of result rows (dicts)."""
    rng = np.random.default_rng(0)
    if with_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            with_torch = False
            print_fn("PyTorch is not installed: it is left out of the comparison "
                     "(pip install torch to include it)")
    rows = []
    sys.stdout.flush()            # what was printed comes before the bar, also in a file
    bar = _progress(len(layers) * 2, progress)
    for layer in layers:
        x = jnp.asarray(rng.standard_normal((layer.batch, *layer.i, layer.c_in)), dtype)
        w = jnp.asarray(rng.standard_normal((*layer.k, layer.c_out, layer.c_in))
                        / math.sqrt(layer.c_in * math.prod(layer.k)), dtype)
        y_shape = _api.conv_transpose(x, w, strides=layer.s, padding=layer.p,
                                      output_padding=layer.op).shape
        cot = jnp.asarray(rng.standard_normal(y_shape), dtype)
        try:
            contestants = _contestants(layer, x, w, cot, dtype, with_torch)
        except ValueError as e:  # pragma: no cover - reported, not fatal
            print_fn(f"skip {layer.name}: {e}")
            continue
        for mode, idx in (("fwd", 0), ("fwd+bwd", 1)):
            fns = {}
            for name, pair in contestants.items():
                fn = pair[idx]
                try:
                    compile_s, temp = _compile_stats(fn)
                    _block(fn())
                except ValueError as e:  # matmul refuses large layers
                    rows.append(dict(layer=layer.name, mode=mode, name=name, ms=float("nan"),
                                     compile_s=float("nan"), temp=float("nan"),
                                     note=str(e).split(";")[0]))
                    continue
                fns[name] = (fn, compile_s, temp)
            times = {name: [] for name in fns}
            for _ in range(rounds):
                for name, (fn, _, _) in fns.items():
                    t0 = time.perf_counter()
                    _block(fn())
                    times[name].append(time.perf_counter() - t0)
            for name, (_, compile_s, temp) in fns.items():
                rows.append(dict(layer=layer.name, mode=mode, name=name,
                                 ms=1e3 * statistics.median(times[name]), compile_s=compile_s,
                                 temp=temp, macs=layer.macs() * (1 if idx == 0 else 3), note=""))
            bar.update()
    bar.close()                   # before any result is printed, so none lands on the bar's line
    _derive(rows)
    text = format_table(rows)
    print_fn(text)
    if out_dir is not None:
        _write(rows, text, pathlib.Path(out_dir), rounds, dtype, with_torch, print_fn)
    return rows


def _derive(rows):
    """Add ratio to the anchor, speedup over lax and GFLOP/s to each row."""
    by = {(r["layer"], r["mode"], r["name"]): r for r in rows}
    for r in rows:
        anchor = by.get((r["layer"], r["mode"], "anchor"), {}).get("ms", float("nan"))
        lax_ms = by.get((r["layer"], r["mode"], "lax"), {}).get("ms", float("nan"))
        r["vs_anchor"] = r["ms"] / anchor
        r["lax_speedup"] = lax_ms / r["ms"]
        r["gflops"] = 2 * r.get("macs", float("nan")) / (r["ms"] * 1e6)


def format_table(rows) -> str:
    head = ("| layer | mode | contestant | ms (median) | / anchor | lax speedup | GFLOP/s | "
            "compile s | temp MiB |\n|---|---|---|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        if r["note"]:
            lines.append(f"| {r['layer']} | {r['mode']} | {r['name']} | {r['note']} | | | | | |")
            continue
        lines.append(
            f"| {r['layer']} | {r['mode']} | {r['name']} | {r['ms']:.3f} | {r['vs_anchor']:.2f} | "
            f"{r['lax_speedup']:.2f} | {r['gflops']:.1f} | {r['compile_s']:.2f} | "
            f"{r['temp'] / 2**20:.2f} |")
    return "\n".join(lines)


def auto_table(rows) -> str:
    """Per layer: "auto" against the anchor, lax and the fastest method, forward and fwd+bwd."""
    by = {(r["layer"], r["mode"], r["name"]): r for r in rows if not r["note"]}
    lines = ["| layer | fwd: auto / anchor | fwd: lax / auto | fwd: fastest method (auto / it) "
             "| fwd+bwd: auto / anchor | fwd+bwd: lax / auto | fwd+bwd: fastest (auto / it) "
             "| temp MiB fwd+bwd: auto / lax |", "|---|" + "---:|" * 7]
    for layer in dict.fromkeys(r["layer"] for r in rows):
        cells = []
        for mode in ("fwd", "fwd+bwd"):
            auto = by.get((layer, mode, "auto"))
            if auto is None:
                cells += ["", "", ""]
                continue
            best = min((by[(layer, mode, m)] for m in _api.METHODS if (layer, mode, m) in by),
                       key=lambda r: r["ms"])
            cells += [f"{auto['vs_anchor']:.2f}", f"{auto['lax_speedup']:.1f}x",
                      f"{best['name']} ({auto['ms'] / best['ms']:.2f})"]
        fb = by.get((layer, "fwd+bwd", "auto"), {})
        fl = by.get((layer, "fwd+bwd", "lax"), {})
        cells.append(f"{fb.get('temp', float('nan')) / 2**20:.2f} / "
                     f"{fl.get('temp', float('nan')) / 2**20:.2f}")
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows) -> str:
    """Geometric means of the ratios per contestant and mode."""
    out = []
    names = sorted({r["name"] for r in rows}, key=lambda n: (n != "auto", n))
    for mode in ("fwd", "fwd+bwd"):
        for name in names:
            rs = [r for r in rows if r["mode"] == mode and r["name"] == name and not r["note"]]
            if not rs:
                continue
            gm = lambda v: math.exp(statistics.fmean(math.log(a) for a in v))  # noqa: E731
            out.append(f"{mode:8} {name:8} geomean / anchor {gm([r['vs_anchor'] for r in rs]):6.2f}"
                       f"   geomean lax speedup {gm([r['lax_speedup'] for r in rs]):6.2f}"
                       f"   worst / anchor {max(r['vs_anchor'] for r in rs):6.2f}"
                       f"   over {len(rs)} layers")
    return "\n".join(out)


def machine() -> str:
    dev = jax.devices()[0]
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
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


def _write(rows, text, out_dir, rounds, dtype, with_torch, print_fn):
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "bench.md"
    md.write_text(f"Machine: {machine()}; dtype {jnp.dtype(dtype).name}; {rounds} rounds; "
                  f"torch {'on' if with_torch else 'off'}.\n\n{auto_table(rows)}\n\n"
                  f"```\n{summary(rows)}\n```\n\nAll rows:\n\n{text}\n")
    (out_dir / "bench.json").write_text(json.dumps(rows, indent=1))
    print_fn(auto_table(rows))
    print_fn(summary(rows))
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
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.2 * len(layers)), 8), sharex=True)
    for ax, mode in zip(axes, ("fwd", "fwd+bwd")):
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            vals = [next((r["vs_anchor"] for r in rows if r["layer"] == lay and r["mode"] == mode
                          and r["name"] == name and not r["note"]), np.nan) for lay in layers]
            ax.bar(np.arange(len(layers)) + j * width, vals, width, label=name)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylabel(f"{mode}: time / anchor")
    axes[1].set_xticks(np.arange(len(layers)) + 0.4, layers, rotation=30, ha="right", fontsize=8)
    axes[0].legend(ncol=4, fontsize=8)
    axes[0].set_title(f"jax_tconv bench — {machine()}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "bench.png", dpi=100)
    plt.close(fig)
    print_fn(f"wrote {out_dir / 'bench.png'}")
