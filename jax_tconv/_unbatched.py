"""Inputs without a batch axis (PyTorch's rule): x has one axis fewer than w.

With the same `dimension_numbers` as the batched call, x and the result simply
lack the 'N' axis: the result is the batched call's on x with a batch axis of
size 1 inserted where 'N' is, that axis then removed. A full `output_shape`
lacks it too. Every other rank mismatch keeps its error (`_checks`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jax_tconv import _checks

__all__ = ["Batched", "batched"]


class Batched:
    """x with its batch axis (if it lacked one) and how to take it off the result."""

    def __init__(self, x: Any, output_shape: Any, result_axis: int | None):
        self.x, self.output_shape, self.result_axis = x, output_shape, result_axis

    def result(self, y: jax.Array) -> jax.Array:
        return y if self.result_axis is None else jnp.squeeze(y, self.result_axis)


def batched(fn: str, x: Any, w: Any, dimension_numbers: Any, *, transposed: bool,
            output_shape: Any = None) -> Batched:
    """`x` (an array or a `jax.ShapeDtypeStruct`) with a batch axis of 1 where it lacks one.

    `transposed`: x is laid out by the output spec and the result by the input
    spec (`conv_transpose`), else the other way round (`conv`).
    """
    if x.ndim != w.ndim - 1:
        return Batched(x, output_shape, None)
    dn = _checks.dimension_numbers(fn, dimension_numbers, w.ndim, w.ndim)
    x_axis, y_axis = (dn.out_spec[0], dn.lhs_spec[0]) if transposed else (
        dn.lhs_spec[0], dn.out_spec[0])
    if isinstance(x, jax.ShapeDtypeStruct):
        shape = list(x.shape)
        shape.insert(x_axis, 1)
        x = jax.ShapeDtypeStruct(tuple(shape), x.dtype)
    else:
        x = jnp.expand_dims(x, x_axis)
    if _checks.is_sequence(output_shape) and len(output_shape) == w.ndim - 1:
        output_shape = list(output_shape)
        output_shape.insert(y_axis, 1)
        output_shape = tuple(output_shape)
    return Batched(x, output_shape, y_axis)
