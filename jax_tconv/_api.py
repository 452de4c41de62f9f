"""`conv_transpose`: validate once, then dispatch to one formulation."""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp

from jax_tconv._dilated import transpose_by_dilation
from jax_tconv._matmul import transpose_by_matmul
from jax_tconv._phase import fast_kernel_gradient, transpose_by_phase
from jax_tconv._phase import plan as phase_plan
from jax_tconv._spec import Spec, transpose_spec
from jax_tconv._vjp import adjoint_derivatives, transpose_by_vjp

#: The formulations `method=` accepts besides "auto", in a stable order.
METHODS = ("vjp", "matmul", "dilated", "phase")

# Each formulation is jitted with the spec static: eager calls reuse one
# compiled program per configuration, and inside a user's jit it inlines.
_FORMULATIONS = {
    "vjp": jax.jit(transpose_by_vjp, static_argnums=2),
    "matmul": jax.jit(transpose_by_matmul, static_argnums=2),
    "dilated": jax.jit(transpose_by_dilation, static_argnums=2),
    "phase": jax.jit(transpose_by_phase, static_argnums=2),
}
# "auto": the fastest forward for the configuration, differentiated like "phase".
_AUTO_FORWARDS = {
    "dilated": jax.jit(adjoint_derivatives(transpose_by_dilation,
                                           kernel_gradient=fast_kernel_gradient),
                       static_argnums=2),
    "phase": _FORMULATIONS["phase"],
    "vjp": _FORMULATIONS["vjp"],
}


def auto_method(spec: Spec, *, backend: str | None = None) -> str:
    """The formulation whose forward pass "auto" runs for `spec` on `backend`.

    The decision table, from ``python -m jax_tconv bench`` (README: Performance):

    - XLA:CPU, 3 or more spatial dims: "phase" (XLA:CPU's input-dilated 3-D
      convolution, behind "vjp", "dilated" and lax.conv_transpose, is ~40x slower).
    - XLA:CPU, small inputs with many channels (the phase plan's "products"
      form, e.g. DCGAN's first layer): "phase", one matrix product.
    - XLA:CPU, other 1-D and 2-D layers: "dilated" (XLA folds the zero
      insertion into its convolution).
    - Other backends: "vjp" (XLA lowers it to the accelerator library's
      backward-data convolution, cuDNN's on GPU). Not yet measured here.

    Whatever the forward, "auto" differentiates like "phase": the input
    gradient is the forward conv C itself, the kernel gradient C's kernel VJP
    or the per-tap phase products, whichever `fast_kernel_gradient` picks
    (`adjoint_derivatives`); the fastest gradients measured on CPU.
    """
    backend = backend or jax.default_backend()
    if backend == "cpu":
        if spec.num_spatial >= 3 or phase_plan(spec).form == "products":
            return "phase"
        return "dilated"
    return "vjp"


def conv_transpose(x, w, *, strides=1, padding=0, output_padding=0, output_shape=None,
                   dilation=1, groups=1, dimension_numbers=None, method="auto",
                   precision=None, preferred_element_type=None):
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
        ``'SAME'`` (the adjoint of the forward SAME: ``o = i * s`` unless
        `output_shape` picks another size with ``ceil(o / s) == i``).
      output_padding: extra size at the high end, ``0 <= op < max(s, d)``.
      output_shape: the output's spatial sizes (or full shape) instead of
        `output_padding`; giving a non-zero `output_padding` too is an error.
      groups: divides both channel counts (``groups == C_in`` is depthwise).
      dimension_numbers: as in `lax.conv_general_dilated`; default
        ``('NWC', 'WIO', 'NWC')``, ``('NHWC', 'HWIO', 'NHWC')``, ... by rank.
        The result is laid out by the input (lhs) spec.
      method: "auto" or one of `METHODS`.
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
    """
    return _dispatch("conv_transpose", method, x, w, strides=strides, padding=padding,
                     output_padding=output_padding, output_shape=output_shape,
                     dilation=dilation, groups=groups, dimension_numbers=dimension_numbers,
                     precision=precision, preferred_element_type=preferred_element_type)


def _dispatch(fn, method, x, w, **kwargs):
    if not isinstance(method, str) or (method != "auto" and method not in METHODS):
        raise ValueError(
            f"{fn}: unknown method {method!r}; choose 'auto' or one of {', '.join(map(repr, METHODS))}."
        )
    x, w = jnp.asarray(x), jnp.asarray(w)
    spec = transpose_spec(fn, x, w, **kwargs)
    if method == "auto":
        return _AUTO_FORWARDS[auto_method(spec)](x, w, spec)
    return _FORMULATIONS[method](x, w, spec)


def _formulation(method: str, summary: str):
    """The public function for one formulation: `conv_transpose` without `method`."""
    params = inspect.signature(conv_transpose).parameters
    signature = inspect.Signature([p for name, p in params.items() if name != "method"])
    name = f"conv_transpose_{method}"

    @functools.wraps(conv_transpose)
    def fn(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return _dispatch(name, method, **bound.arguments)

    fn.__name__ = fn.__qualname__ = name
    fn.__signature__ = signature
    fn.__doc__ = f"{summary}\n\nSame contract as `conv_transpose` with ``method={method!r}``."
    del fn.__wrapped__
    return fn


conv_transpose_vjp = _formulation(
    "vjp", "Transposed convolution as `jax.vjp` of `conv` with respect to its input.")
conv_transpose_matmul = _formulation(
    "matmul",
    "Transposed convolution as ``Cᵀ @ vec(x)`` with the dense `conv_matrix` C.\n\n"
    "Builds C per example (refusing, with a ValueError, above `MATMUL_MAX_BYTES`).\n"
    "Every output is a sum over *all* inputs, so one NaN or Inf input makes every\n"
    "output of its example NaN (0 * NaN), unlike the convolution methods.")
conv_transpose_dilated = _formulation(
    "dilated", "Transposed convolution as a stride-1 conv of the zero-dilated input with "
    "the flipped kernel.")
conv_transpose_phase = _formulation(
    "phase", "Transposed convolution by phase (sub-pixel) decomposition: stride-1 convs of "
    "the undilated input\nwith the s**n sub-kernels, interleaved; no multiply by an "
    "inserted zero.")
