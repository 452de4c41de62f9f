"""Unrolled deconvolution: gradient steps whose Cᵀ is the exact, tied adjoint of a learned C.

Recover 16x16 digits (scikit-learn's 8x8 digits, upsampled) from a blurred,
2x-downsampled, noisy observation ``b = A x + noise`` (A: a Gaussian blur and
stride 2). A few steps of projected gradient descent on ``|C x - b|^2``,
unrolled into a network (Gregor & LeCun's LISTA, Adler & Öktem's learned
gradient schemes, in their simplest form)::

    x_0 = bicubic(b)
    x_{k+1} = clip(x_k - η_k Cₖᵀ (Cₖ x_k - b), 0, 1)

where each ``Cₖ`` is a learned 5x5 stride-2 convolution (``flax.nnx.Conv``),
``Cₖᵀ`` is its exact adjoint on the same kernel (``jax_tconv.nn.adjoint``:
trained together, one parameter), and the step size ``η_k = α_k / σ_k²``
comes from the operator norm ``σ_k = |Cₖ|₂`` (``jax_tconv.operator_norm``,
recomputed at every training step, differentiable), with a learned
``α_k ∈ (0, 2)``, the range in which a gradient step on ``|C x - b|^2``
cannot diverge.

Compared on held-out digits, by PSNR and SSIM against the truth:

- ``tied``: the network above;
- ``untied``: the same network with ``Cₖᵀ`` replaced by an independent
  ``jax_tconv.nn.nnx.ConvTranspose`` (twice the kernels; the step size uses
  both norms, ``η_k = α_k / (|Cₖ| |Dₖ|)``), started from the same weights;
- ``bicubic``: the starting point, ``jax.image.resize(b, ..., "cubic")``.

    python examples/unrolled_deconvolution.py
"""

from __future__ import annotations

import _common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

import jax_tconv
from jax_tconv.nn import adjoint
from jax_tconv.nn import nnx as tnnx

SIZE = 16                       # the images' side; observations are SIZE // 2
VARIANTS = ("bicubic", "untied", "tied")

# ----------------------------------------------------------------------------
# Data: digits, and what the camera sees of them.


def gaussian_kernel(sigma: float, k: int) -> np.ndarray:
    t = np.arange(k) - (k - 1) / 2
    g = np.exp(-t ** 2 / (2 * sigma ** 2))
    g2 = np.outer(g, g)
    return (g2 / g2.sum()).astype(np.float32)


def make_data(args):
    """Truth ``(n, 16, 16, 1)`` in [0, 1] and observations ``(n, 8, 8, 1)``, train and test."""
    images, _ = _common.load_digits()
    x = jax.image.resize(jnp.asarray(images)[..., None], (len(images), SIZE, SIZE, 1), "cubic")
    x = np.clip(np.asarray(x), 0, 1)
    # A 4x4 kernel, stride 2, padding (1, 1): observation j is centred between pixels 2j and
    # 2j + 1, where jax.image.resize puts it too (half-pixel centres): bicubic is aligned.
    blur = gaussian_kernel(args.blur, 4)[..., None, None]          # (4, 4, 1, 1)
    b = np.asarray(jax_tconv.conv(x, blur, strides=2, padding="SAME"))
    b = b + args.noise * np.random.default_rng(args.seed + 1).standard_normal(b.shape)
    order = np.random.default_rng(args.seed).permutation(len(x))
    cut = int(0.75 * len(x))
    train, test = order[:cut], order[cut:]
    return (x[train], b[train].astype(np.float32)), (x[test], b[test].astype(np.float32))


def bicubic(b):
    n = b.shape[0]
    return jnp.clip(jax.image.resize(b, (n, SIZE, SIZE, 1), "cubic"), 0, 1)


# ----------------------------------------------------------------------------
# The network.


def box(key, shape, dtype=jnp.float32):
    """Every C_k starts as a 5x5 average, plus a little noise (same draw for both networks)."""
    k = shape[0] * shape[1]
    return (jnp.ones(shape, dtype) / k + 0.01 * jax.random.normal(key, shape, dtype) / k)


class Unrolled(nnx.Module):
    """``steps`` projected gradient steps; Cₖᵀ = adjoint(Cₖ) if ``tied``, else a ConvTranspose."""

    def __init__(self, steps: int, kernel: int, *, tied: bool, tol: float, seed: int):
        rngs = nnx.Rngs(seed)
        conv = dict(strides=2, padding="SAME", use_bias=False, kernel_init=box)
        self.tied, self.tol = tied, tol
        self.down = nnx.List([nnx.Conv(1, 1, (kernel, kernel), rngs=rngs, **conv)
                              for _ in range(steps)])
        if tied:
            self.up = nnx.List([adjoint(c) for c in self.down])   # the same kernel Params
        else:
            self.up = nnx.List([tnnx.ConvTranspose(1, 1, (kernel, kernel), rngs=rngs, **conv)
                                for _ in range(steps)])
            for u, c in zip(self.up, self.down):                  # the same start, not shared
                u.kernel[...] = c.kernel[...]
        self.alpha = nnx.Param(jnp.zeros((steps,)))               # α = 2 sigmoid(0) = 1 at start

    def norm(self, kernel):
        """|C|₂ for a 16x16 input; a ConvTranspose kernel is its forward conv's, same norm."""
        return jax_tconv.operator_norm(kernel, (1, SIZE, SIZE, 1), strides=2, padding="SAME",
                                       tol=self.tol, max_iter=100).value

    def step_sizes(self):
        out = []
        for k, (c, u) in enumerate(zip(self.down, self.up)):
            sigma_c = self.norm(c.kernel[...])
            sigma_u = sigma_c if self.tied else self.norm(u.kernel[...])
            out.append(2 * jax.nn.sigmoid(self.alpha[k]) / (sigma_c * sigma_u))
        return out

    def __call__(self, b):
        x = bicubic(b)
        for c, u, eta in zip(self.down, self.up, self.step_sizes()):
            x = jnp.clip(x - eta * u(c(x) - b, output_shape=(SIZE, SIZE)), 0, 1)
        return x


def train(model, data, args, desc):
    """Adam on the mean squared error; returns the trained model and the loss curve."""
    x_train, b_train = map(jnp.asarray, data)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt = optax.adam(optax.cosine_decay_schedule(args.lr, args.steps))
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, key):
        idx = jax.random.randint(key, (args.batch,), 0, x_train.shape[0])

        def loss(params):
            net = nnx.merge(graphdef, params, rest)
            return jnp.mean((net(b_train[idx]) - x_train[idx]) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    key = jax.random.key(args.seed + 2)          # the same batches for every network
    losses = []
    bar = _common.progress(range(args.steps), desc=desc, enabled=args.progress)
    for i in bar:
        key, sub = jax.random.split(key)
        params, opt_state, value = step(params, opt_state, sub)
        losses.append(value)
        if i % 100 == 99:
            bar.set_postfix(mse=f"{float(value):.4f}")
    return nnx.merge(graphdef, params, rest), np.asarray(losses, np.float32)


# ----------------------------------------------------------------------------
# Scores.


def psnr(pred, truth):
    """Per image, for data in [0, 1]: ``10 log10(1 / MSE)``."""
    mse = np.mean((np.asarray(pred, np.float64) - truth) ** 2, axis=(1, 2, 3))
    return 10 * np.log10(1 / np.maximum(mse, 1e-12))


def ssim(pred, truth, *, sigma=1.5, k=7):
    """Per image: mean SSIM (Wang et al. 2004) over 7x7 Gaussian windows, data range 1."""
    w = gaussian_kernel(sigma, k).astype(np.float64)
    a = np.asarray(pred, np.float64)[..., 0]
    b = np.asarray(truth, np.float64)[..., 0]

    def local(img):
        win = np.lib.stride_tricks.sliding_window_view(img, (k, k), axis=(1, 2))
        return np.einsum("nijab,ab->nij", win, w)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = local(a), local(b)
    var_a, var_b = local(a * a) - mu_a ** 2, local(b * b) - mu_b ** 2
    cov = local(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
         / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
    return s.mean(axis=(1, 2))


def draw(path, x, b, preds, scores, n, title):
    cols = ["truth", "observed (8x8)", *VARIANTS]
    fig, axes = plt.subplots(n, len(cols), figsize=(1.7 * len(cols), 1.75 * n + 0.6),
                             squeeze=False)
    for r in range(n):
        panels = [x[r], b[r], *(preds[v][r] for v in VARIANTS)]
        for c, img in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= 2:
                ax.set_xlabel(f"{scores[cols[c]]['psnr_each'][r]:.1f} dB", fontsize=8)
            if r == 0:
                s = scores.get(cols[c], {})
                head = cols[c] if c < 2 else (
                    f"{cols[c]}\n{s['psnr']:.2f} dB, SSIM {s['ssim']:.3f}")
                ax.set_title(head, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _common.save_figure(fig, path)


def main(argv=None) -> dict:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000, help="training steps per network")
    p.add_argument("--unroll", type=int, default=5, help="gradient steps in the network")
    p.add_argument("--kernel", type=int, default=5, help="side of each learned kernel C_k")
    p.add_argument("--batch", type=int, default=64, help="batch size")
    p.add_argument("--lr", type=float, default=2e-2, help="peak Adam learning rate (cosine)")
    p.add_argument("--blur", type=float, default=1.0, help="std of the Gaussian blur (pixels)")
    p.add_argument("--noise", type=float, default=0.02, help="std of the observation noise")
    p.add_argument("--tol", type=float, default=1e-4, help="operator_norm's tolerance")
    p.add_argument("--panels", type=int, default=6, help="held-out digits drawn")
    args = _common.parse(p, argv)
    clock = _common.Clock()

    (x_train, b_train), (x_test, b_test) = make_data(args)
    print(f"{len(x_train)} training and {len(x_test)} held-out digits, {SIZE}x{SIZE}; observed: "
          f"Gaussian blur (std {args.blur}), stride 2, noise std {args.noise} -> "
          f"{SIZE // 2}x{SIZE // 2}")

    preds = {"bicubic": np.asarray(bicubic(jnp.asarray(b_test)))}
    info, losses = {"bicubic": {"parameters": 0}}, {}
    for name in ("untied", "tied"):
        model = Unrolled(args.unroll, args.kernel, tied=name == "tied", tol=args.tol,
                         seed=args.seed)
        n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model,
                                                                                nnx.Param)))
        timer = _common.Clock()
        model, losses[name] = train(model, (x_train, b_train), args, desc=name)
        preds[name] = np.asarray(jax.jit(lambda b, m=model: m(b))(jnp.asarray(b_test)))
        if name == "tied":
            assert all(u.kernel is c.kernel for u, c in zip(model.up, model.down))
        sizes, norms = nnx.jit(lambda m: (m.step_sizes(),
                                          [m.norm(c.kernel[...]) for c in m.down]))(model)
        sizes, norms = [float(s) for s in sizes], [float(s) for s in norms]
        info[name] = {"parameters": n_params, "train_seconds": round(timer.seconds(), 1),
                      "final_mse": float(losses[name][-50:].mean()),
                      "operator_norms": [round(s, 4) for s in norms],
                      "step_sizes": [round(s, 4) for s in sizes]}

    scores = {}
    for name in VARIANTS:
        each = psnr(preds[name], x_test)
        scores[name] = {"psnr": float(each.mean()), "ssim": float(ssim(preds[name], x_test).mean()),
                        "psnr_each": [round(float(v), 2) for v in each[:args.panels]], **info[name]}
    rows = [[name, f"{s['psnr']:.2f}", f"{s['ssim']:.4f}", s["parameters"],
             s.get("train_seconds", "")] for name, s in scores.items()]
    table = _common.markdown_table(["reconstruction", "PSNR (dB)", "SSIM", "parameters",
                                    "train s"], rows)
    print(f"\nheld-out digits ({len(x_test)}), {args.unroll} unrolled steps, {args.steps} "
          f"training steps:\n{table}")
    print("tied: |C_k| = " + ", ".join(f"{s:.3f}" for s in info["tied"]["operator_norms"])
          + "; step sizes = " + ", ".join(f"{s:.3f}" for s in info["tied"]["step_sizes"]))

    title = (f"Unrolled deconvolution, {args.unroll} steps: held-out digits "
             f"(blur {args.blur}, stride 2, noise {args.noise})")
    report = {"size": SIZE, "unroll": args.unroll, "steps": args.steps, "blur": args.blur,
              "noise": args.noise, "test_digits": len(x_test), "results": scores}
    n = min(args.panels, len(x_test))
    b_up = np.repeat(np.repeat(b_test, 2, axis=1), 2, axis=2)       # for display only
    paths = [
        draw(args.out / "unrolled_deconvolution.png", x_test, np.clip(b_up, 0, 1), preds, scores,
             n, title),
        _common.write_json(args.out / "unrolled_deconvolution.json", report),
    ]
    (args.out / "unrolled_deconvolution.md").write_text(f"# {title}\n\n{table}\n")
    paths.append(args.out / "unrolled_deconvolution.md")
    _common.written(paths)
    clock.done("unrolled_deconvolution")
    return report


if __name__ == "__main__":
    main()
