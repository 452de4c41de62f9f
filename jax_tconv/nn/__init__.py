"""Layers on top of `jax_tconv.conv_transpose`, one namespace per API.

``jax_tconv.nn.linen``, ``jax_tconv.nn.nnx`` and ``jax_tconv.nn.equinox`` each
hold `ConvTranspose`, `ResizeConv`, `SubPixelConv` and `PixelShuffle`, built on
one shared implementation; `pixel_shuffle` and `pixel_unshuffle` are plain
functions, and `adjoint` turns a convolution layer into its exact transpose
on the same kernel (and back). ``jax_tconv.nn.equinox`` is imported on first
use, so ``import jax_tconv.nn`` does not import Equinox.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from jax_tconv.nn import linen as linen
from jax_tconv.nn import nnx as nnx
from jax_tconv.nn._adjoint import adjoint as adjoint
from jax_tconv.nn._shuffle import pixel_shuffle as pixel_shuffle
from jax_tconv.nn._shuffle import pixel_unshuffle as pixel_unshuffle

if TYPE_CHECKING:
    from jax_tconv.nn import equinox as equinox

__all__ = [
    "adjoint",
    "equinox",
    "linen",
    "nnx",
    "pixel_shuffle",
    "pixel_unshuffle",
]


def __getattr__(name: str) -> Any:
    if name == "equinox":  # the Equinox layers: imported on first use
        return importlib.import_module("jax_tconv.nn.equinox")
    raise AttributeError(f"module 'jax_tconv.nn' has no attribute {name!r}")
