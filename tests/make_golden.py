"""Write PyTorch golden values for conv_transpose{1,2,3}d to tests/golden/torch_golden.npz.

Needs torch (``pip install torch==2.13.0``, the CPU build is enough); the tests
that read the file (tests/test_golden.py) do not. Run from the repository root::

    python tests/make_golden.py            # rewrites tests/golden/torch_golden.npz

For every configuration the file holds, channels-first as PyTorch lays them out:
``x`` (N, C_in, *i), PyTorch's ``weight`` (C_in, C_out // groups, *k), the
bias-free output ``y`` of ``torch.nn.functional.conv_transpose{n}d``, a fixed
random cotangent ``g`` shaped like ``y``, and ``grad_x``, ``grad_w``: the
gradients of ``sum(g * y)`` by PyTorch's autograd. Inputs are float32; torch
computes in float64 from them and the results are stored rounded to float32,
so the stored values are PyTorch's exact answers to float32 precision. The
configurations (stride, padding, output_padding, dilation, groups) are in
``config/<name>`` as JSON.

`CONFIGS` is a fixed hand-picked list plus seeded random draws (`random_config`,
also used by the live test) for 72 configurations in all.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).parent / "golden" / "torch_golden.npz"


def _cfg(i, k, cin, cout, stride=1, padding=0, output_padding=0, dilation=1, groups=1,
         batch=2):
    n = len(i)
    per_dim = lambda v: list(v) if isinstance(v, tuple | list) else [v] * n  # noqa: E731
    return dict(i=list(i), k=list(k), cin=cin, cout=cout, stride=per_dim(stride),
                padding=per_dim(padding), output_padding=per_dim(output_padding),
                dilation=per_dim(dilation), groups=groups, batch=batch)


# Hand-picked: the layers people build, and the corners of the output-size rule.
HAND_PICKED = {
    "1d_k3_s1": _cfg((7,), (3,), 2, 3),
    "1d_k4_s2_p1": _cfg((6,), (4,), 3, 2, stride=2, padding=1),
    "1d_k16_s8_p4_audio": _cfg((3,), (16,), 2, 1, stride=8, padding=4),
    "1d_s3_op2": _cfg((4,), (4,), 2, 3, stride=3, output_padding=2),
    "1d_groups2_op1": _cfg((5,), (3,), 4, 6, stride=2, padding=1, output_padding=1, groups=2),
    "1d_depthwise_d2": _cfg((5,), (3,), 3, 3, stride=1, dilation=2, groups=3),
    "1d_d3_op2_s1": _cfg((4,), (2,), 2, 2, dilation=3, output_padding=2),
    "1d_pad_beyond_kernel": _cfg((6,), (2,), 1, 2, stride=3, padding=3),
    "2d_dcgan": _cfg((4, 4), (4, 4), 3, 5, stride=2, padding=1),
    "2d_fcn_op1": _cfg((3, 4), (3, 3), 2, 3, stride=2, padding=1, output_padding=1),
    "2d_unet_k2": _cfg((3, 5), (2, 2), 4, 2, stride=2),
    "2d_asym_all": _cfg((3, 5), (3, 2), 2, 4, stride=(2, 3), padding=(1, 0),
                        output_padding=(1, 2), dilation=(1, 2)),
    "2d_groups3": _cfg((3, 3), (3, 3), 6, 9, stride=2, padding=1, groups=3),
    "2d_depthwise_mult2": _cfg((4, 3), (4, 4), 3, 6, stride=2, padding=1, groups=3),
    "2d_dilation_gt_stride_op": _cfg((3, 3), (3, 2), 2, 2, stride=(1, 2), dilation=(3, 3),
                                     output_padding=(2, 1)),
    "2d_k1_s3": _cfg((2, 3), (1, 1), 2, 2, stride=3, output_padding=(2, 1)),
    "2d_batch1": _cfg((5, 2), (2, 3), 1, 1, stride=(1, 2), padding=(1, 1), batch=1),
    "3d_k2_s2": _cfg((2, 2, 2), (2, 2, 2), 2, 3, stride=2),
    "3d_groups2_op": _cfg((2, 3, 2), (3, 3, 3), 2, 4, stride=2, padding=1,
                          output_padding=(1, 0, 1), groups=2),
    "3d_asym_dilation": _cfg((2, 3, 2), (2, 2, 3), 2, 2, stride=(1, 2, 1), padding=(0, 1, 2),
                             dilation=(2, 1, 2), output_padding=(1, 1, 0)),
    "3d_depthwise": _cfg((2, 2, 3), (3, 2, 2), 2, 2, stride=(2, 1, 2), groups=2),
}


def random_config(rng: np.random.Generator, nd: int) -> dict:
    """One valid PyTorch ConvTranspose configuration with small shapes, drawn from `rng`."""
    size = {1: 7, 2: 5, 3: 3}[nd]
    i = [int(v) for v in rng.integers(1, size + 1, nd)]
    k = [int(v) for v in rng.integers(1, {1: 5, 2: 4, 3: 3}[nd] + 1, nd)]
    s = [int(v) for v in rng.integers(1, 4, nd)]
    d = [int(v) for v in rng.integers(1, 4, nd)]
    op = [int(rng.integers(0, max(sj, dj))) for sj, dj in zip(s, d)]
    # Padding: symmetric (PyTorch's only form), as large as keeps o >= 1.
    p = []
    for ij, kj, sj, dj, opj in zip(i, k, s, d, op):
        room = (ij - 1) * sj + dj * (kj - 1) + opj       # o - 1 at p = 0
        p.append(int(rng.integers(0, room // 2 + 1)))
    kind = rng.choice(["plain", "grouped", "depthwise"])
    if kind == "plain":
        g, cin, cout = 1, int(rng.integers(1, 4)), int(rng.integers(1, 4))
    elif kind == "grouped":
        g = int(rng.integers(2, 4))
        cin, cout = g * int(rng.integers(1, 3)), g * int(rng.integers(1, 3))
    else:
        g = int(rng.integers(1, 5))
        cin, cout = g, g * int(rng.integers(1, 3))
    return _cfg(i, k, cin, cout, stride=s, padding=p, output_padding=op, dilation=d, groups=g,
                batch=int(rng.integers(1, 3)))


def configs(total: int = 72, seed: int = 20261129) -> dict:
    """The hand-picked configurations plus random ones, evenly over ranks 1-3, `total` in all."""
    rng = np.random.default_rng(seed)
    out = dict(HAND_PICKED)
    j = 0
    while len(out) < total:
        nd = 1 + j % 3
        out[f"{nd}d_random_{j:02d}"] = random_config(rng, nd)
        j += 1
    return out


def torch_golden(cfg: dict, seed: int) -> dict:
    """x, weight, y, g, grad_x, grad_w for `cfg`, computed by PyTorch (float64, stored float32)."""
    import torch

    rng = np.random.default_rng(seed)
    nd = len(cfg["i"])
    x = rng.standard_normal((cfg["batch"], cfg["cin"], *cfg["i"])).astype(np.float32)
    w = rng.standard_normal((cfg["cin"], cfg["cout"] // cfg["groups"], *cfg["k"]))
    w = w.astype(np.float32)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    fn = [torch.nn.functional.conv_transpose1d, torch.nn.functional.conv_transpose2d,
          torch.nn.functional.conv_transpose3d][nd - 1]
    y = fn(xt, wt, None, stride=cfg["stride"], padding=cfg["padding"],
           output_padding=cfg["output_padding"], groups=cfg["groups"], dilation=cfg["dilation"])
    g = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    (y * torch.tensor(g, dtype=torch.float64)).sum().backward()
    as32 = lambda t: t.detach().numpy().astype(np.float32)  # noqa: E731
    return dict(x=x, weight=w, y=as32(y), g=g, grad_x=as32(xt.grad), grad_w=as32(wt.grad))


def write(out: pathlib.Path, cfgs: dict, golden, first_seed: int) -> None:
    """Write ``golden(cfg, seed)``'s arrays for every named configuration (seeds from
    `first_seed` on), the configurations as JSON and torch's version to `out` (.npz)."""
    import torch

    arrays = {}
    for n, (name, cfg) in enumerate(cfgs.items()):
        for key, value in golden(cfg, seed=first_seed + n).items():
            arrays[f"{name}/{key}"] = value
        arrays[f"config/{name}"] = np.array(json.dumps(cfg))
    arrays["torch_version"] = np.array(torch.__version__)
    out.parent.mkdir(exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {len(cfgs)} configurations to {out} ({out.stat().st_size:,} bytes) "
          f"with torch {torch.__version__}")


def main():
    write(OUT, configs(), torch_golden, 1000)


if __name__ == "__main__":
    main()
