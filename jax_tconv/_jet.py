"""Taylor mode: JAX's own `jet`, with one upstream bug routed around for the call.

``jax.experimental.jet.jet`` ignores custom derivative rules and evaluates a
``custom_jvp`` / ``custom_vjp`` function's primal body instead, which is right
for Taylor series. But it evaluates that body after JAX's dispatch has
removed the Taylor trace, so the first operation inside meets a Taylor
tracer with no trace to take it: ``UnexpectedTracerError`` (jax 0.10),
``AttributeError: 'NoneType' object has no attribute 'process_primitive'``
(jax 0.12). Any custom-derivative function shows it (``jax.nn.relu`` too:
jax-ml/jax#30352; the fix, jax-ml/jax#40747, is not released). Every
formulation here except "matmul" differentiates through a ``custom_jvp``
(`jax_tconv._vjp.adjoint_derivatives`), so none survives plain `jet`.

JAX's `jet` also has no rule for ``cond``, which `lax.platform_dependent`
stages out: "auto" picks its formulation per platform at lowering that way
(`jax_tconv._strategy`), so under a `jit` it reaches `jet` as a ``cond`` on
the platform index.

`jet` below is JAX's `jet` with the upstream fix applied while it runs (the
primal body is evaluated with the Taylor trace current) and, where JAX has
none, a ``cond`` rule: each branch's Taylor series, under the same index.
Where the installed JAX no longer has the bug (checked once, on a two-line
custom_jvp function), the fix is not applied.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax import lax
from jax.experimental import jet as jax_jet
from jax.extend.core import jaxpr_as_fun

__all__ = ["jet"]

_LOCK = threading.RLock()


def jet(fun: Callable[..., Any], primals: Sequence[Any], series: Sequence[Sequence[Any]],
        **kwargs: Any) -> tuple[Any, Any]:
    """``jax.experimental.jet.jet``, working through custom derivative rules.

    Same arguments and result as JAX's: ``fun``'s primal output and the
    output's Taylor coefficients, for inputs ``x(t) = x + Σ_k series[k] t^(k+1)/(k+1)!``
    (coefficients are derivatives, as in JAX). Use it in place of JAX's `jet`
    on any function that calls this library (or ``jax.nn.relu``, or any other
    ``custom_jvp`` function): JAX's own raises there (jax-ml/jax#30352).

    Example:
      >>> import jax.numpy as jnp, jax_tconv
      >>> x, w = jnp.ones((1, 2, 1)), jnp.ones((3, 1, 1))
      >>> f = lambda x, w: jax_tconv.conv_transpose(x, w, strides=2)
      >>> y, (d1, d2, d3) = jax_tconv.jet(f, (x, w), ((x, x, 0 * x), (w, 0 * w, 0 * w)))
      >>> y[0, :, 0]     # T(x, w): one value to three taps, stride 2
      Array([1., 1., 2., 1., 1.], dtype=float32)
      >>> d2[0, :, 0].round(4)    # T(x(t), w(t)) = (1 + t + t²/2)(1 + t) T(x, w): d²/dt² = 3 T(x, w)
      Array([3., 3., 6., 3., 3.], dtype=float32)
    """
    with _custom_rules_traced():
        return jax_jet.jet(fun, primals, series, **kwargs)


@contextlib.contextmanager
def _custom_rules_traced():
    """While it is open, `jet` evaluates custom-derivative bodies under its own trace
    and has a rule for ``cond``."""
    with _LOCK:
        added = lax.cond_p not in jax_jet.jet_rules
        if added:
            jax_jet.jet_rules[lax.cond_p] = _cond_rule
        try:
            with _custom_calls_fixed():
                yield
        finally:
            if added:
                del jax_jet.jet_rules[lax.cond_p]


def _cond_rule(primals_in, series_in, *, branches, **params):
    """Taylor mode of ``cond``: every branch replaced by its `jet`, the index unchanged."""
    index, operands, series = primals_in[0], list(primals_in[1:]), [
        list(s) for s in series_in[1:]]

    def jetted(branch):
        # Inside a rule the terms are Taylor coefficients (scaled by 1/k!), not derivatives.
        return jax.make_jaxpr(
            lambda o, s: jax_jet.jet(jaxpr_as_fun(branch), o, s, factorial_scaled=False),
            return_shape=True)(operands, series)

    traced = [jetted(b) for b in branches]
    flat_in = jax.tree_util.tree_leaves((operands, series))
    out = lax.cond_p.bind(index, *flat_in, branches=tuple(j for j, _ in traced), **params)
    primals_out, series_out = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(traced[0][1]), out)
    return primals_out, series_out


@contextlib.contextmanager
def _custom_calls_fixed():
    """While it is open, `jet` evaluates custom-derivative bodies under its own trace."""
    if not _upstream_bug():
        yield
        return
    from jax.extend.core import set_current_trace

    trace = jax_jet.JetTrace
    saved = trace.process_custom_jvp_call, trace.process_custom_vjp_call

    def custom_jvp_call(self, primitive, fun, jvp, tracers, /, **params):
        with set_current_trace(self):
            return fun.call_wrapped(*tracers)

    def custom_vjp_call(self, primitive, fun, fwd, bwd, tracers, /, **params):
        with set_current_trace(self):
            return fun.call_wrapped(*tracers)

    setattr(trace, "process_custom_jvp_call", custom_jvp_call)
    setattr(trace, "process_custom_vjp_call", custom_vjp_call)
    try:
        yield
    finally:
        setattr(trace, "process_custom_jvp_call", saved[0])
        setattr(trace, "process_custom_vjp_call", saved[1])


@functools.cache
def _upstream_bug() -> bool:
    """Whether JAX's `jet` still fails on a custom_jvp function (jax-ml/jax#30352)."""
    @jax.custom_jvp
    def double(x):
        return 2 * x

    double.defjvp(lambda primals, tangents: (double(*primals), 2 * tangents[0]))
    try:
        jax_jet.jet(double, (1.0,), ((1.0,),))
    except Exception:   # UnexpectedTracerError (jax 0.10), AttributeError (0.12)
        return True
    return False
