"""A DCGAN whose generator upsamples with jax_tconv's ConvTranspose, on scikit-learn's digits.

Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks" (arXiv 1511.06434), scaled to
the 1,797 8x8 handwritten digits that ship inside scikit-learn
(`sklearn.datasets.load_digits`, no download). The generator maps a latent
vector to 2x2 feature maps and upsamples them twice with stride-2
transposed convolutions (4x4 kernels, padding 1: 2 -> 4 -> 8), batch norm and
ReLU between, tanh at the end; the discriminator mirrors it with strided
convolutions and leaky ReLU. Both are trained with optax's Adam (lr 2e-4,
beta1 0.5) on the non-saturating GAN loss, one jit-compiled step for both.

How good are the samples? A small classifier (an MLP, trained here on 75% of
the real digits) judges them. Reported for the trained generator, for the
same generator before training, and, as the floor, for real digits of the
training split (real, but not among the held-out digits the figures compare
with):

- the Fréchet distance between the classifier's hidden features of the samples
  and of the held-out real digits (FID's formula, in this classifier's feature
  space; lower is better, ~0 for real digits up to sampling noise),
- the mean confidence of the classifier (largest softmax probability),
- the classifier score ``exp(E_x KL(p(y|x) || p(y)))`` (the Inception Score's
  formula: 1 to 10; 10 means confident predictions spread over all ten digits),
- the share of samples given to each digit class.

    python examples/dcgan_digits.py                      # ConvTranspose, method "auto"
    python examples/dcgan_digits.py --method phase       # another formulation
    python examples/dcgan_digits.py --upsample resize    # ResizeConv instead
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

# ----------------------------------------------------------------------------
# Models


class Generator(nn.Module):
    """z -> (8, 8, 1) in [-1, 1]: Dense to 2x2, then two stride-2 upsampling layers."""

    width: int = 32
    upsample: str = "transpose"      # or "resize"
    method: str = "auto"

    def up(self, features):
        if self.upsample == "transpose":
            return tlinen.ConvTranspose(features, (4, 4), strides=2, padding=1,
                                        method=self.method)
        # Same output size as the k3-s2 ConvTranspose with padding 1, output_padding 1: 2i.
        return tlinen.ResizeConv(features, (3, 3), strides=2, padding=1, output_padding=1)

    @nn.compact
    def __call__(self, z, *, train: bool):
        norm = dict(use_running_average=not train, momentum=0.9)
        h = nn.Dense(2 * 2 * 2 * self.width)(z).reshape(-1, 2, 2, 2 * self.width)
        h = nn.relu(nn.BatchNorm(**norm)(h))
        h = nn.relu(nn.BatchNorm(**norm)(self.up(self.width)(h)))     # 2x2 -> 4x4
        return jnp.tanh(self.up(1)(h))                                # 4x4 -> 8x8


class Discriminator(nn.Module):
    """(8, 8, 1) -> one logit (real vs generated)."""

    width: int = 32

    @nn.compact
    def __call__(self, x):
        pad = ((1, 1), (1, 1))
        h = nn.leaky_relu(nn.Conv(self.width, (4, 4), strides=2, padding=pad)(x), 0.2)
        h = nn.leaky_relu(nn.Conv(2 * self.width, (4, 4), strides=2, padding=pad)(h), 0.2)
        return nn.Dense(1)(h.reshape(h.shape[0], -1))[:, 0]


class Classifier(nn.Module):
    """The judge: an MLP on the 64 pixels; ``features`` is its last hidden layer."""

    @nn.compact
    def __call__(self, x, *, features: bool = False):
        h = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
        h = nn.relu(nn.Dense(64)(h))
        return h if features else nn.Dense(10)(h)


# ----------------------------------------------------------------------------
# Training


def train_classifier(x, y, *, steps, seed, progress):
    model = Classifier()
    params = model.init(jax.random.key(seed), x[:1])
    opt = optax.adamw(1e-3, weight_decay=1e-4)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, key):
        idx = jax.random.choice(key, x.shape[0], (128,), replace=False)

        def loss(params):
            logits = model.apply(params, x[idx])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    key = jax.random.key(seed + 1)
    for _ in _common.progress(range(steps), desc="classifier", enabled=progress, leave=False):
        key, sub = jax.random.split(key)
        params, opt_state, _ = step(params, opt_state, sub)
    return model, params


def train_gan(images, args):
    g = Generator(width=args.width, upsample=args.upsample, method=args.method)
    d = Discriminator(width=args.width)
    kg, kd, key = jax.random.split(jax.random.key(args.seed), 3)
    g_vars = g.init(kg, jnp.zeros((2, args.latent)), train=False)
    d_params = d.init(kd, images[:2])
    g_opt = optax.adam(args.lr, b1=0.5)
    d_opt = optax.adam(args.lr, b1=0.5)
    state = dict(g_params=g_vars["params"], g_stats=g_vars["batch_stats"], d_params=d_params,
                 g_opt=g_opt.init(g_vars["params"]), d_opt=d_opt.init(d_params))
    untrained = dict(g_vars)
    bce = optax.sigmoid_binary_cross_entropy

    def generate(params, stats, z):
        fake, updates = g.apply({"params": params, "batch_stats": stats}, z, train=True,
                                mutable=["batch_stats"])
        return fake, updates["batch_stats"]

    @jax.jit
    def step(state, key):
        k_idx, k_z = jax.random.split(key)
        real = images[jax.random.randint(k_idx, (args.batch,), 0, images.shape[0])]
        z = jax.random.normal(k_z, (args.batch, args.latent))
        fake, stats = generate(state["g_params"], state["g_stats"], z)

        def d_loss(d_params):
            real_logits = d.apply(d_params, real)
            fake_logits = d.apply(d_params, jax.lax.stop_gradient(fake))
            return (bce(real_logits, jnp.ones_like(real_logits)).mean()
                    + bce(fake_logits, jnp.zeros_like(fake_logits)).mean())

        def g_loss(g_params):                  # non-saturating: make D call fakes real
            fake, stats = generate(g_params, state["g_stats"], z)
            logits = d.apply(d_params, fake)
            return bce(logits, jnp.ones_like(logits)).mean(), stats

        dl, d_grads = jax.value_and_grad(d_loss)(state["d_params"])
        d_updates, d_opt_state = d_opt.update(d_grads, state["d_opt"])
        d_params = optax.apply_updates(state["d_params"], d_updates)
        (gl, stats), g_grads = jax.value_and_grad(g_loss, has_aux=True)(state["g_params"])
        g_updates, g_opt_state = g_opt.update(g_grads, state["g_opt"])
        new = dict(g_params=optax.apply_updates(state["g_params"], g_updates), g_stats=stats,
                   d_params=d_params, g_opt=g_opt_state, d_opt=d_opt_state)
        return new, dl, gl

    losses = []
    bar = _common.progress(range(args.steps), desc=f"DCGAN ({args.upsample})",
                           enabled=args.progress)
    for i in bar:
        key, sub = jax.random.split(key)
        state, dl, gl = step(state, sub)
        losses.append((dl, gl))                 # device scalars: no wait for each step
        if i % 100 == 99:
            bar.set_postfix(D=f"{float(dl):.3f}", G=f"{float(gl):.3f}")
    losses = np.asarray(losses, np.float32).reshape(-1, 2)
    trained = {"params": state["g_params"], "batch_stats": state["g_stats"]}
    return g, untrained, trained, losses


def sampler(g):
    """``sample(variables, n, latent, seed)``: n images from one compiled generator."""
    apply = jax.jit(lambda v, z: g.apply(v, z, train=False))

    def sample(variables, n, latent, seed):
        return np.asarray(apply(variables, jax.random.normal(jax.random.key(seed), (n, latent))))

    return sample


# ----------------------------------------------------------------------------
# Quality figures


def frechet_distance(a, b) -> float:
    """``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` of two feature sets, float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr (S_a S_b)^(1/2) = sum of sqrt eigenvalues of the symmetric S_a^(1/2) S_b S_a^(1/2).
    e, v = np.linalg.eigh(s_a)
    root = (v * np.sqrt(np.clip(e, 0, None))) @ v.T
    m = root @ s_b @ root
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)))
    return float(max(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * cross, 0.0))


def judge(model, params, x, reference_features):
    """The quality figures of images `x` (``(n, 8, 8, 1)`` in [-1, 1])."""
    x = jnp.asarray(x)
    probs = np.asarray(jax.nn.softmax(model.apply(params, x), axis=-1), np.float64)
    feats = np.asarray(model.apply(params, x, features=True))
    marginal = probs.mean(0)
    kl = np.sum(probs * (np.log(probs + 1e-12) - np.log(marginal + 1e-12)), axis=1)
    share = np.bincount(probs.argmax(1), minlength=10) / len(probs)
    return {
        "frechet_distance": frechet_distance(feats, reference_features),
        "mean_confidence": float(probs.max(1).mean()),
        "classifier_score": float(np.exp(kl.mean())),
        "class_share": [round(float(s), 4) for s in share],
    }


# ----------------------------------------------------------------------------
# Pictures and report


def draw_summary(path, untrained, trained, real, figures, title):
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.6), width_ratios=[1, 1, 1, 1.3],
                             gridspec_kw=dict(wspace=0.25))
    for ax, images, name in ((axes[0], untrained, "untrained generator"),
                             (axes[1], trained, "trained generator"),
                             (axes[2], real, "real digits (train split)")):
        ax.imshow(_common.mosaic((images[:100, ..., 0] + 1) / 2, ncols=10, pad=1, pad_value=0.0),
                  cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        key = {"untrained generator": "untrained", "trained generator": "trained"}.get(name,
                                                                                        "real")
        ax.set_title(f"{name}\nFD {figures[key]['frechet_distance']:.2f}, score "
                     f"{figures[key]['classifier_score']:.2f}", fontsize=10)
        ax.axis("off")
    ax = axes[3]
    width = 0.27
    for j, (key, color) in enumerate((("untrained", "0.6"), ("trained", "C0"), ("real", "C2"))):
        ax.bar(np.arange(10) + (j - 1) * width, figures[key]["class_share"], width, label=key,
               color=color)
    ax.axhline(0.1, color="k", lw=0.8, ls=":")
    ax.set_xticks(range(10))
    ax.set_xlabel("digit the classifier sees")
    ax.set_ylabel("share of samples")
    ax.set_title("class distribution", fontsize=10)
    ax.legend(fontsize=9)
    fig.suptitle(title, fontsize=12)
    return _common.save_figure(fig, path)


def draw_losses(path, losses, title):
    fig, ax = plt.subplots(figsize=(8, 4))
    window = max(1, len(losses) // 100)
    kernel = np.ones(window) / window
    for j, name in enumerate(("discriminator", "generator")):
        ax.plot(losses[:, j], alpha=0.25, color=f"C{j}")
        if len(losses) >= window:
            smooth = np.convolve(losses[:, j], kernel, mode="valid")
            ax.plot(np.arange(window - 1, len(losses)), smooth, color=f"C{j}", label=name)
    ax.axhline(2 * np.log(2), color="C0", ls=":", lw=0.8)
    ax.axhline(np.log(2), color="C1", ls=":", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("binary cross-entropy")
    ax.set_title(f"{title}: losses (dotted: the equilibrium values 2 ln 2 and ln 2)",
                 fontsize=10)
    ax.legend()
    return _common.save_figure(fig, path)


def main(argv=None) -> dict:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=5000, help="GAN training steps")
    p.add_argument("--batch", type=int, default=64, help="batch size")
    p.add_argument("--width", type=int, default=32, help="channels of the first layers")
    p.add_argument("--latent", type=int, default=32, help="latent dimension")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (both nets)")
    p.add_argument("--method", default="auto", choices=["auto", *jax_tconv.METHODS],
                   help="the ConvTranspose formulation")
    p.add_argument("--upsample", default="transpose", choices=["transpose", "resize"],
                   help="ConvTranspose (k4 s2 p1) or ResizeConv (nearest, k3) upsampling")
    p.add_argument("--classifier-steps", type=int, default=1500,
                   help="training steps of the judging classifier")
    p.add_argument("--eval-samples", type=int, default=1000,
                   help="generated samples the quality figures use")
    args = _common.parse(p, argv)
    clock = _common.Clock()

    images, labels = _common.load_digits()
    images = images[..., None] * 2 - 1                        # (1797, 8, 8, 1) in [-1, 1]
    order = np.random.default_rng(args.seed).permutation(len(images))
    cut = int(0.75 * len(images))
    train_idx, test_idx = order[:cut], order[cut:]
    x_train, y_train = jnp.asarray(images[train_idx]), jnp.asarray(labels[train_idx])
    x_test, y_test = images[test_idx], labels[test_idx]

    clf, clf_params = train_classifier(x_train, y_train, steps=args.classifier_steps,
                                       seed=args.seed + 7, progress=args.progress)
    accuracy = float(np.mean(np.asarray(clf.apply(clf_params, x_test)).argmax(1) == y_test))
    print(f"judging classifier: accuracy {accuracy:.3f} on {len(x_test)} held-out real digits")

    # The GAN trains on the classifier's training split only; the held-out split is the reference.
    g, untrained_vars, trained_vars, losses = train_gan(x_train, args)
    reference = np.asarray(clf.apply(clf_params, jnp.asarray(x_test), features=True))
    sample = sampler(g)
    samples = {"untrained": sample(untrained_vars, args.eval_samples, args.latent, 123),
               "trained": sample(trained_vars, args.eval_samples, args.latent, 123)}
    n_real = min(len(x_test), len(train_idx))
    real = images[train_idx[:n_real]]     # real digits the reference never saw: the floor
    figures = {name: judge(clf, clf_params, x, reference) for name, x in samples.items()}
    figures["real"] = judge(clf, clf_params, real, reference)

    label = f"{args.upsample}" + (f", method={args.method!r}" if args.upsample == "transpose"
                                  else "")
    rows = [[name, f"{f['frechet_distance']:.2f}", f"{f['classifier_score']:.2f}",
             f"{f['mean_confidence']:.3f}", " ".join(f"{s:.2f}" for s in f["class_share"])]
            for name, f in (("real digits (train split)", figures["real"]),
                            ("trained generator", figures["trained"]),
                            ("untrained generator", figures["untrained"]))]
    table = _common.markdown_table(
        ["samples", "Fréchet distance (lower better)", "classifier score (1-10)",
         "mean confidence", "share of digits 0..9"], rows)
    print(f"\nDCGAN ({label}), {args.steps} steps; reference: {len(x_test)} held-out real digits,"
          f" classifier accuracy {accuracy:.3f}\n{table}")
    report = {"upsample": args.upsample, "method": args.method, "steps": args.steps,
              "classifier_accuracy": accuracy, "figures": figures,
              "final_losses": {"discriminator": float(losses[-50:, 0].mean()),
                               "generator": float(losses[-50:, 1].mean())}}
    title = f"DCGAN on sklearn digits ({label}, {args.steps} steps)"
    paths = [
        draw_summary(args.out / "dcgan_digits.png", samples["untrained"], samples["trained"],
                     real, figures, title),
        draw_losses(args.out / "dcgan_digits_losses.png", losses, title),
        _common.save_grid(args.out / "dcgan_digits_samples.png",
                          (samples["trained"][:64, ..., 0] + 1) / 2, ncols=8, scale=4),
        _common.write_json(args.out / "dcgan_digits.json", report),
    ]
    (args.out / "dcgan_digits.md").write_text(
        f"# DCGAN on sklearn digits ({label}, {args.steps} steps)\n\n"
        f"Judging classifier accuracy on held-out real digits: {accuracy:.3f}\n\n{table}\n")
    paths.append(args.out / "dcgan_digits.md")
    _common.written(paths)
    clock.done("dcgan_digits")
    return report


if __name__ == "__main__":
    main()
