"""``python benchmarks/bench.py --models``: whole decoders, one training step each.

Each model is written once, as a plain function of a params dict and of `Ops`,
the few operations it needs (transposed conv, conv, channel concatenation,
activations). Each contestant brings its own `Ops`: jax_tconv's "auto" in
channels-last and in channels-first layout, `lax.conv_transpose`, Flax's
`nn.ConvTranspose` and PyTorch's ``conv_transpose{1,2,3}d``, so all compute the
same function, only the transposed convolution (and the layout) differs. The
weights are drawn once in PyTorch's layout and converted for each.

A training step is the loss and its gradient with respect to every kernel
(``jax.value_and_grad``, jitted; ``torch.autograd.grad`` for PyTorch). Before
timing, the run checks that every contestant gives the same loss (relative
1e-4) and the same gradients, and stops if not (`ModelMismatch`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jax_tconv
from bench import (
    LAYOUTS,
    Peak,
    _block,
    _Call,
    _check_torch,
    _compile_stats,
    dimension_numbers_for,
    _progress,
    _timed,
    layout_label,
    machine,
    torch_setup,
)

LOSS_TOLERANCE = 1e-4   # |loss - reference| / |reference|
GRAD_TOLERANCE = 1e-3   # ||grad - reference|| / ||reference||, per kernel


@dataclasses.dataclass(frozen=True)
class TConv:
    """A transposed conv: PyTorch's ConvTranspose(c_in, c_out, k, s, p, op), no bias."""

    c_in: int
    c_out: int
    k: tuple[int, ...]
    s: int
    p: int
    op: int = 0

    def out(self, i: int) -> int:
        return (i - 1) * self.s - 2 * self.p + self.k[0] + self.op


@dataclasses.dataclass(frozen=True)
class Conv:
    """A stride-1 convolution that keeps the size (odd k, padding k // 2), no bias."""

    c_in: int
    c_out: int
    k: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Model:
    """A decoder: its layers (the params, in order of use), its inputs and its forward.

    `inputs` holds channels-first shapes ``(N, C, *spatial)`` of ``x`` and of any
    skip connections; `forward(model, params, inputs, ops)` returns the output.
    """

    name: str
    layers: Mapping[str, TConv | Conv]
    inputs: Mapping[str, tuple[int, ...]]
    forward: Callable[..., Any]

    @property
    def nd(self) -> int:
        return len(self.inputs["x"]) - 2


class Ops(NamedTuple):
    """What a model needs from a framework, in one layout (see `jax_ops`, `torch_ops`)."""

    tconv: Callable[..., Any]        # (x, w, TConv) -> y
    conv: Callable[..., Any]         # (x, w, Conv) -> y
    cat: Callable[..., Any]          # (a, b) -> a and b concatenated along channels
    relu: Callable[..., Any]
    leaky_relu: Callable[..., Any]
    tanh: Callable[..., Any]


# --- the models: one definition each, any Ops ----------------------------------------------

def _dcgan_forward(m, params, inputs, ops):
    h, names = inputs["x"], list(m.layers)
    for name in names:
        h = ops.tconv(h, params[name], m.layers[name])
        h = ops.tanh(h) if name == names[-1] else ops.relu(h)
    return h


def _unet_forward(m, params, inputs, ops):
    h, j = inputs["x"], 0
    while f"up{j}" in m.layers:
        h = ops.tconv(h, params[f"up{j}"], m.layers[f"up{j}"])
        h = ops.relu(ops.conv(ops.cat(h, inputs[f"skip{j}"]), params[f"conv{j}"],
                              m.layers[f"conv{j}"]))
        j += 1
    return h


def _stack_forward(act):
    """Transposed convs with `act` (an `Ops` field name) between them."""
    def forward(m, params, inputs, ops):
        h, names = inputs["x"], list(m.layers)
        for name in names:
            h = ops.tconv(h, params[name], m.layers[name])
            if name != names[-1]:
                h = getattr(ops, act)(h)
        return h
    return forward


def dcgan(batch: int = 16, width: int = 64) -> Model:
    """DCGAN's generator from 4x4x(8 width) to 64x64x3: four k4 s2 p1, ReLU, tanh at the end."""
    c = [8 * width, 4 * width, 2 * width, width, 3]
    layers = {f"up{j}": TConv(c[j], c[j + 1], (4, 4), 2, 1) for j in range(4)}
    return Model(f"DCGAN generator 4->64, {c[0]}->3, batch {batch}", layers,
                 {"x": (batch, c[0], 4, 4)}, _dcgan_forward)


def unet(batch: int = 4, width: int = 128, size: int = 8) -> Model:
    """A U-Net decoder: k2 s2, k3 s2 p1 op1, k2 s2 up-steps, each followed by concatenating
    a skip (random, of the right shape) and a 3x3 conv with ReLU."""
    geometry = [((2, 2), 0, 0), ((3, 3), 1, 1), ((2, 2), 0, 0)]
    layers: dict[str, TConv | Conv] = {}
    inputs: dict[str, tuple[int, ...]] = {"x": (batch, width, size, size)}
    c, i = width, size
    for j, (k, p, op) in enumerate(geometry):
        up = TConv(c, c // 2, k, 2, p, op)
        i = up.out(i)
        layers[f"up{j}"] = up
        layers[f"conv{j}"] = Conv(c, c // 2, (3, 3))      # the up-step and the skip, c // 2 each
        inputs[f"skip{j}"] = (batch, c // 2, i, i)
        c //= 2
    return Model(f"U-Net decoder {size}->{i}, {width}->{c}, batch {batch}", layers, inputs,
                 _unet_forward)


def vnet(batch: int = 2, width: int = 64, size: int = 4) -> Model:
    """A 3-D V-Net decoder: three k2 s2 transposed convs, ReLU between."""
    c = [width, width // 2, width // 4, width // 8]
    layers = {f"up{j}": TConv(c[j], c[j + 1], (2, 2, 2), 2, 0) for j in range(3)}
    return Model(f"V-Net 3-D decoder {size}->{size * 8}, {c[0]}->{c[-1]}, batch {batch}", layers,
                 {"x": (batch, c[0], size, size, size)}, _stack_forward("relu"))


def vocoder(batch: int = 4, width: int = 128, length: int = 32) -> Model:
    """A 1-D vocoder upsampler: k16 s8, k16 s8, k4 s2, k4 s2 (x256), leaky ReLU between."""
    c = [width, width // 2, width // 4, width // 8, width // 16]
    geometry = [(16, 8, 4), (16, 8, 4), (4, 2, 1), (4, 2, 1)]
    layers = {f"up{j}": TConv(c[j], c[j + 1], (k,), s, p) for j, (k, s, p) in enumerate(geometry)}
    return Model(f"1-D vocoder upsampler {length}->{length * 256}, {c[0]}->{c[-1]}, batch {batch}",
                 layers, {"x": (batch, c[0], length)}, _stack_forward("leaky_relu"))


def suite() -> list[Model]:
    """The models `--models` times: small enough for a few minutes on a 2-core CPU."""
    return [dcgan(), unet(), vnet(), vocoder()]


def tiny_suite() -> list[Model]:
    """The same four models at a size a test runs in seconds."""
    return [dcgan(batch=2, width=4), unet(batch=1, width=16, size=3),
            vnet(batch=1, width=16, size=2), vocoder(batch=1, width=32, length=5)]


# --- the contestants' Ops -------------------------------------------------------------------

def _lax_padding(layer: TConv):
    """lax.conv_transpose pads the dilated input: k - 1 - p below, k - 1 - p + op above."""
    return [(k - 1 - layer.p, k - 1 - layer.p + layer.op) for k in layer.k]


def jax_ops(name: str, layout: str = "nhwc") -> Ops:
    """`Ops` for a jax contestant: "auto" (jax_tconv), "lax" or "flax", in `layout`."""
    ch = -1 if layout == "nhwc" else 1

    def conv(x, w, layer):
        nd = x.ndim - 2
        return lax.conv_general_dilated(x, w, (1,) * nd, [(k // 2, k // 2) for k in layer.k],
                                        dimension_numbers=dimension_numbers_for(nd, layout))

    if name == "auto":
        def tconv(x, w, layer):
            return jax_tconv.conv_transpose(x, w, strides=layer.s, padding=layer.p,
                                       output_padding=layer.op,
                                       dimension_numbers=dimension_numbers_for(x.ndim - 2, layout))
    elif name == "lax":
        def tconv(x, w, layer):
            nd = x.ndim - 2
            return lax.conv_transpose(x, w, (layer.s,) * nd, _lax_padding(layer),
                                      dimension_numbers=dimension_numbers_for(nd, layout), transpose_kernel=True)
    elif name == "flax":
        if layout != "nhwc":
            raise ValueError("jax_ops: Flax's nn.ConvTranspose has no layout option; "
                             f"it runs channels-last only, not {layout!r}")

        def tconv(x, w, layer):
            import flax.linen as nn
            module = nn.ConvTranspose(layer.c_out, layer.k, (layer.s,) * (x.ndim - 2),
                                      padding=_lax_padding(layer), transpose_kernel=True,
                                      use_bias=False)
            return module.apply({"params": {"kernel": w}}, x)
    else:
        raise ValueError(f"jax_ops: name must be 'auto', 'lax' or 'flax', got {name!r}")
    return Ops(tconv, conv, lambda a, b: jnp.concatenate([a, b], axis=ch), jax.nn.relu,
               lambda x: jax.nn.leaky_relu(x, 0.2), jnp.tanh)


def torch_ops() -> Ops:
    """`Ops` for PyTorch, channels-first, kernels in its own layout."""
    import torch
    import torch.nn.functional as F

    def tconv(x, w, layer):
        f = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[x.ndim - 3]
        return f(x, w, stride=layer.s, padding=layer.p, output_padding=layer.op)

    def conv(x, w, layer):
        f = (F.conv1d, F.conv2d, F.conv3d)[x.ndim - 3]
        return f(x, w, padding=[k // 2 for k in layer.k])

    return Ops(tconv, conv, lambda a, b: torch.cat([a, b], 1), torch.relu,
               lambda x: F.leaky_relu(x, 0.2), torch.tanh)


# Every contestant: (name, layout of its arrays). jax_tconv runs in the layouts asked for.
def contestants(layouts=LAYOUTS, with_torch=True):
    out = [("auto", layout) for layout in layouts] + [("lax", "nhwc"), ("flax", "nhwc")]
    return out + [("torch", "nchw")] if with_torch else out


def _kernel_perm(nd, layout):
    """PyTorch's kernels, (C_in, C_out, *k) or (C_out, C_in, *k), to `layout`'s:
    channels-last kernels put the taps first and the two channel axes reversed."""
    return tuple(range(nd + 2)) if layout == "nchw" else (*range(2, nd + 2), 1, 0)


def _act_perm(nd, layout):
    return tuple(range(nd + 2)) if layout == "nchw" else (0, *range(2, nd + 2), 1)


def canonical(model: Model, seed: int = 0):
    """Params (PyTorch's layouts), inputs and target (channels-first), as NumPy float32."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, layer in model.layers.items():
        taps = math.prod(layer.k)
        if isinstance(layer, TConv):   # fan-in of one output: C_in * taps / s^nd
            shape, fan = (layer.c_in, layer.c_out, *layer.k), layer.c_in * taps / layer.s**model.nd
        else:
            shape, fan = (layer.c_out, layer.c_in, *layer.k), layer.c_in * taps
        params[name] = (rng.standard_normal(shape) * math.sqrt(2 / fan)).astype(np.float32)
    inputs = {k: rng.standard_normal(s).astype(np.float32) for k, s in model.inputs.items()}
    y = jax.eval_shape(lambda p, i: model.forward(model, p, i, jax_ops("auto", "nchw")),
                       *_shapes(model))
    target = (0.5 * rng.standard_normal(y.shape)).astype(np.float32)
    return params, inputs, target


def useful_flops(model: Model) -> tuple[int, int]:
    """(forward, training step) FLOPs of the model's convolutions.

    A convolution's forward is ``2 * N * C_in * C_out * taps`` per position of its
    larger side (the transposed conv's input, the conv's output); the step adds
    the kernel gradient (as much again) and the input gradient (again) of every
    convolution but the first, whose input is the model's input.
    """
    record = []
    base = jax_ops("auto", "nchw")

    def tconv(x, w, layer):
        record.append(2 * x.shape[0] * math.prod(x.shape[2:]) * layer.c_in * layer.c_out
                      * math.prod(layer.k))
        return base.tconv(x, w, layer)

    def conv(x, w, layer):
        y = base.conv(x, w, layer)
        record.append(2 * y.shape[0] * math.prod(y.shape[2:]) * layer.c_in * layer.c_out
                      * math.prod(layer.k))
        return y

    jax.eval_shape(lambda p, i: model.forward(model, p, i, base._replace(tconv=tconv, conv=conv)),
                   *_shapes(model))
    return sum(record), 3 * sum(record) - record[0]


def _shapes(model: Model):
    """Params and inputs as `canonical` lays them out, shapes only (for tracing)."""
    def shaped(shape):
        return jax.ShapeDtypeStruct(shape, jnp.float32)
    params = {name: shaped((layer.c_in, layer.c_out, *layer.k) if isinstance(layer, TConv)
                           else (layer.c_out, layer.c_in, *layer.k))
              for name, layer in model.layers.items()}
    return params, {k: shaped(s) for k, s in model.inputs.items()}


def _convert(model, params, inputs, target, layout):
    nd = model.nd
    kp, ap = _kernel_perm(nd, layout), _act_perm(nd, layout)
    return ({k: np.ascontiguousarray(v.transpose(kp)) for k, v in params.items()},
            {k: np.ascontiguousarray(v.transpose(ap)) for k, v in inputs.items()},
            np.ascontiguousarray(target.transpose(ap)))


def _grads_back(model, grads, layout):
    """Gradients in `layout`'s kernel order, back to PyTorch's."""
    inv = np.argsort(_kernel_perm(model.nd, layout))
    return {k: np.asarray(v, np.float64).transpose(inv) for k, v in grads.items()}


def training_steps(model: Model, contestant_list):
    """(name, layout) -> a callable that runs one training step and returns (loss, grads)."""
    params, inputs, target = canonical(model)
    steps = {}
    for name, layout in contestant_list:
        p, i, t = _convert(model, params, inputs, target, layout)
        if name == "torch":
            steps[(name, layout)] = _torch_step(model, p, i, t)
            continue
        ops = jax_ops(name, layout)

        def loss(params, inputs, target, ops=ops):
            return jnp.mean((model.forward(model, params, inputs, ops) - target) ** 2)

        steps[(name, layout)] = _Call(jax.value_and_grad(loss), *jax.device_put((p, i, t)))
    return steps


def _torch_step(model, params, inputs, target):
    import torch

    tp = {k: torch.from_numpy(v).requires_grad_() for k, v in params.items()}
    ti = {k: torch.from_numpy(v) for k, v in inputs.items()}
    tt = torch.from_numpy(target)
    ops = torch_ops()

    def step():
        loss = ((model.forward(model, tp, ti, ops) - tt) ** 2).mean()
        return loss.detach(), dict(zip(tp, torch.autograd.grad(loss, list(tp.values()))))
    return step


class ModelMismatch(RuntimeError):
    """Contestants disagree on a model's loss or gradients: no timing is worth reporting."""


def check(model: Model, results) -> dict:
    """Compare every contestant's (loss, grads) with the first's; raise `ModelMismatch` if off.

    Returns, per contestant, its loss, the relative loss difference and the
    worst relative gradient difference (norm of the difference over the norm).
    """
    out, problems = {}, []
    (ref_key, (ref_loss, ref_grads)), *_ = results.items()
    for key, (loss, grads) in results.items():
        d_loss = abs(loss - ref_loss) / abs(ref_loss)
        d_grad = max(np.linalg.norm(grads[k] - ref_grads[k]) / np.linalg.norm(ref_grads[k])
                     for k in ref_grads)
        out[key] = dict(loss=loss, loss_rel=d_loss, grad_rel=float(d_grad))
        if not (d_loss <= LOSS_TOLERANCE and d_grad <= GRAD_TOLERANCE):
            problems.append(f"{key[0]} ({key[1].upper()}): loss {loss:.8g} against "
                            f"{ref_loss:.8g} of {ref_key[0]} ({ref_key[1].upper()}), "
                            f"relative {d_loss:.2e} (tolerance {LOSS_TOLERANCE:g}); gradients "
                            f"relative {d_grad:.2e} (tolerance {GRAD_TOLERANCE:g})")
    if problems:
        raise ModelMismatch(f"{model.name}: the contestants disagree, so their times would "
                            "not compare the same computation:\n  " + "\n  ".join(problems))
    return out


def evaluate(model: Model, steps) -> dict:
    """Run every step once (compiling it), convert the results, and `check` them."""
    results = {}
    for (name, layout), step in steps.items():
        loss, grads = _block(step())
        results[(name, layout)] = (float(np.asarray(loss)), _grads_back(model, grads, layout))
    return check(model, results)


def run(models, *, rounds=5, with_torch=True, layouts=LAYOUTS, out_dir=None, progress=True,
        print_fn=print):
    """Time one float32 training step of each model for every contestant; return the rows."""
    with_torch = _check_torch(with_torch, print_fn)
    if not models:
        return []
    peak = Peak(jnp.float32)
    rows = []
    bar = _progress(len(models), progress)
    for model in models:
        steps = training_steps(model, contestants(layouts, with_torch))
        stats = {key: _compile_stats(step) for key, step in steps.items()}
        agreement = evaluate(model, steps)        # also the warm-up call of each step
        fwd_flops, step_flops = useful_flops(model)
        medians, peak_gflops, _ = _timed(steps, rounds, peak)
        for (name, layout), ms in medians.items():
            compile_s, temp = stats[(name, layout)]
            gflops = step_flops / (ms * 1e6)
            rows.append(dict(model=model.name, name=name, layout=layout,
                             label=layout_label(layout, model.nd), ms=ms, compile_s=compile_s,
                             temp=temp, flops=step_flops, forward_flops=fwd_flops, gflops=gflops,
                             peak_gflops=peak_gflops, peak_pct=100 * gflops / peak_gflops,
                             **agreement[(name, layout)]))
        bar.update()
    bar.close()
    tables = format_tables(rows)
    print_fn(tables)
    print_fn(peak.describe())
    if out_dir is not None:
        out_dir = pathlib.Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        md = out_dir / "models.md"
        md.write_text(f"Machine: {machine()}; float32; {rounds} rounds; "
                      f"{torch_setup() if with_torch else 'torch off'}; jax_tconv layouts "
                      f"{', '.join(layouts)}; {peak.describe()}.\n\n{tables}\n")
        (out_dir / "models.json").write_text(json.dumps(rows, indent=1))
        print_fn(f"wrote {md}")
        print_fn(f"wrote {out_dir / 'models.json'}")
    return rows


COLUMNS = [("auto", "nhwc"), ("auto", "nchw"), ("torch", "nchw"), ("lax", "nhwc"),
           ("flax", "nhwc")]


def _col(name, layout):
    return f"{name} {layout.upper()}"


def format_tables(rows) -> str:
    """Times (and share of the peak), ratios to "auto", memory and compile time, agreement."""
    by = {(r["model"], r["name"], r["layout"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    cols = [c for c in COLUMNS if any((m, *c) in by for m in models)]
    nan = float("nan")

    def get(m, c, key):
        return by[(m, *c)][key] if (m, *c) in by else nan

    t1 = ["| model | step GFLOP | " + " | ".join(f"{_col(*c)} ms (% of peak)" for c in cols)
          + " |", "|---|---:|" + "---:|" * len(cols)]
    for m in models:
        cells = [f"{get(m, c, 'ms'):.1f} ({get(m, c, 'peak_pct'):.1f}%)" for c in cols]
        flops = next(r["flops"] for r in rows if r["model"] == m)
        t1.append(f"| {m} | {flops / 1e9:.2f} | " + " | ".join(cells) + " |")
    autos = [c for c in cols if c[0] == "auto"]
    others = [c for c in cols if c[0] != "auto"]
    t2 = ["| model | " + " | ".join(f"{_col(*o)} / {_col(*a)}" for o in others for a in autos)
          + " |", "|---|" + "---:|" * (len(others) * len(autos))]
    for m in models:
        t2.append(f"| {m} | " + " | ".join(f"{get(m, o, 'ms') / get(m, a, 'ms'):.2f}"
                                           for o in others for a in autos) + " |")
    jcols = [c for c in cols if c[0] != "torch"]
    t3 = ["| model | " + " | ".join(f"{_col(*c)} temp MiB" for c in jcols) + " | "
          + " | ".join(f"{_col(*c)} compile s" for c in jcols) + " |",
          "|---|" + "---:|" * (2 * len(jcols))]
    for m in models:
        t3.append(f"| {m} | " + " | ".join(f"{get(m, c, 'temp') / 2**20:.2f}" for c in jcols)
                  + " | " + " | ".join(f"{get(m, c, 'compile_s'):.2f}" for c in jcols) + " |")
    t4 = ["| model | loss | " + " | ".join(f"{_col(*c)}: loss / grad rel. diff" for c in cols)
          + " |", "|---|---:|" + "---:|" * len(cols)]
    for m in models:
        t4.append(f"| {m} | {get(m, cols[0], 'loss'):.6g} | "
                  + " | ".join(f"{get(m, c, 'loss_rel'):.1e} / {get(m, c, 'grad_rel'):.1e}"
                               for c in cols) + " |")
    return "\n\n".join([
        "Median time of one training step (value and gradient w.r.t. every kernel), and its "
        "useful FLOP rate as a share of the matmul peak:", "\n".join(t1),
        "Time over jax_tconv's \"auto\" time (above 1: auto is faster):", "\n".join(t2),
        "XLA's temporary memory and compile time of the jitted step:", "\n".join(t3),
        f"Agreement, checked before timing (against {_col(*cols[0])}; tolerances: loss "
        f"{LOSS_TOLERANCE:g}, gradients {GRAD_TOLERANCE:g}, relative):", "\n".join(t4)])
