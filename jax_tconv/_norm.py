"""The operator norm of a convolution: its largest singular value, by power iteration.

``||C||_2 = ||Cᴴ||_2 = σ_1``, the largest singular value of the forward
convolution `C = conv(·, w, ...)` on inputs of one shape. Power iteration on
``CᴴC`` (Golub & Van Loan, "Matrix Computations", 4th ed., section 8.2.1) needs
only `C` and ``Cᴴ``, which are `conv` and `conv_transpose` with the conjugate
kernel (``Cᴴ = conj(C)ᵀ``; for a real kernel ``Cᴴ = Cᵀ``, `conv_transpose`
itself); the matrix (`conv_matrix`) is never built::

    v_0 random, |v_0| = 1
    σ_k = |C v_k|                        (a lower bound of σ_1, increasing to it)
    v_{k+1} = CᴴC v_k / |CᴴC v_k|

`conv_transpose` of a complex kernel is the bilinear transpose ``Cᵀ``
(PyTorch's), whose product ``CᵀC`` is not Hermitian: iterating it would
not find ``σ_1``.

It stops when ``|σ_k - σ_{k-1}| <= tol * σ_k`` or after `max_iter` steps.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jax_tconv import _api, _checks
from jax_tconv._conv import apply_conv
from jax_tconv._spec import ConvSpec, Spec, conv_spec, transpose_spec
from jax_tconv.typing import ArrayLike, DimensionNumbers, IntOrSequence, Padding, Precision

__all__ = ["OperatorNorm", "operator_norm"]


class OperatorNorm(NamedTuple):
    """What `operator_norm` returns: the estimate, whether it converged, the steps taken.

    ``value`` is a lower bound of the largest singular value (exact up to `tol`
    when ``converged``); all three are JAX scalars, so the function can run
    under `jax.jit`.
    """

    value: jax.Array
    converged: jax.Array
    iterations: jax.Array


def _check_options(fn: str, tol, max_iter) -> tuple[float, int]:
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 < tol < 1:
        raise ValueError(f"{fn}: tol must be a float in (0, 1), got {tol!r}.")
    return float(tol), _checks.positive_int(fn, "max_iter", max_iter)


def _input_shape(fn: str, input_shape, rank: int) -> tuple[int, ...]:
    """`input_shape` as ints, checked against the kernel's rank."""
    if not _checks.is_sequence(input_shape) or len(input_shape) != rank:
        raise ValueError(
            f"{fn}: input_shape must be the full shape of the forward conv's input "
            f"(batch, channels and {rank - 2} spatial sizes, as w has rank {rank}), got "
            f"{input_shape!r}."
        )
    shape = tuple(_checks.as_int(fn, "input_shape", v) for v in input_shape)
    if min(shape) < 1:
        raise ValueError(f"{fn}: input_shape sizes must be >= 1, got {shape}.")
    return shape


def operator_norm(w: ArrayLike, input_shape: Sequence[int], *, strides: IntOrSequence = 1,
                  padding: Padding = 0, dilation: IntOrSequence = 1, groups: int = 1,
                  dimension_numbers: DimensionNumbers = None, precision: Precision = None,
                  tol: float = 1e-6, max_iter: int = 500,
                  key: jax.Array | None = None) -> OperatorNorm:
    """The largest singular value of the convolution `C` (= that of ``Cᵀ``), by power iteration.

    ``σ_1 = max |C x| / |x|`` over inputs ``x`` of shape `input_shape`, where
    ``C = jax_tconv.conv(·, w, strides=, padding=, dilation=, groups=,
    dimension_numbers=)``; it is also the norm of `conv_transpose` with the same
    arguments (any output padding only adds rows of zeros). Step sizes of
    gradient descent on ``|C x - b|^2`` (``η < 2 / σ_1²``), Lipschitz constants
    and spectral normalisation need it.

    Complex kernels: ``|x|`` is the Euclidean norm ``sqrt(sum(|x_i|²))``, and the
    iteration runs on ``CᴴC``, whose transpose step is `conv_transpose` with
    ``conj(w)`` (`conv_transpose` with ``w`` is the bilinear ``Cᵀ``); the value is
    the largest singular value of the complex matrix `conv_matrix`, as
    ``numpy.linalg.svd`` gives it. The start is complex too.

    Each step runs one `conv` and one `conv_transpose`, in a `jax.lax.while_loop`,
    so the whole function can be jitted (`w` traced, the rest static). The
    estimate is differentiable in `w`: the loop runs on ``stop_gradient(w)``
    and the value is ``|C v|`` at the final unit vector ``v``, whose gradient
    ``u vᵀ``-style is the derivative of ``σ_1`` where it is simple.

    Args:
      w: the forward conv's kernel, laid out as for `conv` (``(*k, C_in // groups,
        C_out)`` by default).
      input_shape: the full shape of `C`'s input (the batch size is irrelevant).
      strides, padding, dilation, groups, dimension_numbers, precision: as in `conv`.
      tol: stop when the estimate changes by at most ``tol`` (relative) in one step.
      max_iter: at most this many steps; ``converged`` says whether `tol` was met.
      key: the random start (default ``jax.random.key(0)``).

    Returns:
      ``OperatorNorm(value, converged, iterations)``; ``value`` is a lower bound
      of ``σ_1`` that increases at every step. Its error after convergence is of
      the order of ``tol * σ_1 / (1 - (σ_2 / σ_1)^2)``: a near-double top
      singular value converges slowly (raise `max_iter`, lower `tol`).

    Raises:
      ValueError, TypeError: the arguments `conv` and `conv_transpose` refuse
        (negative padding included), a bad `input_shape`, `tol` or `max_iter`.

    Example:
      >>> import jax.numpy as jnp, jax_tconv
      >>> w = jnp.ones((3, 3, 1, 1)) / 9.0        # a 3x3 box blur
      >>> r = jax_tconv.operator_norm(w, (1, 32, 32, 1), padding=1)
      >>> round(float(r.value), 3), bool(r.converged)   # < 1: zero padding loses mass
      (0.994, True)
    """
    fn = "operator_norm"
    tol, max_iter = _check_options(fn, tol, max_iter)
    w = jnp.asarray(w)
    if not jnp.issubdtype(w.dtype, jnp.inexact):
        raise TypeError(f"{fn}: w must be floating point or complex (power iteration needs "
                        f"real or complex vectors), got w.dtype={w.dtype}; pass "
                        f"w.astype(jnp.float32), times its scale if it is quantized.")
    shape = list(_input_shape(fn, input_shape, w.ndim))
    cspec = conv_spec(fn, jax.ShapeDtypeStruct(tuple(shape), w.dtype), w, strides=strides,
                      padding=padding, dilation=dilation, groups=groups,
                      dimension_numbers=dimension_numbers, precision=precision,
                      preferred_element_type=None)
    if any(v < 0 for pair in cspec.padding for v in pair):
        raise ValueError(
            f"{fn}: padding must be >= 0 (Cᵀ is conv_transpose, which takes the forward "
            f"conv's padding and refuses cropping), got {padding!r}."
        )
    shape[cspec.dn.lhs_spec[0]] = 1  # one example: the norm does not depend on the batch
    x = jax.ShapeDtypeStruct(tuple(shape), w.dtype)
    y = jax.eval_shape(lambda x, w: apply_conv(x, w, cspec), x, w)
    spatial = tuple(shape[a] for a in cspec.dn.lhs_spec[2:])
    tspec = transpose_spec(fn, y, w, strides=cspec.strides, padding=cspec.padding,
                           output_padding=0, output_shape=spatial, dilation=cspec.dilation,
                           groups=cspec.groups, dimension_numbers=cspec.dn,
                           precision=precision, preferred_element_type=None)
    key = jax.random.key(0) if key is None else key
    return _power_iteration(w, key, x.shape, cspec, tspec, tol, max_iter)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6))
def _power_iteration(w, key, shape, cspec: ConvSpec, tspec: Spec, tol: float,
                     max_iter: int) -> OperatorNorm:
    """The loop, jitted with the geometry static: eager calls reuse one compiled program."""
    real = jnp.finfo(w.dtype).dtype
    w_const = lax.stop_gradient(w)
    w_conj = jnp.conj(w_const)   # Cᴴ = conj(C)ᵀ: conv_transpose of the conjugate kernel

    def gram(v):
        """``(|C v|, CᴴC v)``."""
        u = apply_conv(v, w_const, cspec)
        return jnp.linalg.norm(u.ravel()).astype(real), _api.apply("auto", u, w_conj, tspec)

    def unit(z):
        n = jnp.linalg.norm(z.ravel()).astype(real)
        return jnp.where(n > 0, z / jnp.where(n > 0, n, 1).astype(z.dtype), z)

    def step(state):
        v, sigma, _, it = state
        s_new, z = gram(v)
        done = jnp.abs(s_new - sigma) <= tol * s_new
        return unit(z), s_new, done, it + 1

    def keep_going(state):
        _, _, done, it = state
        return jnp.logical_and(jnp.logical_not(done), it < max_iter)

    # A complex kernel gets a complex start (real and imaginary parts both random).
    start_dtype = w.dtype if jnp.issubdtype(w.dtype, jnp.complexfloating) else real
    v0 = unit(jax.random.normal(key, shape, start_dtype).astype(w.dtype))
    init = (v0, jnp.zeros((), real), jnp.zeros((), bool), jnp.zeros((), jnp.int32))
    v, _, done, it = lax.while_loop(keep_going, step, init)
    v = lax.stop_gradient(v)
    # |C v| with the traced w: the value of the last step, differentiable in w.
    value = jnp.linalg.norm(apply_conv(v, w, cspec).ravel()).astype(real)
    return OperatorNorm(value, done, it)
