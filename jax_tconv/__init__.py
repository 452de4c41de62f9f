"""jax_tconv: transposed convolution in JAX, exact against PyTorch, in every formulation.

The functions need only JAX. The Flax layers live in `jax_tconv.nn`, imported
on first use (``jax_tconv.nn`` or ``from jax_tconv.nn import linen``), so
``import jax_tconv`` does not import Flax.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from jax_tconv import checkerboard as checkerboard
from jax_tconv import initializers as initializers
from jax_tconv import interop as interop
from jax_tconv import typing as typing
from jax_tconv._api import METHODS as METHODS
from jax_tconv._api import AutoChoice as AutoChoice
from jax_tconv._api import auto_method as auto_method
from jax_tconv._api import conv_transpose as conv_transpose
from jax_tconv._conv import conv as conv
from jax_tconv._jet import jet as jet
from jax_tconv._matmul import MATMUL_MAX_BYTES as MATMUL_MAX_BYTES
from jax_tconv._matmul import conv_matrix as conv_matrix
from jax_tconv._methods import conv_transpose_dilated as conv_transpose_dilated
from jax_tconv._methods import conv_transpose_matmul as conv_transpose_matmul
from jax_tconv._methods import conv_transpose_phase as conv_transpose_phase
from jax_tconv._methods import conv_transpose_products as conv_transpose_products
from jax_tconv._methods import conv_transpose_vjp as conv_transpose_vjp
from jax_tconv._norm import OperatorNorm as OperatorNorm
from jax_tconv._norm import operator_norm as operator_norm
from jax_tconv._spec import default_dimension_numbers as default_dimension_numbers
from jax_tconv._tune import TuneChoice as TuneChoice
from jax_tconv._tune import tune_choice as tune_choice
from jax_tconv.reference import conv_transpose_reference as conv_transpose_reference
from jax_tconv.reference import conv_transpose_reference_vjp as conv_transpose_reference_vjp

if TYPE_CHECKING:
    from jax_tconv import nn as nn

from jax_tconv._version import __version__ as __version__

__all__ = [
    "METHODS",
    "MATMUL_MAX_BYTES",
    "AutoChoice",
    "OperatorNorm",
    "TuneChoice",
    "auto_method",
    "checkerboard",
    "conv",
    "conv_matrix",
    "conv_transpose",
    "conv_transpose_dilated",
    "conv_transpose_matmul",
    "conv_transpose_phase",
    "conv_transpose_products",
    "conv_transpose_reference",
    "conv_transpose_reference_vjp",
    "conv_transpose_vjp",
    "default_dimension_numbers",
    "initializers",
    "interop",
    "jet",
    "nn",
    "operator_norm",
    "tune_choice",
    "typing",
]


def __getattr__(name: str) -> Any:
    if name == "nn":  # the Flax layers: imported on first use
        return importlib.import_module("jax_tconv.nn")
    raise AttributeError(f"module 'jax_tconv' has no attribute {name!r}")
