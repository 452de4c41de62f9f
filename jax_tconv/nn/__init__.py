"""Layers on top of `jax_tconv.conv_transpose`, one namespace per API.

``jax_tconv.nn.linen``, ``jax_tconv.nn.nnx`` and ``jax_tconv.nn.equinox`` each
hold `ConvTranspose`, `ResizeConv`, `SubPixelConv` and `PixelShuffle`, built on
one shared implementation that imports no framework; `pixel_shuffle` and
`pixel_unshuffle` are plain functions, and `adjoint` turns a convolution layer
into its exact transpose on the same kernel (and back). The Flax front ends
also hold `QuantizedConvTranspose` (int8 weights and activations, int32 sums),
whose parameters `quantize_conv_transpose` makes from a float layer's and whose
static input scale `input_scale` calibrates (docs/quantized.md). Each front end is
imported on first use, so ``import jax_tconv.nn`` imports neither Flax nor
Equinox, and ``import jax_tconv.nn.equinox`` does not import Flax.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from jax_tconv.nn._adjoint import adjoint as adjoint
from jax_tconv.nn._quantize import input_scale as input_scale
from jax_tconv.nn._quantize import quantize_conv_transpose as quantize_conv_transpose
from jax_tconv.nn._shuffle import pixel_shuffle as pixel_shuffle
from jax_tconv.nn._shuffle import pixel_unshuffle as pixel_unshuffle

if TYPE_CHECKING:
    from jax_tconv.nn import equinox as equinox
    from jax_tconv.nn import linen as linen
    from jax_tconv.nn import nnx as nnx

__all__ = [
    "adjoint",
    "equinox",
    "input_scale",
    "linen",
    "nnx",
    "pixel_shuffle",
    "pixel_unshuffle",
    "quantize_conv_transpose",
]

# Front ends, by the framework they need (the extra that installs it).
_FRONT_ENDS = {"linen": "flax", "nnx": "flax", "equinox": "equinox"}


def __getattr__(name: str) -> Any:
    if name in _FRONT_ENDS:  # imported on first use
        try:
            return importlib.import_module(f"jax_tconv.nn.{name}")
        except ModuleNotFoundError as e:
            if e.name != _FRONT_ENDS[name]:
                raise
            raise ModuleNotFoundError(
                f"jax_tconv.nn.{name} needs {_FRONT_ENDS[name]}, which is not installed: "
                f"pip install 'jax_tconv[{_FRONT_ENDS[name]}]'", name=e.name) from e
    raise AttributeError(f"module 'jax_tconv.nn' has no attribute {name!r}")
