"""The public functions: validate once into a `Spec` (errors name the function called),
then hand it to a strategy (`jax_tconv._strategy`) or to the tuner (`jax_tconv._tune`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jax_tconv import _checks, _sharding, _strategy, _tune
from jax_tconv._checks import METHODS
from jax_tconv._spec import Spec, shaped, transpose_spec
from jax_tconv._strategy import AutoChoice
from jax_tconv._unbatched import batched
from jax_tconv.typing import (
    ArrayLike,
    DimensionNumbers,
    DTypeLike,
    IntOrSequence,
    Padding,
    Precision,
)

__all__ = ["METHODS", "AutoChoice", "apply", "auto_method", "conv_transpose"]


def auto_method(x: ArrayLike, w: ArrayLike, *, strides: IntOrSequence = 1,
                padding: Padding = 0, padding_mode: str = "zeros",
                output_padding: IntOrSequence = 0,
                output_shape: tuple[int, ...] | None = None, dilation: IntOrSequence = 1,
                groups: int = 1, dimension_numbers: DimensionNumbers = None,
                precision: Precision = None, preferred_element_type: DTypeLike | None = None,
                backend: str | None = None) -> AutoChoice:
    """What ``conv_transpose(x, w, ..., method="auto")`` runs, and why.

    Takes `conv_transpose`'s arguments (arrays or `jax.ShapeDtypeStruct`s:
    only shapes and dtypes are read) and the backend (default: JAX's default).
    Whatever the forward, "auto" differentiates like "phase": the input
    gradient is the forward convolution itself and the kernel gradient its
    kernel VJP or the per-tap phase products; neither multiplies an inserted zero.

    Returns:
      ``AutoChoice(method, reason)``: the formulation's name (one of `METHODS`)
      and one sentence on why.

    Example:
      >>> import jax, jax.numpy as jnp, jax_tconv
      >>> x = jax.ShapeDtypeStruct((1, 8, 8, 8, 16), jnp.float32)
      >>> w = jax.ShapeDtypeStruct((4, 4, 4, 8, 16), jnp.float32)
      >>> jax_tconv.auto_method(x, w, strides=2, padding=1, backend="cpu").method
      'phase'
    """
    w = shaped(w)
    b = batched("auto_method", shaped(x), w, dimension_numbers, transposed=True,
                output_shape=output_shape)
    x, output_shape = b.x, b.output_shape
    spec = transpose_spec(
        "auto_method", x, w, strides=strides, padding=padding,
        padding_mode=padding_mode, output_padding=output_padding, output_shape=output_shape,
        dilation=dilation, groups=groups, dimension_numbers=dimension_numbers, precision=precision,
        preferred_element_type=preferred_element_type)
    return _strategy.auto(spec, backend)


def apply(method: str, x: jax.Array, w: jax.Array, spec: Spec, *,
          fn: str = "conv_transpose") -> jax.Array:
    """Run a checked `method` on a spec built for these arrays (no validation here).

    Under a mesh with explicit axes, y is sharded by `_sharding.output_spec`;
    errors about layouts name `fn`.
    """
    def run(x, w, spec):
        if method == "tune":
            return _tune.apply(x, w, spec, fn=fn)
        return _strategy.run(method, x, w, spec)

    return _sharding.partitioned(fn, run, x, w, spec)


def transpose(fn: str, method: str, x: ArrayLike, w: ArrayLike, **options) -> jax.Array:
    """Check `method`, build the one `Spec` (errors name `fn`), and run it."""
    _checks.method(fn, method)
    x, w = jnp.asarray(x), jnp.asarray(w)
    b = batched(fn, x, w, options.get("dimension_numbers"), transposed=True,
                output_shape=options.get("output_shape"))
    options["output_shape"] = b.output_shape
    return b.result(apply(method, b.x, w, transpose_spec(fn, b.x, w, **options), fn=fn))


def conv_transpose(x: ArrayLike, w: ArrayLike, *, strides: IntOrSequence = 1,
                   padding: Padding = 0, padding_mode: str = "zeros",
                   output_padding: IntOrSequence = 0,
                   output_shape: tuple[int, ...] | None = None, dilation: IntOrSequence = 1,
                   groups: int = 1, dimension_numbers: DimensionNumbers = None,
                   method: str = "auto", precision: Precision = None,
                   preferred_element_type: DTypeLike | None = None) -> jax.Array:
    """Transposed convolution ``y = Cᵀ x``, where ``C = conv(·, w, ...)``.

    Exactly the VJP of `conv` with respect to its input (PyTorch's and Keras's
    ``ConvTranspose``; ``lax.conv_transpose(..., transpose_kernel=True)``).
    Per spatial dimension the output size is::

        o = (i - 1)*s - lo - hi + d*(k - 1) + 1 + output_padding

    Args:
      x: input, ``(N, *i, C_in)`` by default; laid out by the *output* spec of
        `dimension_numbers`, since it is the forward conv's output.
      w: the forward conv's kernel, ``(*k, C_out // groups, C_in)`` by default
        (kernel spec ``...IO``; 'O' is x's channel axis). A PyTorch
        ``ConvTranspose2d.weight`` ``(C_in, C_out // groups, kH, kW)`` works
        as is with ``dimension_numbers=('NCHW', 'OIHW', 'NCHW')``.
      strides, dilation: an int or one int per spatial dimension.
      padding: the forward conv's padding: an int, one int per spatial
        dimension, one ``(lo, hi)`` pair per spatial dimension, ``'VALID'``, or
        ``'SAME'`` (strings in any case, as in lax; SAME is the adjoint of the
        forward SAME: ``o = i * s`` unless `output_shape` picks another size
        with ``ceil(o / s) == i``).
      padding_mode: what the forward conv pads with (PyTorch's
        ``padding_mode``): ``"zeros"``, ``"circular"`` (wrap around),
        ``"reflect"`` (mirror, edge not repeated) or ``"replicate"`` (repeat the
        edge). Then ``C = conv(·, w, padding=..., padding_mode=...)`` and the
        result is its adjoint: the border of the uncropped output folded back
        in. 'reflect' needs each padding < ``o``, 'circular' <= ``o``.
      output_padding: extra size at the high end, ``0 <= op < max(s, d)``.
      output_shape: the output's spatial sizes (or full shape) instead of
        `output_padding`; giving a non-zero `output_padding` too is an error.
      groups: divides both channel counts (``groups == C_in`` is depthwise).
      dimension_numbers: as in `lax.conv_general_dilated`; default
        ``('NWC', 'WIO', 'NWC')``, ``('NHWC', 'HWIO', 'NHWC')``, ... by rank.
        The result is laid out by the input (lhs) spec.
      method: "auto", "tune" or one of `METHODS` (`auto_method` says what "auto"
        runs; "tune" times the strategies once per configuration and runs the
        fastest, cached on disk: `tune_choice`, docs/tune.md).
      precision, preferred_element_type: passed to lax. Integer x and w (int8,
        uint8, int16, int32: one dtype) accumulate exactly in an integer
        `preferred_element_type` of at least 32 bits, int32 by default, so an
        int8 call returns int32 (docs/quantized.md).

    Returns:
      ``(N, *o, C_out)`` by default, dtype `preferred_element_type` or x's.

    Raises:
      ValueError, TypeError: any argument outside the rules above, naming it.

    Example:
      >>> import jax.numpy as jnp, jax_tconv
      >>> x = jnp.ones((1, 2, 2, 1)); w = jnp.ones((3, 3, 1, 1))
      >>> jax_tconv.conv_transpose(x, w).shape      # 2x2 -> 4x4, one value to nine
      (1, 4, 4, 1)
      >>> jax_tconv.conv_transpose(jnp.ones((1, 4, 4, 8)), jnp.ones((4, 4, 3, 8)),
      ...                          strides=2, padding=1).shape
      (1, 8, 8, 3)
      >>> x = jnp.ones((1, 3, 1)); w = jnp.ones((3, 1, 1))    # 1-D, k = 3
      >>> jax_tconv.conv_transpose(x, w, padding=1)[0, :, 0]  # the border cropped
      Array([2., 3., 2.], dtype=float32)
      >>> jax_tconv.conv_transpose(x, w, padding=1, padding_mode="circular")[0, :, 0]
      Array([3., 3., 3.], dtype=float32)
    """
    return transpose("conv_transpose", method, x, w, strides=strides, padding=padding,
                     padding_mode=padding_mode, output_padding=output_padding,
                     output_shape=output_shape, dilation=dilation, groups=groups,
                     dimension_numbers=dimension_numbers, precision=precision,
                     preferred_element_type=preferred_element_type)
