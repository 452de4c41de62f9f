"""Write golden outputs of torch.nn.ConvTranspose{1,2,3}d to tests/fixtures/torch_*.npz.

Needs torch (``pip install torch==2.13.0``); the tests that read the files do
not. Run from the repository root: ``python tests/make_torch_fixtures.py``.
Each file holds the module's configuration (as JSON), its weight and bias, a
random input and the output, all channels-first as in PyTorch, float32.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).parent / "fixtures"

# name: (dims, C_in, C_out, input spatial size, constructor keyword arguments)
CONFIGS = {
    "1d_s2_p1_op1_g2": (1, 4, 6, (5,), dict(kernel_size=3, stride=2, padding=1,
                                              output_padding=1, groups=2)),
    "1d_s3_op2_nobias": (1, 2, 3, (4,), dict(kernel_size=4, stride=3, output_padding=2,
                                             bias=False)),
    "2d_dcgan": (2, 3, 5, (4, 4), dict(kernel_size=4, stride=2, padding=1)),
    "2d_mixed_dilation": (2, 4, 6, (3, 4), dict(kernel_size=(3, 2), stride=(2, 1),
                                                padding=(1, 2), output_padding=(1, 0),
                                                dilation=(1, 2), groups=2)),
    "2d_depthwise_d2": (2, 4, 8, (3, 3), dict(kernel_size=3, stride=2, dilation=2,
                                              output_padding=1, groups=4)),
    "3d": (3, 2, 3, (2, 3, 2), dict(kernel_size=(2, 3, 3), stride=(1, 2, 2),
                                    padding=(0, 1, 1), output_padding=(0, 1, 0))),
}


def _tuple(v, n):
    return list(v) if isinstance(v, tuple | list) else [v] * n


def main():
    OUT.mkdir(exist_ok=True)
    torch.manual_seed(0)
    cls = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}
    for name, (n, c_in, c_out, size, kw) in CONFIGS.items():
        module = cls[n](c_in, c_out, **kw).double()  # float64 output, stored as float32
        x = torch.randn(2, c_in, *size, dtype=torch.float64)
        with torch.no_grad():
            y = module(x)
        config = dict(in_channels=c_in, out_channels=c_out,
                      kernel_size=_tuple(kw["kernel_size"], n),
                      stride=_tuple(kw.get("stride", 1), n),
                      padding=_tuple(kw.get("padding", 0), n),
                      output_padding=_tuple(kw.get("output_padding", 0), n),
                      dilation=_tuple(kw.get("dilation", 1), n), groups=kw.get("groups", 1),
                      bias=kw.get("bias", True), torch_version=torch.__version__)
        arrays = dict(config=np.array(json.dumps(config)),
                      x=x.numpy().astype(np.float32),
                      weight=module.weight.detach().numpy().astype(np.float32),
                      y=y.numpy().astype(np.float32))
        if module.bias is not None:
            arrays["bias"] = module.bias.detach().numpy().astype(np.float32)
        np.savez_compressed(OUT / f"torch_{name}.npz", **arrays)
        print(f"torch_{name}.npz: x {tuple(x.shape)} -> y {tuple(y.shape)}")


if __name__ == "__main__":
    main()
