"""Depth-to-space (``pixel_shuffle``) and its inverse, channels-last, N-D.

Channel order follows PyTorch's ``nn.PixelShuffle``: input channel
``c * R + q`` (``R = r_1 * ... * r_n``, ``q`` the row-major index of the
sub-pixel offset ``(a_1, ..., a_n)``) lands at output channel ``c`` and
spatial position ``(h_1 * r_1 + a_1, ..., h_n * r_n + a_n)``. A PyTorch
``Conv -> PixelShuffle`` pair therefore ports with a plain weight transpose.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jax_tconv import _checks
from jax_tconv.typing import ArrayLike, IntOrSequence


def _rank(fn: str, x, name: str, factor, num_spatial) -> tuple[int, tuple[int, ...]]:
    if num_spatial is None and not _checks.is_sequence(factor):
        num_spatial = x.ndim - 2  # one leading batch axis
        if num_spatial < 1:
            raise ValueError(
                f"{fn}: x of shape {x.shape} has no spatial axis after the batch and "
                f"channel axes; pass num_spatial for unbatched input."
            )
    r = _checks.ints(fn, name, factor, num_spatial, minimum=1)
    if x.ndim < len(r) + 1:
        raise ValueError(
            f"{fn}: x must be (*batch, *spatial, C) with {len(r)} spatial dimension(s), "
            f"got shape {x.shape}."
        )
    return len(r), r


def pixel_shuffle(x: ArrayLike, upscale_factor: IntOrSequence, *,
                  num_spatial: int | None = None) -> jax.Array:
    """Depth-to-space: ``(*B, *s, C * R) -> (*B, *(s * r), C)`` with ``R = prod(r)``.

    Args:
      x: channels-last input ``(*batch, s_1, ..., s_n, C * R)``.
      upscale_factor: ``r``, an int or one int per spatial dimension.
      num_spatial: ``n``; by default ``len(upscale_factor)`` for a sequence, else
        ``x.ndim - 2`` (one batch axis).

    Returns:
      ``(*batch, s_1 * r_1, ..., s_n * r_n, C)``, channel order as PyTorch's
      ``PixelShuffle`` (see the module docstring).

    Raises:
      ValueError: the channel count is not a multiple of ``R``, or bad factors.

    Example:
      >>> import jax.numpy as jnp
      >>> from jax_tconv.nn import pixel_shuffle
      >>> pixel_shuffle(jnp.zeros((2, 3, 5, 12)), 2).shape
      (2, 6, 10, 3)
    """
    fn = "pixel_shuffle"
    x = jnp.asarray(x)
    n, r = _rank(fn, x, "upscale_factor", upscale_factor, num_spatial)
    big_r = math.prod(r)
    batch, c_r = x.shape[: x.ndim - n - 1], x.shape[-1]
    spatial = x.shape[x.ndim - n - 1 : -1]
    if c_r % big_r:
        raise ValueError(
            f"{fn}: the channel count {c_r} must be a multiple of prod(upscale_factor) "
            f"= {big_r} (upscale_factor {r})."
        )
    c = c_r // big_r
    b = len(batch)
    y = x.reshape(*batch, *spatial, c, *r)
    # (*B, s_1..s_n, C, r_1..r_n) -> (*B, s_1, r_1, ..., s_n, r_n, C)
    order = [*range(b)]
    for j in range(n):
        order += [b + j, b + n + 1 + j]
    order.append(b + n)
    y = y.transpose(order)
    return y.reshape(*batch, *(sj * rj for sj, rj in zip(spatial, r)), c)


def pixel_unshuffle(x: ArrayLike, downscale_factor: IntOrSequence, *,
                    num_spatial: int | None = None) -> jax.Array:
    """Space-to-depth, the inverse of `pixel_shuffle`: ``(*B, *(s * r), C) -> (*B, *s, C * R)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jax_tconv.nn import pixel_shuffle, pixel_unshuffle
      >>> x = jnp.arange(2 * 4 * 6 * 8.0).reshape(2, 4, 6, 8)
      >>> bool((pixel_shuffle(pixel_unshuffle(x, 2), 2) == x).all())
      True
    """
    fn = "pixel_unshuffle"
    x = jnp.asarray(x)
    n, r = _rank(fn, x, "downscale_factor", downscale_factor, num_spatial)
    batch = x.shape[: x.ndim - n - 1]
    spatial = x.shape[x.ndim - n - 1 : -1]
    c = x.shape[-1]
    for j, (sj, rj) in enumerate(zip(spatial, r)):
        if sj % rj:
            raise ValueError(
                f"{fn}: spatial size {sj} in dimension {j} is not divisible by "
                f"downscale_factor {rj}."
            )
    b = len(batch)
    split = []
    for sj, rj in zip(spatial, r):
        split += [sj // rj, rj]
    y = x.reshape(*batch, *split, c)
    # (*B, s_1, r_1, ..., s_n, r_n, C) -> (*B, s_1..s_n, C, r_1..r_n)
    order = [*range(b)] + [b + 2 * j for j in range(n)] + [b + 2 * n]
    order += [b + 2 * j + 1 for j in range(n)]
    y = y.transpose(order)
    return y.reshape(*batch, *(sj // rj for sj, rj in zip(spatial, r)), c * math.prod(r))
