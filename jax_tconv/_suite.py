"""The layer suite: the transposed convolutions of real decoders, for tuning and benchmarks.

DCGAN generator steps, U-Net and FCN decoder steps, 1-D audio upsamplers and
3-D volume decoders, at the sizes a 2-core CPU runs in milliseconds.
``python -m jax_tconv tune`` measures `method="tune"`'s choice for each of
them on the user's machine; the comparison benchmarks in the repository's
``benchmarks/`` time every method on them against lax, Flax and PyTorch.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["SUITE", "Layer"]


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer: ``ConvTranspose(c_in, c_out, k, s, p, op)`` on ``(batch, *i, c_in)``."""

    name: str
    batch: int
    i: tuple          # input spatial size
    c_in: int
    c_out: int
    k: tuple
    s: int
    p: int
    op: int = 0

    @property
    def nd(self):
        return len(self.i)

    def macs(self):
        """Useful multiply-adds: every input element times every tap and output channel."""
        return self.batch * math.prod(self.i) * self.c_in * self.c_out * math.prod(self.k)


SUITE = [
    Layer("dcgan 4->8 512->256", 8, (4, 4), 512, 256, (4, 4), 2, 1),
    Layer("dcgan 8->16 256->128", 8, (8, 8), 256, 128, (4, 4), 2, 1),
    Layer("dcgan 16->32 128->64", 8, (16, 16), 128, 64, (4, 4), 2, 1),
    Layer("dcgan 32->64 64->3", 8, (32, 32), 64, 3, (4, 4), 2, 1),
    Layer("unet k2s2 16->32 128->64", 4, (16, 16), 128, 64, (2, 2), 2, 0),
    Layer("fcn k3s2p1op1 16->32 64->32", 4, (16, 16), 64, 32, (3, 3), 2, 1, 1),
    Layer("k5s3 12->36 32->32", 4, (12, 12), 32, 32, (5, 5), 3, 1),
    Layer("audio1d k16s8 256->2048 64->32", 4, (256,), 64, 32, (16,), 8, 4),
    Layer("1d k4s2 512->1024 64->64", 4, (512,), 64, 64, (4,), 2, 1),
    Layer("3d k2s2 8->16 32->16", 2, (8, 8, 8), 32, 16, (2, 2, 2), 2, 0),
    Layer("3d k4s2p1 8->16 16->8", 2, (8, 8, 8), 16, 8, (4, 4, 4), 2, 1),
]
