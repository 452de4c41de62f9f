"""Flax layers on top of `jax_tconv.conv_transpose`, one namespace per Flax API.

``jax_tconv.nn.linen`` and ``jax_tconv.nn.nnx`` each hold `ConvTranspose`,
`ResizeConv`, `SubPixelConv` and `PixelShuffle`, built on one shared
implementation; `pixel_shuffle` and `pixel_unshuffle` are plain functions.
"""

from jax_tconv.nn import linen as linen
from jax_tconv.nn import nnx as nnx
from jax_tconv.nn._shuffle import pixel_shuffle as pixel_shuffle
from jax_tconv.nn._shuffle import pixel_unshuffle as pixel_unshuffle

__all__ = [
    "linen",
    "nnx",
    "pixel_shuffle",
    "pixel_unshuffle",
]
