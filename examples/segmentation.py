"""Semantic segmentation with a U-Net: ConvTranspose vs ResizeConv decoders, on synthetic shapes.

An encoder-decoder in the U-Net / FCN pattern (Ronneberger et al. 2015, Long
et al. 2015) segments a synthetic dataset generated here: circles, squares
and triangles (rotated, of random size, brightness and contrast sign) on
noisy backgrounds with a random brightness gradient; one class per shape plus
background. Brightness tells nothing about the class, only shape does.

The encoder halves the size three times with stride-2 convolutions, rounding
up (default 26 -> 13 -> 7 -> 4). Each decoder step upsamples by 2 with a 3x3
kernel and is concatenated with the encoder's feature map of the same level
(a skip connection). A stride-2 layer reaches either 2i - 1 or 2i, so every
upsampling passes ``output_shape=skip.shape``: 4 -> 7, 7 -> 13 (odd), 13 -> 26.
Two decoders, trained the same way from the same initial encoder weights:

- ``ConvTranspose(f, (3, 3), strides=2, padding=1)``, a transposed convolution;
- ``ResizeConv(f, (3, 3), strides=2, padding=1)``: nearest resize, then a conv.

Reports pixel accuracy and mean intersection-over-union (over background and
the three shapes) on a held-out split in one table, and writes panels of
input / truth / both predictions.

    python examples/segmentation.py
"""

from __future__ import annotations

import _common
import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from matplotlib.colors import ListedColormap

import jax_tconv
from jax_tconv.nn import linen as tlinen

CLASSES = ("background", "circle", "square", "triangle")
COLORS = ListedColormap(["#1b1b1b", "#e4572e", "#29a35a", "#3b7dd8"])
DECODERS = {"ConvTranspose": "transpose", "ResizeConv": "resize"}

# ----------------------------------------------------------------------------
# Data


def polygon_mask(xx, yy, cx, cy, r, sides, angle):
    """Inside a regular polygon with `sides` vertices at radius `r`, rotated by `angle`."""
    t = angle + 2 * np.pi * np.arange(sides) / sides
    vx, vy = cx + r * np.cos(t), cy + r * np.sin(t)
    inside = np.ones_like(xx, bool)
    for j in range(sides):                     # left of every edge (vertices counter-clockwise)
        ax, ay, bx, by = vx[j], vy[j], vx[(j + 1) % sides], vy[(j + 1) % sides]
        inside &= (bx - ax) * (yy - ay) - (by - ay) * (xx - ax) >= 0
    return inside


def make_shapes(n, size, *, noise, seed):
    """`n` images ``(n, size, size, 1)`` float32 and labels ``(n, size, size)`` int32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((n, size, size), np.float32)
    labels = np.zeros((n, size, size), np.int32)
    for i in range(n):
        base = rng.uniform(0.3, 0.7)
        gx, gy = rng.uniform(-0.25, 0.25, 2)
        img = base + gx * (xx / size - 0.5) + gy * (yy / size - 0.5)
        for _ in range(rng.integers(1, 4)):
            cls = rng.integers(1, 4)
            r = rng.uniform(0.16, 0.28) * size
            cx, cy = rng.uniform(r * 0.6, size - r * 0.6, 2)
            if cls == 1:
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= (0.85 * r) ** 2
            elif cls == 2:
                mask = polygon_mask(xx, yy, cx, cy, r, 4, rng.uniform(0, np.pi / 2))
            else:
                mask = polygon_mask(xx, yy, cx, cy, 1.15 * r, 3, rng.uniform(0, 2 * np.pi / 3))
            img = np.where(mask, base + rng.choice([-1, 1]) * rng.uniform(0.25, 0.45), img)
            labels[i][mask] = cls
        images[i] = img + noise * rng.standard_normal((size, size))
    return images[..., None], labels


# ----------------------------------------------------------------------------
# Model


class UNet(nn.Module):
    """Three stride-2 levels down, three up with skip connections, 1x1 conv to the classes."""

    decoder: str = "transpose"    # or "resize"
    width: int = 16
    method: str = "auto"

    def block(self, h, features):
        h = nn.relu(nn.Conv(features, (3, 3), padding=1)(h))
        return nn.relu(nn.Conv(features, (3, 3), padding=1)(h))

    def up(self, h, features, skip):
        if self.decoder == "transpose":
            layer = tlinen.ConvTranspose(features, (3, 3), strides=2, padding=1,
                                         method=self.method)
        else:
            layer = tlinen.ResizeConv(features, (3, 3), strides=2, padding=1)
        # output_shape: 2i - 1 or 2i, whichever the skip connection has.
        h = nn.relu(layer(h, output_shape=skip.shape[1:3]))
        return self.block(jnp.concatenate([h, skip], axis=-1), features)

    @nn.compact
    def __call__(self, x):
        w = self.width
        down = dict(kernel_size=(3, 3), strides=2, padding=1)
        e1 = self.block(x, w)                                         # 26
        e2 = self.block(nn.relu(nn.Conv(2 * w, **down)(e1)), 2 * w)   # 13
        e3 = self.block(nn.relu(nn.Conv(4 * w, **down)(e2)), 4 * w)   # 7
        b = self.block(nn.relu(nn.Conv(4 * w, **down)(e3)), 4 * w)    # 4
        d3 = self.up(b, 4 * w, e3)                                    # 4 -> 7
        d2 = self.up(d3, 2 * w, e2)                                   # 7 -> 13
        d1 = self.up(d2, w, e1)                                       # 13 -> 26
        return nn.Conv(len(CLASSES), (1, 1))(d1)


def train(model, params, x, y, args, desc):
    opt = optax.adam(optax.cosine_decay_schedule(args.lr, args.steps))
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, key):
        idx = jax.random.randint(key, (args.batch,), 0, x.shape[0])

        def loss(params):
            logits = model.apply(params, x[idx])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    key = jax.random.key(args.seed + 1)       # the same batches for both decoders
    losses = []
    bar = _common.progress(range(args.steps), desc=desc, enabled=args.progress)
    for i in bar:
        key, sub = jax.random.split(key)
        params, opt_state, value = step(params, opt_state, sub)
        losses.append(value)
        if i % 100 == 99:
            bar.set_postfix(loss=f"{float(value):.3f}")
    return params, np.asarray(losses, np.float32)


def predict(model, params, x, batch=256):
    fn = jax.jit(lambda p, x: jnp.argmax(model.apply(p, x), -1))
    return np.concatenate([np.asarray(fn(params, x[i:i + batch]))
                           for i in range(0, len(x), batch)])


def scores(pred, truth):
    """Pixel accuracy, per-class IoU and mean IoU over the whole held-out set."""
    k = len(CLASSES)
    confusion = np.bincount(truth.ravel() * k + pred.ravel(), minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return {"pixel_accuracy": float(tp.sum() / confusion.sum()),
            "mean_iou": float(np.nanmean(iou)),
            "iou": {c: float(v) for c, v in zip(CLASSES, iou)}}


def draw(path, images, labels, preds, results, n):
    cols = 2 + len(preds)
    fig, axes = plt.subplots(n, cols, figsize=(2.3 * cols, 2.3 * n), squeeze=False)
    for r in range(n):
        panels = [(images[r, ..., 0], "gray", "input"), (labels[r], COLORS, "truth")]
        panels += [(p[r], COLORS, f"{name}\nmIoU {results[name]['mean_iou']:.3f}")
                   for name, p in preds.items()]
        for c, (img, cmap, title) in enumerate(panels):
            ax = axes[r, c]
            if cmap == "gray":
                ax.imshow(img, cmap="gray", interpolation="nearest")
            else:
                ax.imshow(img, cmap=cmap, vmin=0, vmax=len(CLASSES) - 1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS(i)) for i in range(len(CLASSES))]
    fig.legend(handles, CLASSES, loc="lower center", ncols=len(CLASSES), fontsize=9,
               bbox_to_anchor=(0.5, -0.01))
    fig.suptitle("U-Net decoders on held-out synthetic shapes", fontsize=12)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _common.save_figure(fig, path)


def main(argv=None) -> dict:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=26, help="image side (any size >= 8 works)")
    p.add_argument("--train", type=int, default=2000, help="training images")
    p.add_argument("--test", type=int, default=400, help="held-out images")
    p.add_argument("--noise", type=float, default=0.08, help="pixel noise (std)")
    p.add_argument("--steps", type=int, default=2500, help="training steps per decoder")
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--width", type=int, default=8, help="channels of the first level")
    p.add_argument("--lr", type=float, default=3e-3, help="peak Adam learning rate (cosine)")
    p.add_argument("--method", default="auto", choices=["auto", *jax_tconv.METHODS],
                   help="the ConvTranspose formulation")
    p.add_argument("--panels", type=int, default=6, help="held-out examples drawn")
    args = _common.parse(p, argv)
    clock = _common.Clock()

    x_train, y_train = make_shapes(args.train, args.size, noise=args.noise, seed=args.seed)
    x_test, y_test = make_shapes(args.test, args.size, noise=args.noise, seed=args.seed + 10_000)
    sizes = [args.size]
    for _ in range(3):
        sizes.append(-(-sizes[-1] // 2))
    print(f"{args.train} training and {args.test} held-out {args.size}x{args.size} images; "
          f"encoder {' -> '.join(map(str, sizes))}, decoder {' -> '.join(map(str, sizes[::-1]))}"
          f" (output_shape = the skip connection's size)")
    share = np.bincount(y_test.ravel(), minlength=len(CLASSES)) / y_test.size
    print("held-out pixel shares: " + ", ".join(f"{c} {s:.3f}" for c, s in zip(CLASSES, share)))

    results, preds, losses = {}, {}, {}
    for name, decoder in DECODERS.items():
        model = UNet(decoder=decoder, width=args.width, method=args.method)
        params = model.init(jax.random.key(args.seed), x_train[:1])
        n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))
        timer = _common.Clock()
        params, losses[name] = train(model, params, jnp.asarray(x_train), jnp.asarray(y_train),
                                     args, desc=name)
        preds[name] = predict(model, params, jnp.asarray(x_test))
        results[name] = {**scores(preds[name], y_test), "parameters": n_params,
                         "train_seconds": round(timer.seconds(), 1),
                         "final_loss": float(losses[name][-50:].mean())}

    header = ["decoder", "pixel accuracy", "mean IoU",
              *(f"IoU {c}" for c in CLASSES), "parameters", "train s"]
    rows = [[name, f"{r['pixel_accuracy']:.4f}", f"{r['mean_iou']:.4f}",
             *(f"{r['iou'][c]:.3f}" for c in CLASSES), r["parameters"], r["train_seconds"]]
            for name, r in results.items()]
    table = _common.markdown_table(header, rows)
    print(f"\nheld-out scores ({args.test} images, {args.steps} steps each):\n{table}")
    paths = [
        draw(args.out / "segmentation.png", x_test, y_test, preds, results,
             min(args.panels, args.test)),
        _common.write_json(args.out / "segmentation.json",
                           {"size": args.size, "steps": args.steps, "results": results}),
    ]
    (args.out / "segmentation.md").write_text(
        f"# U-Net decoders on synthetic shapes ({args.size}x{args.size}, {args.steps} steps)\n\n"
        f"{table}\n")
    paths.append(args.out / "segmentation.md")
    _common.written(paths)
    clock.done("segmentation")
    return results


if __name__ == "__main__":
    main()
