"""Shared test configurations and the bridge from any layout to the NumPy reference."""

from __future__ import annotations

import dataclasses

import numpy as np

import jax_tconv
from jax_tconv.reference import conv_transpose_reference, conv_transpose_reference_vjp

METHODS = jax_tconv.METHODS + ("auto",)


@dataclasses.dataclass(frozen=True)
class Case:
    """One transposed convolution: spatial input size `i`, kernel `k`, and the arguments."""

    name: str
    i: tuple
    k: tuple
    cin: int = 2
    cout: int = 3
    batch: int = 2
    strides: object = 1
    padding: object = 0
    output_padding: object = 0
    output_shape: object = None
    dilation: object = 1
    groups: int = 1
    layout: str = "last"  # "last": N...C / ...IO;  "first": NC... / OI... (PyTorch)
    padding_mode: str = "zeros"

    @property
    def nd(self):
        return len(self.i)

    @property
    def dimension_numbers(self):
        sp = "DHW"[3 - self.nd:]
        if self.layout == "first":
            return (f"NC{sp}", f"OI{sp}", f"NC{sp}")
        return (f"N{sp}C", f"{sp}IO", f"N{sp}C")

    def kwargs(self):
        kw = dict(strides=self.strides, padding=self.padding,
                  output_padding=self.output_padding, output_shape=self.output_shape,
                  dilation=self.dilation, groups=self.groups,
                  dimension_numbers=self.dimension_numbers)
        if self.padding_mode != "zeros":
            kw["padding_mode"] = self.padding_mode
        return kw

    def arrays(self, seed=0, dtype=np.float32):
        """x in its layout, w in its layout (canonically (C_in, C_out/g, *k))."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((self.batch, self.cin, *self.i))
        w = rng.standard_normal((self.cin, self.cout // self.groups, *self.k))
        if self.layout == "last":
            x = np.moveaxis(x, 1, -1)
            w = np.transpose(w, (*range(2, 2 + self.nd), 1, 0))
        return x.astype(dtype), w.astype(dtype)

    def _per_dim(self, v):
        return tuple(v) if isinstance(v, tuple | list) else (v,) * self.nd

    def reference_geometry(self):
        """(padding pairs, output_padding) computed here, independently of jax_tconv."""
        s, d = self._per_dim(self.strides), self._per_dim(self.dilation)
        if self.padding == "SAME":
            pads, ops = [], []
            target = self.output_shape or tuple(i * sj for i, sj in zip(self.i, s))
            for i, k, sj, dj, o in zip(self.i, self.k, s, d, target):
                total = max((i - 1) * sj + dj * (k - 1) + 1 - o, 0)
                pads.append((total // 2, total - total // 2))
                ops.append(o - ((i - 1) * sj - total + dj * (k - 1) + 1))
            return tuple(pads), tuple(ops)
        if self.padding == "VALID":
            pads = ((0, 0),) * self.nd
        else:
            pads = tuple(p if isinstance(p, tuple) else (p, p) for p in self._per_dim(self.padding))
        if self.output_shape is not None:
            nat = [(i - 1) * sj - lo - hi + dj * (k - 1) + 1
                   for i, k, sj, dj, (lo, hi) in zip(self.i, self.k, s, d, pads)]
            return pads, tuple(o - n for o, n in zip(self.output_shape, nat))
        return pads, self._per_dim(self.output_padding)

    def _ref_args(self):
        pads, ops = self.reference_geometry()
        return dict(strides=self._per_dim(self.strides), padding=pads, output_padding=ops,
                    dilation=self._per_dim(self.dilation), groups=self.groups,
                    padding_mode=self.padding_mode)

    def _canonical(self, x, w):
        if self.layout == "last":
            return np.moveaxis(x, -1, 1), np.transpose(w, (self.nd + 1, self.nd, *range(self.nd)))
        return x, w

    def _from_canonical(self, y):
        return np.moveaxis(y, 1, -1) if self.layout == "last" else y

    def reference(self, x, w):
        xc, wc = self._canonical(np.asarray(x), np.asarray(w))
        return self._from_canonical(conv_transpose_reference(xc, wc, **self._ref_args()))

    def reference_vjp(self, x, w, g):
        xc, wc = self._canonical(np.asarray(x), np.asarray(w))
        gc = np.moveaxis(np.asarray(g), -1, 1) if self.layout == "last" else np.asarray(g)
        dx, dw = conv_transpose_reference_vjp(xc, wc, gc, **self._ref_args())
        if self.layout == "last":
            dx = np.moveaxis(dx, 1, -1)
            dw = np.transpose(dw, (*range(2, 2 + self.nd), 1, 0))
        return dx, dw


CASES = [
    # 1-D
    Case("1d-k3-s1", (5,), (3,)),
    Case("1d-k4-s2-p1", (4,), (4,), strides=2, padding=1),
    Case("1d-k16-s8-p4-audio", (3,), (16,), cin=2, cout=1, strides=8, padding=4),
    Case("1d-k3-s2-p1-op1", (4,), (3,), strides=2, padding=1, output_padding=1),
    Case("1d-same-s2", (4,), (3,), strides=2, padding="SAME"),
    Case("1d-same-s3-k2", (3,), (2,), strides=3, padding="SAME"),
    Case("1d-valid-d2", (4,), (3,), dilation=2, padding="VALID"),
    Case("1d-asym-pair", (4,), (4,), strides=3, padding=((2, 0),)),
    Case("1d-groups2-first", (5,), (3,), cin=4, cout=2, groups=2, strides=2, layout="first"),
    Case("1d-d3-s1-op2", (3,), (2,), dilation=3, output_padding=2),
    # 2-D
    Case("2d-k4-s2-p1-dcgan", (3, 3), (4, 4), strides=2, padding=1),
    Case("2d-k3-s2-p1-op1-fcn", (3, 4), (3, 3), strides=2, padding=1, output_padding=1),
    Case("2d-k2-s2-unet", (3, 2), (2, 2), strides=2),
    Case("2d-same-k3", (4, 3), (3, 3), padding="SAME"),
    Case("2d-same-s2-oddshape", (3, 3), (4, 4), strides=2, padding="SAME", output_shape=(5, 6)),
    Case("2d-pytorch-layout", (3, 3), (3, 2), strides=(2, 1), padding=(1, 0), layout="first"),
    Case("2d-asym-strides-pairs", (3, 2), (3, 4), strides=(3, 2), padding=((2, 1), (0, 3))),
    Case("2d-xla-crash-config", (3, 3), (3, 4), strides=(3, 2), padding=(2, 3),
         output_padding=(1, 0)),
    Case("2d-dilation-op", (3, 3), (3, 2), strides=(2, 1), dilation=(1, 3), padding=(1, 2),
         output_padding=(1, 2)),
    Case("2d-groups2", (3, 3), (3, 3), cin=4, cout=6, groups=2, strides=2, padding=1),
    Case("2d-depthwise", (3, 3), (4, 4), cin=3, cout=3, groups=3, strides=2, padding=1),
    Case("2d-depthwise-mult2-first", (3, 2), (3, 3), cin=2, cout=4, groups=2, strides=(1, 2),
         layout="first"),
    Case("2d-output-shape", (3, 3), (3, 3), strides=2, padding=1, output_shape=(6, 5)),
    Case("2d-bigpad", (4, 4), (1, 2), strides=2, padding=(1, 1)),
    # 3-D
    Case("3d-k2-s2", (2, 2, 2), (2, 2, 2), strides=2),
    Case("3d-k3-s2-p1-op1-groups2", (2, 3, 2), (3, 3, 3), cin=2, cout=4, groups=2, strides=2,
         padding=1, output_padding=(1, 0, 1)),
    Case("3d-first-same", (2, 2, 3), (3, 2, 3), strides=(2, 1, 2), padding="SAME", layout="first"),
    Case("3d-dilation", (2, 2, 2), (2, 2, 2), dilation=(2, 1, 2), padding=((1, 0), 0, (0, 2))),
]

# Small, quick cases for expensive checks (second order, vmap, jit).
SMALL_CASES = [c for c in CASES if c.name in (
    "1d-k3-s2-p1-op1", "2d-k4-s2-p1-dcgan", "2d-xla-crash-config", "2d-groups2",
    "2d-dilation-op", "3d-k2-s2", "1d-groups2-first")]


def tolerance(dtype):
    return {np.float32: 2e-5, np.float64: 1e-12}.get(np.dtype(dtype).type, 2e-5)
