"""Checkerboard artifacts, made visible and measurable: four ways to upsample by 2.

Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts" (Distill,
2016): a transposed convolution whose kernel size is not a multiple of its
stride gives neighbouring outputs different numbers of contributions (uneven
overlap), and generators built from it paint a checkerboard even before
training. Four small generators, identical but for their three 2x upsampling
layers (4x4 latent grid -> 8 -> 16 -> 32, ReLU between):

- ``ConvTranspose k3 s2``: ``ConvTranspose(f, (3, 3), strides=2, padding=1, output_padding=1)``
- ``ConvTranspose k4 s2``: ``ConvTranspose(f, (4, 4), strides=2, padding=1)``
- ``ResizeConv k3``: ``ResizeConv(f, (3, 3), strides=2, padding=1, output_padding=1)``
- ``SubPixelConv k3 + icnr``: ``SubPixelConv(f, (3, 3), upscale_factor=2)`` with
  ``kernel_init=icnr(lecun_normal(), 2)``

For each: the overlap map of one layer (`jax_tconv.checkerboard.overlap_map`),
outputs at random initialization, and outputs after a brief training that fits
smooth targets (scikit-learn's digits, bilinearly enlarged to 32x32, one fixed
latent per target). The figure that makes the checkerboard measurable is the
**Nyquist energy**: the share of an output's (non-constant) spectral power on
the lines ``f_x = 1/2`` or ``f_y = 1/2`` cycles per pixel, where a period-2
pattern puts all of its power. White noise has about 6%; nearest-neighbour
upsampling has exactly 0 (its 2x2 blocks cancel there); a smooth image ~0.
A second figure, the **high-band energy**, is the share with
``max(|f_x|, |f_y|) >= 1/4`` (any fine detail, checkerboard or not).

    python examples/checkerboard.py
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
from jax_tconv import initializers
from jax_tconv.checkerboard import overlap_map
from jax_tconv.nn import linen as tlinen

VARIANTS = ("ConvTranspose k3 s2", "ConvTranspose k4 s2", "ResizeConv k3",
            "SubPixelConv k3 + icnr")


def upsampler(variant: str, features: int, method: str):
    if variant == "ConvTranspose k3 s2":
        return tlinen.ConvTranspose(features, (3, 3), strides=2, padding=1, output_padding=1,
                                    method=method)
    if variant == "ConvTranspose k4 s2":
        return tlinen.ConvTranspose(features, (4, 4), strides=2, padding=1, method=method)
    if variant == "ResizeConv k3":
        return tlinen.ResizeConv(features, (3, 3), strides=2, padding=1, output_padding=1)
    return tlinen.SubPixelConv(features, (3, 3), upscale_factor=2,
                               kernel_init=initializers.icnr(nn.initializers.lecun_normal(), 2))


class Generator(nn.Module):
    """(N, 4, 4, C) latent grid -> (N, 32, 32): three 2x upsampling layers, ReLU between."""

    variant: str
    width: int = 64
    method: str = "auto"

    @nn.compact
    def __call__(self, z):
        h = z
        for features in (self.width, self.width // 2):
            h = nn.relu(upsampler(self.variant, features, self.method)(h))
        return upsampler(self.variant, 1, self.method)(h)[..., 0]


def one_layer_overlap(variant: str, size: int = 6) -> np.ndarray:
    """Contributions to each output of one upsampling layer on a size x size input."""
    if variant == "ConvTranspose k3 s2":
        return overlap_map((3, 3), 2, padding=1, output_padding=1, input_shape=(size, size))
    if variant == "ConvTranspose k4 s2":
        return overlap_map((4, 4), 2, padding=1, input_shape=(size, size))
    if variant == "ResizeConv k3":
        return overlap_map((3, 3), 2, padding=1, output_padding=1, input_shape=(size, size),
                           kind="resize")
    # overlap_map has no sub-pixel kind: a SAME 3x3 conv's tap count, each value copied 2x2.
    taps = jax_tconv.conv(jnp.ones((1, size, size, 1)), jnp.ones((3, 3, 1, 1)), padding=1)
    return np.asarray(taps[0, ..., 0]).round().astype(np.int64).repeat(2, 0).repeat(2, 1)


def spectral_shares(images) -> tuple[np.ndarray, np.ndarray]:
    """Per image: (Nyquist energy, high-band energy), shares of the non-DC spectral power."""
    images = np.asarray(images, np.float64)
    h, w = images.shape[-2:]
    power = np.abs(np.fft.fft2(images - images.mean(axis=(-2, -1), keepdims=True))) ** 2
    fy = np.abs(np.fft.fftfreq(h))[:, None]
    fx = np.abs(np.fft.fftfreq(w))[None, :]
    total = power.sum(axis=(-2, -1)) + 1e-30
    nyquist = (fy == 0.5) | (fx == 0.5)
    high = np.maximum(fy, fx) >= 0.25
    return (power * nyquist).sum(axis=(-2, -1)) / total, (power * high).sum(axis=(-2, -1)) / total


def targets(n: int, seed: int) -> np.ndarray:
    """`n` smooth 32x32 targets: digits bilinearly enlarged, scaled to [-1, 1]."""
    digits, _ = _common.load_digits()
    pick = np.random.default_rng(seed).choice(len(digits), n, replace=False)
    big = jax.image.resize(jnp.asarray(digits[pick]), (n, 32, 32), "linear")
    return np.asarray(big) * 2 - 1


def fit(model, params, z, y, *, steps, lr, progress, desc):
    opt = optax.adam(lr)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(
            lambda p: jnp.mean((model.apply(p, z) - y) ** 2))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    loss = jnp.nan
    for _ in _common.progress(range(steps), desc=desc, enabled=progress, leave=False):
        params, opt_state, loss = step(params, opt_state)
    return params, float(loss)


def interior(overlap: np.ndarray) -> str:
    """The range of an overlap map away from the border (2 outputs in from each edge)."""
    inner = overlap[2:-2, 2:-2]
    return f"{inner.min()}..{inner.max()}"


def draw(path, results, target_images, n_show):
    rows = len(results)
    cols = 1 + 3 * n_show
    fig = plt.figure(figsize=(1.9 * (cols + 3), 2.0 * rows + 0.6))
    grid = fig.add_gridspec(rows, cols + 3, wspace=0.12, hspace=0.25)
    for r, (name, res) in enumerate(results.items()):
        ax = fig.add_subplot(grid[r, 0])
        ax.imshow(res["overlap"], cmap="viridis", vmin=0, interpolation="nearest")
        ax.set_title(("overlap map, one layer\ninterior " if r == 0 else "interior ")
                     + interior(res["overlap"]), fontsize=8)
        ax.set_ylabel(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        panels = ([(img, "at init") for img in res["init_images"][:n_show]]
                  + [(img, "trained") for img in res["trained_images"][:n_show]]
                  + [(img, "its target") for img in target_images[:n_show]])
        for c, (img, label) in enumerate(panels, start=1):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(img, cmap="gray", interpolation="nearest")   # each image its own range
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=9)
    ax = fig.add_subplot(grid[:, cols + 1:])
    names = list(results)
    y = np.arange(len(names))
    ax.barh(y - 0.2, [results[n]["nyquist_init"] for n in names], 0.4, label="at init",
            color="C3")
    ax.barh(y + 0.2, [results[n]["nyquist_trained"] for n in names], 0.4, label="trained",
            color="C0")
    ax.axvline(spectral_shares(target_images)[0].mean(), color="k", ls=":", lw=1,
               label="targets")
    for i, n in enumerate(names):
        for dy, k in ((-0.2, "nyquist_init"), (0.2, "nyquist_trained")):
            if results[n][k] < 1e-6:                # zero: no bar on a log axis, say so
                ax.text(1.5e-6, i + dy, "0 (exactly)", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(1e-6, 1)
    ax.set_yticks(y, [n.replace(" + ", "\n+ ") for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("Nyquist energy: share of power at f = 1/2 (log)")
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Checkerboard artifacts: three 2x upsampling layers, four ways", fontsize=12)
    return _common.save_figure(fig, path)


def main(argv=None) -> dict:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=64,
                   help="random latents at init, and targets to fit")
    p.add_argument("--steps", type=int, default=200, help="training steps per variant")
    p.add_argument("--width", type=int, default=64, help="channels after the first layer")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--method", default="auto", choices=["auto", *jax_tconv.METHODS],
                   help="the ConvTranspose formulation")
    p.add_argument("--show", type=int, default=2, help="outputs drawn per variant and stage")
    args = _common.parse(p, argv)
    clock = _common.Clock()

    key = jax.random.key(args.seed)
    z = jax.random.normal(key, (args.samples, 4, 4, args.width))
    y = jnp.asarray(targets(args.samples, args.seed))
    target_nyquist, target_high = (float(v.mean()) for v in spectral_shares(y))
    results = {}
    for variant in _common.progress(VARIANTS, desc="variants", enabled=args.progress):
        model = Generator(variant, width=args.width, method=args.method)
        params = model.init(jax.random.key(args.seed + 1), z)
        apply = jax.jit(model.apply)
        init_out = np.asarray(apply(params, z))
        params, loss = fit(model, params, z, y, steps=args.steps, lr=args.lr,
                           progress=args.progress, desc=variant)
        trained_out = np.asarray(apply(params, z))
        (ny_i, hi_i), (ny_t, hi_t) = spectral_shares(init_out), spectral_shares(trained_out)
        results[variant] = {
            "overlap": one_layer_overlap(variant), "init_images": init_out[:args.show],
            "trained_images": trained_out[:args.show], "final_mse": loss,
            "nyquist_init": float(ny_i.mean()), "nyquist_trained": float(ny_t.mean()),
            "high_band_init": float(hi_i.mean()), "high_band_trained": float(hi_t.mean()),
        }

    keys = ("nyquist_init", "nyquist_trained", "high_band_init", "high_band_trained",
            "final_mse")
    rows = [[name, interior(r["overlap"]), *(f"{r[k]:.2e}" for k in keys)]
            for name, r in results.items()]
    rows.append(["targets (smooth digits)", "", "", f"{target_nyquist:.2e}", "",
                 f"{target_high:.2e}", ""])
    table = _common.markdown_table(
        ["upsampling", "overlap, one layer (interior)", "Nyquist energy, init",
         "Nyquist energy, trained", "high-band energy, init", "high-band energy, trained",
         "final MSE"], rows)
    print(f"{args.samples} outputs per variant, {args.steps} training steps:\n{table}")
    report = {name: {k: r[k] for k in keys} for name, r in results.items()}
    report["targets"] = {"nyquist": target_nyquist, "high_band": target_high}
    paths = [draw(args.out / "checkerboard.png", results, np.asarray(y), args.show),
             _common.write_json(args.out / "checkerboard.json", report)]
    (args.out / "checkerboard.md").write_text(
        f"# Checkerboard energies ({args.samples} outputs, {args.steps} steps)\n\n{table}\n")
    paths.append(args.out / "checkerboard.md")
    _common.written(paths)
    clock.done("checkerboard")
    return report


if __name__ == "__main__":
    main()
