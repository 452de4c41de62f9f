"""`conv_transpose`: validate once into a `Spec`, then run one formulation on it."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jax_tconv import _checks, _sharding
from jax_tconv._checks import METHODS
from jax_tconv._dilated import dilated, transpose_by_dilation
from jax_tconv._layout import channels_last
from jax_tconv._matmul import transpose_by_matmul
from jax_tconv._padding_mode import with_padding_mode
from jax_tconv._phase import fast_kernel_gradient, transpose_by_phase
from jax_tconv._phase import plan as phase_plan
from jax_tconv._spec import Spec, transpose_spec
from jax_tconv._vjp import adjoint_derivatives, transpose_by_vjp
from jax_tconv.typing import (
    ArrayLike,
    DimensionNumbers,
    DTypeLike,
    IntOrSequence,
    Padding,
    Precision,
)

__all__ = ["METHODS", "AutoChoice", "apply", "auto_method", "conv_transpose"]

# Each formulation is jitted with the spec static: eager calls reuse one
# compiled program per configuration, and inside a user's jit it inlines.
# Padding modes other than 'zeros' (`_padding_mode`): "matmul" builds the mode
# into its matrix; the others run on the uncropped output and then apply the
# padding's adjoint, "vjp" by `jax.vjp` of the padding, the rest by the fold.
_FORMULATIONS = {
    "vjp": jax.jit(with_padding_mode(transpose_by_vjp, adjoint="vjp"), static_argnums=2),
    "matmul": jax.jit(transpose_by_matmul, static_argnums=2),
    "dilated": jax.jit(with_padding_mode(transpose_by_dilation), static_argnums=2),
    "phase": jax.jit(with_padding_mode(transpose_by_phase), static_argnums=2),
}
# "auto": the fastest forward for the configuration, differentiated like "phase".
_AUTO_FORWARDS = {
    "dilated": jax.jit(with_padding_mode(adjoint_derivatives(
        dilated, kernel_gradient=fast_kernel_gradient)), static_argnums=2),
    "phase": _FORMULATIONS["phase"],
    "vjp": _FORMULATIONS["vjp"],
}


class AutoChoice(NamedTuple):
    """What ``method="auto"`` runs for one configuration, and why.

    ``channels_last`` is True when "auto" runs the user's layout through its
    channels-last form (x, w and y transposed around the formulation).
    """

    method: str
    reason: str
    channels_last: bool = False


def _auto(spec: Spec, backend: str | None = None) -> AutoChoice:
    """The strategy: a pure function of the configuration and the backend.

    On CPU the layout is canonicalised first (`channels_last`), so the choice,
    made on the channels-last form, is the same for every `dimension_numbers`
    permutation of one geometry. The table was measured with
    ``python -m jax_tconv bench`` (docs/performance.md). With a padding mode
    other than 'zeros' the choice is the one for the uncropped transposed
    convolution that the formulations run before folding the border back.
    """
    if spec.padding_mode != "zeros":
        choice = _auto(spec.uncropped, backend)
        return choice._replace(reason=choice.reason + f"; then the adjoint of the "
                               f"{spec.padding_mode!r} padding folds the border back in")
    backend = backend or jax.default_backend()
    if backend == "cpu":
        cl = channels_last(spec)
        choice = _auto_channels_last(cl.spec)
        if cl.is_identity:
            return choice
        return AutoChoice(choice.method, choice.reason + "; run channels-last (x, w and y "
                          "transposed), since XLA:CPU runs channels-first convolutions up to "
                          "100x slower", True)
    return AutoChoice("vjp", f"on {backend}, XLA lowers the VJP to the accelerator library's "
                             f"backward-data convolution (not yet measured here)")


def _auto_channels_last(spec: Spec) -> AutoChoice:
    """XLA:CPU's table for a channels-last spec."""
    if spec.num_spatial >= 3:
        return AutoChoice("phase", "XLA:CPU runs input-dilated 3-D convolutions (behind "
                                   "'vjp' and 'dilated') about 40x slower than the phase "
                                   "decomposition's stride-1 convolutions")
    if phase_plan(spec).form == "products":
        return AutoChoice("phase", "a small input with many channels: the phase "
                                   "decomposition is one matrix product")
    return AutoChoice("dilated", "XLA:CPU folds the zero insertion into its 1-D/2-D convolution")


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
    spec = transpose_spec(
        "auto_method", _shaped(x), _shaped(w), strides=strides, padding=padding,
        padding_mode=padding_mode, output_padding=output_padding, output_shape=output_shape,
        dilation=dilation, groups=groups, dimension_numbers=dimension_numbers, precision=precision,
        preferred_element_type=preferred_element_type)
    return _auto(spec, backend)


def _shaped(a):
    return a if isinstance(a, jax.ShapeDtypeStruct) else jnp.asarray(a)


def apply(method: str, x: jax.Array, w: jax.Array, spec: Spec, *,
          fn: str = "conv_transpose") -> jax.Array:
    """Run a checked `method` on a spec built for these arrays (no validation here).

    Under a mesh with explicit axes, y is sharded by `_sharding.output_spec`;
    errors about layouts name `fn`.
    """
    return _sharding.partitioned(fn, lambda x, w, spec: _apply(method, x, w, spec), x, w, spec)


def _apply(method: str, x: jax.Array, w: jax.Array, spec: Spec) -> jax.Array:
    if method == "tune":
        from jax_tconv import _tune  # imports this module

        return _tune.apply(x, w, spec)
    if method != "auto":
        return _FORMULATIONS[method](x, w, spec)
    choice = _auto(spec)
    if not choice.channels_last:
        return _AUTO_FORWARDS[choice.method](x, w, spec)
    cl = channels_last(spec)
    y = _AUTO_FORWARDS[choice.method](jnp.transpose(x, cl.x_perm), jnp.transpose(w, cl.w_perm),
                                      cl.spec)
    return jnp.transpose(y, cl.y_perm)


def transpose(fn: str, method: str, x: ArrayLike, w: ArrayLike, **options) -> jax.Array:
    """Check `method`, build the one `Spec` (errors name `fn`), and run it."""
    _checks.method(fn, method)
    x, w = jnp.asarray(x), jnp.asarray(w)
    return apply(method, x, w, transpose_spec(fn, x, w, **options), fn=fn)


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
      precision, preferred_element_type: passed to lax.

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
