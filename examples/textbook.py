"""The worked example that explains transposed convolution, in numbers and pictures.

Dumoulin & Visin, "A guide to convolution arithmetic for deep learning"
(arXiv 1603.07285), section 4.1: a 3x3 kernel over a 4x4 input (stride 1, no
padding) gives a 2x2 output. Written as a matrix, that convolution is a 4x16
matrix C: each row holds the nine kernel values, zero-padded into the places
of the input elements the output reads. Flattening the input to 16 values and
multiplying by C gives the convolution; Cᵀ (16x4) takes a 2x2 input to a 4x4
output, each input value spread over the nine outputs its row of C touches.
That is the transposed convolution, and every formulation in jax_tconv
computes the same 4x4.

The second half repeats the story with stride 2, where the dilated-input view
(zeros inserted between the input values, a border of k - 1 = 2 zeros, then an
ordinary convolution with the flipped kernel) is drawn with its zeros marked.

    python examples/textbook.py            # prints the matrices, writes two PNGs and a JSON
"""

from __future__ import annotations

import _common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax import lax

import jax_tconv

jax.config.update("jax_default_matmul_precision", "highest")


def show(ax, m, title, *, fmt="{:g}", zero_mask=None, cmap="Blues", annotate=True):
    """A matrix as a heatmap with its values written in; `zero_mask` marks inserted zeros."""
    m = np.asarray(m)
    ax.imshow(m, cmap=cmap, vmin=min(0.0, m.min()), vmax=max(m.max(), 1e-9))
    if zero_mask is not None:
        overlay = np.zeros((*m.shape, 4))
        overlay[zero_mask] = (0.1, 0.6, 0.2, 0.55)
        ax.imshow(overlay)
    if annotate:
        size = 9 if max(m.shape) <= 8 else 7
        for (r, c), v in np.ndenumerate(m):
            ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=size,
                    color="white" if v > 0.6 * m.max() > 0 else "black")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def every_method(y, w, **kwargs):
    """``conv_transpose(y, w)`` by each formulation, by lax, and by the NumPy reference."""
    results = {m: jax_tconv.conv_transpose(y, w, method=m, **kwargs)
               for m in ("auto", *jax_tconv.METHODS)}
    # The NumPy scatter loop works channels first, with PyTorch's (C_in, C_out, kH, kW) kernel.
    s = kwargs.get("strides", 1)
    ref = jax_tconv.conv_transpose_reference(
        np.moveaxis(np.asarray(y), -1, 1), np.asarray(w).transpose(3, 2, 0, 1), strides=(s, s),
        padding=((0, 0), (0, 0)), output_padding=(0, 0), dilation=(1, 1))
    results["reference (NumPy loop)"] = np.moveaxis(ref, 1, -1)
    return results


def report(label: str, a, b, diffs: list) -> None:
    d = _common.max_diff(a, b)
    diffs.append(d)
    print(f"  {label:<58s} max |diff| = {d:.2e}")


def stride_one(diffs: list):
    print("=" * 78)
    print("Stride 1, no padding: 4x4 input, 3x3 kernel -> 2x2 output")
    print("=" * 78)
    x = jnp.arange(1.0, 17.0).reshape(1, 4, 4, 1)          # (N, H, W, C): values 1..16
    w = jnp.arange(1.0, 10.0).reshape(3, 3, 1, 1)          # (kH, kW, C_in, C_out)
    conv_out = jax_tconv.conv(x, w)                        # (1, 2, 2, 1)
    c = jax_tconv.conv_matrix(w, x.shape)                  # (4, 16)
    print("input x (4x4):\n", np.asarray(x[0, ..., 0]).astype(int))
    print("kernel w (3x3):\n", np.asarray(w[..., 0, 0]).astype(int))
    print(f"convolution matrix C = conv_matrix(w, {x.shape}), shape {c.shape}:")
    print(np.asarray(c).astype(int))
    print("conv(x, w) (2x2):\n", np.asarray(conv_out[0, ..., 0]).astype(int))
    print("C @ vec(x), reshaped to 2x2:\n",
          np.asarray((c @ x.reshape(-1)).reshape(2, 2)).astype(int))
    report("C @ vec(x) vs conv(x, w)", c @ x.reshape(-1), conv_out.reshape(-1), diffs)

    print(f"\nThe transposed convolution is Cᵀ, shape {c.T.shape}: a 2x2 input -> 4x4 output.")
    y = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    by_matrix = (c.T @ y.reshape(-1)).reshape(4, 4)
    print("y (2x2):\n", np.asarray(y[0, ..., 0]).astype(int))
    print("Cᵀ @ vec(y), reshaped to 4x4:\n", np.asarray(by_matrix).astype(int))
    for name, out in every_method(y, w).items():
        report(f"conv_transpose(y, w, method={name!r}) vs Cᵀ @ vec(y)"
               if not name.startswith("ref") else f"{name} vs Cᵀ @ vec(y)",
               out[0, ..., 0], by_matrix, diffs)
    lax_out = lax.conv_transpose(y, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                 transpose_kernel=True)
    report("lax.conv_transpose(transpose_kernel=True) vs Cᵀ @ vec(y)", lax_out[0, ..., 0],
           by_matrix, diffs)

    # One input value to nine outputs: Cᵀ applied to each unit vector of the 2x2 input.
    spreads = [np.asarray(jax_tconv.conv_transpose(jnp.eye(4)[j].reshape(1, 2, 2, 1), w))[0, ..., 0]
               for j in range(4)]
    for j, s in enumerate(spreads):
        report(f"unit input {divmod(j, 2)} -> column {j} of Cᵀ", s.reshape(-1), c.T[:, j], diffs)
        assert np.count_nonzero(s) == 9
    print("  each of the 4 input values reaches exactly 9 of the 16 outputs")
    return x, w, conv_out, c, y, by_matrix, spreads


def stride_two(diffs: list):
    print("\n" + "=" * 78)
    print("Stride 2, no padding: 2x2 input -> 5x5 output ((2 - 1) * 2 + 3 = 5)")
    print("=" * 78)
    w = jnp.arange(1.0, 10.0).reshape(3, 3, 1, 1)
    y = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    c = jax_tconv.conv_matrix(w, (1, 5, 5, 1), strides=2)   # conv: 5x5 -> 2x2
    print(f"C = conv_matrix(w, (1, 5, 5, 1), strides=2), shape {c.shape}:")
    print(np.asarray(c).astype(int))
    by_matrix = (c.T @ y.reshape(-1)).reshape(5, 5)
    print("Cᵀ @ vec(y), reshaped to 5x5:\n", np.asarray(by_matrix).astype(int))

    # The dilated-input view, built by hand: s - 1 = 1 zero between values, a border of
    # d*(k - 1) - padding = 2 zeros, then a stride-1 'VALID' conv with the flipped kernel.
    dilated = np.zeros((7, 7))
    dilated[2:5:2, 2:5:2] = np.asarray(y[0, ..., 0])
    inserted = np.zeros((7, 7), bool)       # the s - 1 zeros between values, not the border
    inserted[2:5, 2:5] = True
    inserted[2:5:2, 2:5:2] = False
    flipped = w[::-1, ::-1]
    by_hand = lax.conv_general_dilated(jnp.asarray(dilated).reshape(1, 7, 7, 1), flipped, (1, 1),
                                       "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    print("zero-dilated and padded input (7x7: the 4 values of y and 45 zeros):")
    print(dilated.astype(int))
    print("flipped kernel:\n", np.asarray(flipped[..., 0, 0]).astype(int))
    report("stride-1 conv of the dilated input vs Cᵀ @ vec(y)", by_hand[0, ..., 0], by_matrix,
           diffs)
    for name, out in every_method(y, w, strides=2).items():
        report(f"conv_transpose(y, w, strides=2, method={name!r})"
               if not name.startswith("ref") else f"{name}, strides=2",
               out[0, ..., 0], by_matrix, diffs)
    products = 25 * 9                       # 5x5 outputs, nine taps each
    print(f"  the dilated view computes {products} products, {products - 4 * 9} of them with a "
          f"zero it inserted;\n  the 'phase' method computes only the {4 * 9} that are not")
    return w, y, c, by_matrix, dilated, inserted, flipped


def draw_stride_one(path, x, w, conv_out, c, y, by_matrix, spreads):
    fig = plt.figure(figsize=(13, 7.5))
    grid = fig.add_gridspec(3, 8, height_ratios=[1.0, 1.0, 1.1], hspace=0.45, wspace=0.35)
    show(fig.add_subplot(grid[0, 0:2]), x[0, ..., 0], "input x (4x4)")
    show(fig.add_subplot(grid[0, 2]), w[..., 0, 0], "kernel w (3x3)")
    show(fig.add_subplot(grid[0, 3]), conv_out[0, ..., 0], "conv(x, w) = C·vec(x)")
    show(fig.add_subplot(grid[1, 0:6]), c, f"C = conv_matrix(w, (1, 4, 4, 1)), {c.shape[0]}x"
         f"{c.shape[1]}: row r = kernel placed where output r reads")
    show(fig.add_subplot(grid[0:2, 6]), c.T, f"Cᵀ ({c.shape[1]}x{c.shape[0]})")
    show(fig.add_subplot(grid[0, 4]), y[0, ..., 0], "y (2x2)", cmap="Oranges")
    show(fig.add_subplot(grid[0, 5]), by_matrix, "Cᵀ·vec(y) (4x4)", cmap="Oranges")
    for j, s in enumerate(spreads):
        show(fig.add_subplot(grid[2, 2 * j:2 * j + 2]), s,
             f"y value at {divmod(j, 2)} -> nine outputs")
    fig.suptitle("Transposed convolution as Cᵀ: 4x4 input, 3x3 kernel, stride 1, no padding",
                 fontsize=12)
    return _common.save_figure(fig, path)


def draw_stride_two(path, w, y, c, by_matrix, dilated, inserted, flipped):
    fig = plt.figure(figsize=(13, 5.2))
    grid = fig.add_gridspec(2, 6, height_ratios=[1.4, 1.0], hspace=0.35, wspace=0.3)
    show(fig.add_subplot(grid[0, 0]), y[0, ..., 0], "y (2x2)", cmap="Oranges")
    show(fig.add_subplot(grid[0, 1:3]), dilated,
         "y dilated by s=2 (green: inserted zeros),\nthen a border of k-1=2 zeros", cmap="Oranges",
         zero_mask=inserted)
    show(fig.add_subplot(grid[0, 3]), flipped[..., 0, 0], "flipped kernel")
    show(fig.add_subplot(grid[0, 4:6]), by_matrix, "stride-1 conv = Cᵀ·vec(y) (5x5)",
         cmap="Oranges")
    show(fig.add_subplot(grid[1, :]), c, f"C = conv_matrix(w, (1, 5, 5, 1), strides=2), "
         f"{c.shape[0]}x{c.shape[1]}")
    fig.suptitle("Stride 2: the dilated-input view of the same Cᵀ", fontsize=12)
    return _common.save_figure(fig, path)


def main(argv=None) -> float:
    p = _common.parser(__doc__.split("\n\n")[0])
    args = _common.parse(p, argv)
    clock = _common.Clock()
    diffs: list[float] = []
    one = stride_one(diffs)
    two = stride_two(diffs)
    paths = [draw_stride_one(args.out / "textbook.png", *one),
             draw_stride_two(args.out / "textbook_stride2.png", *two)]
    worst = max(diffs)
    print(f"\n{len(diffs)} comparisons, largest max |diff| = {worst:.2e}")
    paths.append(_common.write_json(args.out / "textbook.json",
                                    {"comparisons": len(diffs), "max_abs_diff": worst}))
    _common.written(paths)
    clock.done("textbook")
    return worst


if __name__ == "__main__":
    main()
