"""What every example shares: arguments, progress bars, PNG and report writing, the digits.

Each example script imports this module from its own folder (``python
examples/NAME.py`` puts ``examples/`` on ``sys.path``), so the scripts stay
about their subject and this file holds the plumbing once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

#: Where pictures and reports go unless ``--out`` says otherwise (git-ignored).
DEFAULT_OUT = Path(__file__).resolve().parent / "out"


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every example has: --out, --seed, --no-progress."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="folder for the PNG pictures and the reports (created if missing)")
    p.add_argument("--seed", type=int, default=0, help="random seed (data and initialisation)")
    p.set_defaults(progress=True)     # before the flag, which must not show a default
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   default=argparse.SUPPRESS, help="hide the progress bars")
    return p


def parse(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse `argv` (default ``sys.argv[1:]``) and create the output folder."""
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def progress(iterable=None, *, desc: str, enabled: bool = True, **kwargs):
    """A tqdm progress bar (on stderr) over `iterable`, or with ``total=`` and ``update(n)``.

    With ``enabled=False`` it draws nothing and still iterates and updates. On a
    terminal a bar made with ``leave=False`` erases itself when it closes; written
    to a file or a pipe every bar keeps its last state and ends its line, so that
    what the script prints next starts a line of its own. What was printed before
    the bar is flushed first, so a log holds both in the order they happened.
    """
    if enabled and not sys.stderr.isatty():
        kwargs["leave"] = True
    sys.stdout.flush()
    return tqdm(iterable, desc=desc, disable=not enabled, dynamic_ncols=True, **kwargs)


class Clock:
    """Wall time since construction; ``done()`` prints it in the one format the docs quote."""

    def __init__(self):
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def done(self, name: str) -> None:
        print(f"{name}: wall time {self.seconds():.1f} s")
        sys.stdout.flush()


def max_diff(a, b) -> float:
    """``max |a - b|`` over all elements, as a Python float."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def weight_disagreement(weights, reference, initial) -> float:
    """How far `weights` are from `reference`, as a share of how far training moved `reference`.

    ``|w - w_ref| / |w_ref - w_init|``, Frobenius norms over all parameters
    together: 0 for identical runs, about 1 or more when the two runs moved the
    weights in unrelated directions (a wrong gradient).
    """
    diff = moved = 0.0
    for w, ref, init in zip(_leaves(weights), _leaves(reference), _leaves(initial)):
        w, ref, init = (np.asarray(a, np.float64) for a in (w, ref, init))
        diff += float(np.sum((w - ref) ** 2))
        moved += float(np.sum((ref - init) ** 2))
    return 0.0 if diff == 0 else float(np.sqrt(diff / moved)) if moved else float("inf")


def classifier_step(model, opt):
    """The (unjitted) training step of a linen classifier with optax optimiser `opt`:
    ``step(params, opt_state, xb, yb) -> (params, opt_state, loss)``, softmax
    cross-entropy against integer labels (the sharded-training examples jit it with
    their own placements)."""
    import jax  # the examples' plumbing otherwise needs no JAX
    import optax

    def step(params, opt_state, xb, yb):
        def loss(params):
            logits = model.apply(params, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def _leaves(tree):
    import jax  # the examples' plumbing otherwise needs no JAX

    return jax.tree.leaves(tree)


def mosaic(images, *, ncols: int, pad: int = 1, pad_value: float = 1.0, scale: int = 1):
    """Tile ``(N, H, W)`` or ``(N, H, W, 3)`` images into one array, row-major.

    Each image is enlarged `scale` times (nearest neighbour, so pixels stay
    visible) and surrounded by `pad` pixels of `pad_value`.
    """
    images = np.asarray(images, np.float32)
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w = images.shape[:3]
    nrows = -(-n // ncols)
    shape = (nrows * (h + pad) + pad, ncols * (w + pad) + pad, *images.shape[3:])
    grid = np.full(shape, pad_value, np.float32)
    for idx, img in enumerate(images):
        r, c = divmod(idx, ncols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top:top + h, left:left + w] = img
    return grid


def save_grid(path: Path, images, *, ncols: int, scale: int = 4, vmin=0.0, vmax=1.0,
              cmap: str = "gray") -> Path:
    """Write ``(N, H, W)`` images in [vmin, vmax] as one PNG grid, pixel-exact."""
    grid = mosaic(np.clip((np.asarray(images) - vmin) / (vmax - vmin), 0, 1), ncols=ncols,
                  scale=scale)
    plt.imsave(path, grid, cmap=cmap, vmin=0.0, vmax=1.0)
    return path


def save_figure(fig, path: Path, *, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG and close it."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def markdown_table(header, rows) -> str:
    """A GitHub-markdown table: `header` a list of titles, `rows` lists of cells."""
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def load_digits():
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images; no download).

    Returns:
      ``(images, labels)``: float32 ``(1797, 8, 8)`` in [0, 1] and int32 ``(1797,)``.
    """
    from sklearn.datasets import load_digits as _load

    data = _load()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int32)


def written(paths) -> None:
    """Print the files an example wrote, one per line."""
    for path in paths:
        print(f"wrote {path}")
