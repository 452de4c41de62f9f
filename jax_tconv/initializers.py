"""Kernel initializers for upsampling layers: `bilinear` (FCN) and `icnr` (sub-pixel).

Both return Flax/JAX initializers ``init(key, shape, dtype=jnp.float32)``, for
``kernel_init=`` of the `jax_tconv.nn` layers.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from jax_tconv import _checks
from jax_tconv.typing import Initializer, IntOrSequence

__all__ = ["bilinear", "icnr"]


def _tent(k: int) -> np.ndarray:
    """The 1-D bilinear filter of size k (Long et al. 2015): ``1 - |t - c| / f``.

    ``f = ceil(k / 2)`` and ``c = f - 1`` for odd k, ``f - 1/2`` for even k, so
    ``k = 2s - s % 2`` gives the tent of upsampling factor ``f = s``.
    """
    f = (k + 1) // 2
    c = f - 1 if k % 2 else f - 0.5
    return 1 - np.abs(np.arange(k) - c) / f


def bilinear() -> Initializer:
    """An initializer making a stride-s `ConvTranspose` per-channel bilinear upsampling.

    The FCN initialization (Long, Shelhamer & Darrell, "Fully Convolutional
    Networks for Semantic Segmentation", CVPR 2015). For the ConvTranspose kernel
    layout ``(*k, C_out // groups, C_in)`` with ``C_out == C_in`` (any groups),
    the kernel is::

        w[t, o, c] = prod_j tent_kj(t_j) * [o == c mod (C_out // groups)]

    so output channel c sees only input channel c, through the separable tent
    ``tent_k(t) = 1 - |t - center| / ceil(k/2)``.

    With ``k = 2s - s % 2`` (4 for s=2, 5 for s=3, 8 for s=4) and
    ``padding = s // 2`` the output is ``i * s`` and equals
    ``jax.image.resize(x, ..., 'linear')`` (half-pixel centres) everywhere but the
    ``s // 2`` outermost positions at each end of each spatial dimension. There
    the transposed convolution interpolates towards zero, not towards the edge
    value: the whole output is the bilinear upsampling of ``x`` zero-padded by one
    element per side, with ``s`` outputs cut from each end.

    Returns:
      ``init(key, shape, dtype=jnp.float32)``; `key` is unused (deterministic).

    Raises:
      ValueError: (at init) ``shape[-2]`` does not divide ``shape[-1]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jax_tconv import initializers
      >>> from jax_tconv.nn import linen
      >>> up = linen.ConvTranspose(features=3, kernel_size=(4, 4), strides=2, padding=1,
      ...                          use_bias=False, kernel_init=initializers.bilinear())
      >>> x = jax.random.normal(jax.random.key(0), (1, 6, 6, 3))
      >>> y = up.apply(up.init(jax.random.key(1), x), x)
      >>> ref = jax.image.resize(x, (1, 12, 12, 3), "linear")
      >>> bool(jnp.allclose(y[:, 1:-1, 1:-1], ref[:, 1:-1, 1:-1], atol=1e-5))
      True
    """

    def init(key, shape, dtype=jnp.float32):
        del key
        shape = tuple(shape)
        if len(shape) < 3:
            raise ValueError(
                f"bilinear: the kernel shape must be (*k, C_out // groups, C_in), got {shape}."
            )
        *k, m, c_in = shape
        if c_in % m:
            raise ValueError(
                f"bilinear: per-channel upsampling needs C_out == C_in, so the kernel's "
                f"C_out // groups axis ({m}) must divide C_in ({c_in}); got shape {shape}."
            )
        taps = np.ones(())
        for kj in k:
            taps = np.multiply.outer(taps, _tent(kj))
        route = np.arange(m)[:, None] == np.arange(c_in)[None, :] % m
        return jnp.asarray(taps[..., None, None] * route, dtype)

    return init


def icnr(base_init: Initializer, scale: IntOrSequence) -> Initializer:
    """ICNR: a sub-pixel kernel whose `SubPixelConv` output starts checkerboard-free.

    Aitken et al., "Checkerboard artifact free sub-pixel convolution"
    (arXiv 1707.02937). For the SubPixelConv kernel ``(*k, C_in // groups, C * R)``
    (``R = prod(scale)``) it draws a base kernel ``(*k, C_in // groups, C)`` from
    `base_init` (fan-in and fan-out of the ordinary conv) and repeats each
    output channel ``R`` times, so that after `pixel_shuffle` (PyTorch's channel
    order) every ``r_1 x ... x r_n`` block holds one value: the layer's output
    is the nearest-neighbour upsampling of the ordinary convolution with the
    base kernel. Use a zero (or per-channel repeated) bias to keep that exact.

    Args:
      base_init: any initializer ``(key, shape, dtype) -> array``.
      scale: the SubPixelConv's ``upscale_factor``: an int or one per dimension.

    Returns:
      ``init(key, shape, dtype=jnp.float32)``.

    Raises:
      ValueError, TypeError: (at init) bad `scale`, or ``shape[-1]`` not a
        multiple of ``R``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jax_tconv import initializers
      >>> init = initializers.icnr(jax.nn.initializers.lecun_normal(), 2)
      >>> w = init(jax.random.key(0), (3, 3, 4, 8))          # C = 2, R = 4
      >>> bool((w[..., 0:4] == w[..., 0:1]).all() and (w[..., 4:8] == w[..., 4:5]).all())
      True
    """
    if not callable(base_init):
        raise TypeError(f"icnr: base_init must be an initializer (callable), got {base_init!r}.")
    if not _checks.is_sequence(scale):
        _checks.ints("icnr", "scale", scale, 1, minimum=1)  # type and range, early

    def init(key, shape, dtype=jnp.float32):
        shape = tuple(shape)
        r = _checks.ints("icnr", "scale", scale, len(shape) - 2, minimum=1)
        big_r = math.prod(r)
        if len(shape) < 3 or shape[-1] % big_r:
            raise ValueError(
                f"icnr: the kernel shape must be (*k, C_in // groups, C * R) with "
                f"R = prod(scale) = {big_r}; got {shape}, whose last axis is not a "
                f"multiple of {big_r}."
            )
        base = base_init(key, (*shape[:-1], shape[-1] // big_r), dtype)
        return jnp.repeat(base, big_r, axis=-1)

    return init
