"""Periodic super-resolution: zero padding leaves a seam at the wrap-around, circular none.

A field on a torus (a periodic simulation box, a climate model's longitude, a
texture that tiles) has no boundary: its left edge continues its right edge.
A transposed convolution that pads with zeros does not know that, and near the
edges it sees a wall of zeros. This script makes that visible and measures it:

- data: 2-D Gaussian random fields, periodic by construction (white noise
  shaped in Fourier space by a power spectrum ``(|k|^2 + k0^2)^(-slope/2)``),
  and their ``factor x factor`` block averages (also periodic) as low-resolution
  inputs;
- model: ``log2(factor)`` ``ConvTranspose(width, (4, 4), strides=2, padding=1)``
  layers with GELU, then ``ConvTranspose(1, (3, 3), padding=1)``, plus the
  nearest-neighbour enlargement of the input (a skip, exact on a torus);
- trained twice, with ``padding_mode="zeros"`` and ``padding_mode="circular"``
  (the adjoint of the circular convolution: the border of each layer's output
  wraps around instead of being cropped), same data, seed and steps.

Measured on held-out fields: the mean squared error per pixel as a function of
the distance to the array's edge (the seam of the torus), the **seam ratio**
(error within ``factor`` pixels of the edge / error at least ``4 * factor``
pixels inside), and the **shift error**: rolling the input by half a period
must roll the output by half a period (``max |f(roll x) - roll f(x)|``), which
only the circular model does, to float precision. The picture shows each
model's output tiled 2x2, where a seam shows as a cross.

    python examples/periodic_upsampling.py
"""

from __future__ import annotations

import _common
import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import jax_tconv
from jax_tconv.nn import linen as tlinen

MODES = ("zeros", "circular")


def random_fields(n: int, size: int, seed: int, *, slope: float = 5.0,
                  k0: float = 2.0) -> np.ndarray:
    """`n` periodic Gaussian random fields ``(n, size, size)``, zero mean, unit variance."""
    k = np.fft.fftfreq(size) * size                      # integer wavenumbers
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    amplitude = (k2 + k0 ** 2) ** (-slope / 4)            # power (|k|^2 + k0^2)^(-slope/2)
    amplitude[0, 0] = 0.0
    noise = np.random.default_rng(seed).standard_normal((n, size, size))
    fields = np.fft.ifft2(np.fft.fft2(noise) * amplitude).real
    fields /= fields.std(axis=(1, 2), keepdims=True)
    return fields.astype(np.float32)


def block_average(fields: np.ndarray, factor: int) -> np.ndarray:
    n, h, w = fields.shape
    return fields.reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


class Upsampler(nn.Module):
    """``(N, h, w) -> (N, h * factor, w * factor)`` with transposed convolutions."""

    padding_mode: str
    factor: int = 4
    width: int = 16
    method: str = "auto"

    @nn.compact
    def __call__(self, x):
        h = x[..., None]
        for _ in range(int(np.log2(self.factor))):
            h = nn.gelu(tlinen.ConvTranspose(self.width, (4, 4), strides=2, padding=1,
                                             padding_mode=self.padding_mode,
                                             method=self.method)(h))
        y = tlinen.ConvTranspose(1, (3, 3), padding=1, padding_mode=self.padding_mode,
                                 method=self.method)(h)[..., 0]
        return y + x.repeat(self.factor, axis=1).repeat(self.factor, axis=2)


def train(model, x, y, *, steps, batch, lr, seed, progress, desc):
    params = model.init(jax.random.key(seed), x[:1])
    opt = optax.adam(lr)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb):
        loss, grads = jax.value_and_grad(
            lambda p: jnp.mean((model.apply(p, xb) - yb) ** 2))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    losses = []
    for _ in _common.progress(range(steps), desc=desc, enabled=progress, leave=False):
        pick = rng.choice(len(x), batch, replace=False)
        params, opt_state, loss = step(params, opt_state, x[pick], y[pick])
        losses.append(float(loss))
    return params, losses


def distance_to_edge(size: int) -> np.ndarray:
    """Per pixel of a ``size x size`` array: pixels to the nearest edge (0 on the edge)."""
    r = np.arange(size)
    d = np.minimum(r, size - 1 - r)
    return np.minimum(d[:, None], d[None, :])


def evaluate(apply, params, x, y, factor: int) -> dict:
    pred = np.asarray(apply(params, x))
    err = ((pred - y) ** 2).mean(axis=0)                 # mean squared error per pixel
    d = distance_to_edge(y.shape[-1])
    # Per input pixel of distance (every sub-pixel position alike): d // factor.
    by_distance = [float(err[d // factor == j].mean()) for j in range(d.max() // factor + 1)]
    border, interior = float(err[d < factor].mean()), float(err[d >= 4 * factor].mean())
    half = x.shape[-1] // 2
    rolled = np.asarray(apply(params, np.roll(x, half, axis=(1, 2))))
    shift_error = float(np.abs(rolled - np.roll(pred, half * factor, axis=(1, 2))).max())
    return {"mse": float(err.mean()), "border_mse": border, "interior_mse": interior,
            "seam_ratio": border / interior, "shift_error": shift_error,
            "mse_by_input_pixels_to_edge": by_distance, "error_map": err, "prediction": pred[0]}


def draw(path, results, x, y, factor):
    fig = plt.figure(figsize=(16, 6.6))
    grid = fig.add_gridspec(2, 5, width_ratios=[1, 1, 1, 1.5, 1.7], wspace=0.45, hspace=0.3)
    vmax = float(np.abs(y[0]).max())
    err_max = max(float(r["error_map"].max()) for r in results.values())
    for row, (mode, r) in enumerate(results.items()):
        panels = [(x[0], f"input {x.shape[1]}x{x.shape[2]}\n(block average)"),
                  (y[0], f"target {y.shape[1]}x{y.shape[2]}\n"),
                  (r["prediction"], "output\n")]
        for col, (img, title) in enumerate(panels):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(img, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=9)
            if col == 0:
                ax.set_ylabel(f'padding_mode="{mode}"', fontsize=11)
        ax = fig.add_subplot(grid[row, 3])
        im = ax.imshow(np.tile(r["error_map"], (2, 2)), cmap="magma", vmin=0, vmax=err_max)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("squared error, held-out mean, tiled 2x2\n(the seam is the cross): "
                     f"seam ratio {r['seam_ratio']:.2f}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    ax = fig.add_subplot(grid[:, 4])
    for mode, r in results.items():
        ax.plot(r["mse_by_input_pixels_to_edge"], marker="o", label=f'padding_mode="{mode}"')
    ax.set_yscale("log")
    ax.set_xlabel("distance to the edge (the wrap-around seam), in input pixels")
    ax.set_ylabel("MSE per output pixel (held-out fields)")
    ax.yaxis.set_label_position("right")
    ax.yaxis.tick_right()
    ax.legend(fontsize=9)
    ax.set_title("error near the seam and inside", fontsize=10)
    fig.suptitle(f"{factor}x super-resolution of periodic fields with ConvTranspose layers: "
                 f"zero padding vs circular", fontsize=12)
    return _common.save_figure(fig, path, dpi=80)


def main(argv=None) -> dict:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=64, help="side of the high-resolution fields")
    p.add_argument("--factor", type=int, default=4, choices=[2, 4, 8],
                   help="upsampling factor (one stride-2 ConvTranspose per doubling)")
    p.add_argument("--train", type=int, default=512, help="training fields")
    p.add_argument("--test", type=int, default=128, help="held-out fields")
    p.add_argument("--steps", type=int, default=400, help="Adam steps per model")
    p.add_argument("--batch", type=int, default=16, help="fields per step")
    p.add_argument("--width", type=int, default=16, help="channels of the hidden layers")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--slope", type=float, default=5.0,
                   help="spectral slope of the fields: larger is smoother")
    p.add_argument("--method", default="auto", choices=["auto", *jax_tconv.METHODS],
                   help="the ConvTranspose formulation")
    args = _common.parse(p, argv)
    if args.size % args.factor or args.size // args.factor < 2:
        p.error(f"--size {args.size} must be a multiple of --factor {args.factor}, at least 2x")
    clock = _common.Clock()

    y_all = random_fields(args.train + args.test, args.size, args.seed, slope=args.slope)
    x_all = block_average(y_all, args.factor)
    x_train, y_train = x_all[:args.train], y_all[:args.train]
    x_test, y_test = x_all[args.train:], y_all[args.train:]
    print(f"{args.train} + {args.test} periodic fields {args.size}x{args.size}, inputs "
          f"{args.size // args.factor}x{args.size // args.factor} ({args.factor}x block averages)")

    results, losses = {}, {}
    for mode in MODES:
        model = Upsampler(mode, factor=args.factor, width=args.width, method=args.method)
        params, losses[mode] = train(model, x_train, y_train, steps=args.steps,
                                     batch=min(args.batch, args.train), lr=args.lr,
                                     seed=args.seed, progress=args.progress, desc=mode)
        results[mode] = evaluate(jax.jit(model.apply), params, x_test, y_test, args.factor)

    keys = ("mse", "border_mse", "interior_mse", "seam_ratio", "shift_error")
    table = _common.markdown_table(
        ["padding_mode", "test MSE", f"MSE, border (< {args.factor} px)",
         f"MSE, interior (>= {4 * args.factor} px)", "seam ratio", "shift error"],
        [[mode, *(f"{r[k]:.3g}" for k in keys)] for mode, r in results.items()])
    print(table)
    report = {"settings": {k: getattr(args, k) for k in ("size", "factor", "train", "test",
                                                        "steps", "batch", "width", "lr",
                                                        "method", "seed")},
              "results": {mode: {**{k: r[k] for k in keys},
                                 "final_train_loss": losses[mode][-1],
                                 "mse_by_input_pixels_to_edge":
                                     r["mse_by_input_pixels_to_edge"]}
                          for mode, r in results.items()}}
    paths = [draw(args.out / "periodic_upsampling.png", results, x_test, y_test, args.factor),
             _common.write_json(args.out / "periodic_upsampling.json", report)]
    _common.written(paths)
    clock.done("periodic_upsampling")
    return report


if __name__ == "__main__":
    main()
