"""Write PyTorch golden values for padding modes to tests/golden/torch_padding_modes.npz.

Needs torch (``pip install torch==2.13.0``, the CPU build is enough); the test
that reads the file (tests/test_golden_modes.py) does not. Run from the
repository root::

    python tests/make_golden_modes.py      # rewrites tests/golden/torch_padding_modes.npz

PyTorch's ConvTranspose has no padding mode (pytorch#46027), so the values come
from the definition: ``C(u) = F.conv{n}d(F.pad(u, pads, mode), weight, stride=s,
dilation=d, groups=g)`` and the transposed convolution of ``x`` is the gradient
of ``<C(u), x>`` with respect to ``u``, taken by ``torch.autograd.grad`` with
``create_graph=True``. Its gradients, for a fixed random cotangent ``g``, are
PyTorch's double backward through that first gradient. Per configuration,
channels first as PyTorch lays them out:

- ``u``: a random input of the forward conv, ``(N, C_in, *o)``, and ``conv``:
  ``C(u)`` (checks `jax_tconv.conv` with the same padding mode);
- ``x``: the transposed convolution's input, ``(N, C_out, *i)``, ``weight``:
  ``(C_out, C_in // g, *k)`` (a ``Conv{n}d.weight``, read by jax_tconv with
  ``dimension_numbers=('NC..', 'OI..', 'NC..')``);
- ``y``: the transposed convolution ``(N, C_in, *o)``, ``g``: its cotangent,
  ``grad_x``, ``grad_w``: the gradients of ``sum(g * y)``.

Inputs are float32, torch computes in float64, results are stored rounded to
float32. ``pads`` is one ``(lo, hi)`` pair per spatial dimension (F.pad takes
them last dimension first; asymmetric pairs included). `CONFIGS` lists them.
"""

from __future__ import annotations

import pathlib

import numpy as np

OUT = pathlib.Path(__file__).parent / "golden" / "torch_padding_modes.npz"


def _cfg(mode, o, k, cin, cout, stride=1, pads=0, dilation=1, groups=1, batch=2):
    n = len(o)
    per_dim = lambda v: list(v) if isinstance(v, tuple | list) else [v] * n  # noqa: E731
    pairs = [list(p) if isinstance(p, tuple | list) else [p, p] for p in per_dim(pads)]
    return dict(mode=mode, o=list(o), k=list(k), cin=cin, cout=cout, stride=per_dim(stride),
                pads=pairs, dilation=per_dim(dilation), groups=groups, batch=batch)


# Each mode in 1-, 2- and 3-D, with strides, dilation, groups, asymmetric pairs, the
# largest padding each mode allows (circular: the size; reflect: size - 1; replicate: any).
CONFIGS = {
    "circular_1d_s2": _cfg("circular", (7,), (3,), 2, 3, stride=2, pads=1),
    "circular_2d_groups2_dilation": _cfg("circular", (6, 5), (4, 3), 4, 2, stride=(2, 1),
                                         pads=((2, 1), (1, 1)), dilation=(1, 2), groups=2),
    "circular_3d_asym": _cfg("circular", (4, 3, 4), (3, 2, 3), 2, 2, stride=(2, 1, 1),
                             pads=((1, 1), (0, 1), (2, 2))),
    "circular_2d_pad_equals_size": _cfg("circular", (3, 4), (3, 3), 2, 2,
                                        pads=((3, 0), (1, 4)), batch=1),
    "reflect_1d_s3_asym": _cfg("reflect", (8,), (4,), 2, 2, stride=3, pads=((2, 1),)),
    "reflect_2d_depthwise": _cfg("reflect", (5, 6), (3, 3), 3, 3, stride=2, pads=1, groups=3),
    "reflect_3d_dilation": _cfg("reflect", (3, 4, 3), (2, 3, 2), 2, 3, stride=(1, 2, 1),
                                pads=((1, 2), (1, 1), (0, 1)), dilation=(2, 1, 1)),
    "reflect_2d_pad_size_minus_1": _cfg("reflect", (4, 3), (5, 3), 2, 2, stride=(1, 2),
                                        pads=((3, 3), (2, 0))),
    "replicate_1d_pad_beyond_size": _cfg("replicate", (4,), (5,), 2, 2, pads=((6, 3),)),
    "replicate_2d_groups2_dilation": _cfg("replicate", (5, 5), (4, 4), 4, 4, stride=2,
                                          pads=((1, 2), (2, 1)), dilation=(1, 2), groups=2),
    "replicate_3d_s2": _cfg("replicate", (3, 3, 2), (3, 2, 2), 2, 2, stride=(2, 1, 2),
                            pads=((1, 1), (0, 1), (1, 1))),
    "replicate_2d_size_1": _cfg("replicate", (1, 3), (3, 3), 1, 2, pads=((2, 2), (1, 1))),
}


def torch_golden(cfg: dict, seed: int) -> dict:
    """u, conv, x, weight, y, g, grad_x, grad_w for `cfg`, computed by PyTorch (see above)."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    nd = len(cfg["o"])
    conv_fn = [F.conv1d, F.conv2d, F.conv3d][nd - 1]
    torch_pads = [v for lo_hi in reversed(cfg["pads"]) for v in lo_hi]  # last dimension first
    t64 = lambda a, grad=False: torch.tensor(a, dtype=torch.float64, requires_grad=grad)  # noqa: E731
    as32 = lambda t: t.detach().numpy().astype(np.float32)  # noqa: E731

    def forward(u, w):
        return conv_fn(F.pad(u, torch_pads, mode=cfg["mode"]), w, stride=cfg["stride"],
                       dilation=cfg["dilation"], groups=cfg["groups"])

    u = rng.standard_normal((cfg["batch"], cfg["cin"], *cfg["o"])).astype(np.float32)
    w = rng.standard_normal((cfg["cout"], cfg["cin"] // cfg["groups"], *cfg["k"]))
    w = w.astype(np.float32)
    conv = forward(t64(u), t64(w))
    x = rng.standard_normal(tuple(conv.shape)).astype(np.float32)
    xt, wt, u0 = t64(x, True), t64(w, True), t64(np.zeros_like(u), True)
    (y,) = torch.autograd.grad((forward(u0, wt) * xt).sum(), u0, create_graph=True)
    g = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    (y * t64(g)).sum().backward()          # double backward: through the first gradient
    return dict(u=u, conv=as32(conv), x=x, weight=w, y=as32(y), g=g,
                grad_x=as32(xt.grad), grad_w=as32(wt.grad))


def main():
    from make_golden import write  # beside this script, as tests import it

    write(OUT, CONFIGS, torch_golden, 2000)

if __name__ == "__main__":
    main()
