"""The strategies: every formulation by name, "auto"'s decision, and running one.

Data flows one way: the public functions (`jax_tconv._api`) and the tuner
(`jax_tconv._tune`) build a `Spec` and hand it here; nothing here imports
either of them. A *strategy* is a name: a formulation (`FORMULATIONS`),
``"auto"``, or a formulation run through the channels-last form of the
layout (``"phase+cl"``: x, w and y transposed around it), the candidates
``method="tune"`` times.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jax_tconv import _calibrate
from jax_tconv._dilated import dilated, transpose_by_dilation
from jax_tconv._layout import channels_last
from jax_tconv._matmul import transpose_by_matmul
from jax_tconv._padding_mode import with_padding_mode
from jax_tconv._phase import fast_kernel_gradient, transpose_by_phase
from jax_tconv._phase import plan as phase_plan
from jax_tconv._products import transpose_by_products
from jax_tconv._spec import Spec
from jax_tconv._vjp import adjoint_derivatives, transpose_by_vjp

__all__ = ["AUTO_FORWARDS", "FORMULATIONS", "PLATFORMS", "AutoChoice", "auto", "auto_strategies",
           "run", "same_program"]

# Each formulation is jitted with the spec static: eager calls reuse one
# compiled program per configuration, and inside a user's jit it inlines.
# Padding modes other than 'zeros' (`_padding_mode`): "matmul" builds the mode
# into its matrix; the others run on the uncropped output and then apply the
# padding's adjoint, "vjp" by `jax.vjp` of the padding, the rest by the fold.
FORMULATIONS = {
    "vjp": jax.jit(with_padding_mode(transpose_by_vjp, adjoint="vjp"), static_argnums=2),
    "matmul": jax.jit(transpose_by_matmul, static_argnums=2),
    "dilated": jax.jit(with_padding_mode(transpose_by_dilation), static_argnums=2),
    "phase": jax.jit(with_padding_mode(transpose_by_phase), static_argnums=2),
    "products": jax.jit(with_padding_mode(transpose_by_products), static_argnums=2),
}
# "auto": the fastest forward for the configuration, differentiated like "phase".
AUTO_FORWARDS = {
    "dilated": jax.jit(with_padding_mode(adjoint_derivatives(
        dilated, kernel_gradient=fast_kernel_gradient)), static_argnums=2),
    "phase": FORMULATIONS["phase"],
    "vjp": FORMULATIONS["vjp"],
    "products": FORMULATIONS["products"],
}


class AutoChoice(NamedTuple):
    """What ``method="auto"`` runs for one configuration, and why.

    ``channels_last`` is True when "auto" runs the user's layout through its
    channels-last form (x, w and y transposed around the formulation).
    """

    method: str
    reason: str
    channels_last: bool = False


def auto(spec: Spec, backend: str | None = None) -> AutoChoice:
    """The strategy: a function of the configuration, the backend and, on CPU, the machine.

    On CPU the layout is canonicalised first (`channels_last`), so the choice,
    made on the channels-last form, is the same for every `dimension_numbers`
    permutation of one geometry. Then this machine's calibrated rates
    (`jax_tconv._calibrate`, measured once and cached) predict the
    forward+backward time of the "products" formulation and of a convolution
    formulation; "products" runs where it is predicted faster, else the
    convolution table below picks the formulation. With a padding mode
    other than 'zeros' the choice is the one for the uncropped transposed
    convolution that the formulations run before folding the border back.
    """
    if spec.padding_mode != "zeros":
        choice = auto(spec.uncropped, backend)
        return choice._replace(reason=choice.reason + f"; then the adjoint of the "
                               f"{spec.padding_mode!r} padding folds the border back in")
    backend = backend or jax.default_backend()
    if backend == "cpu" and jax.default_backend() != "cpu":
        # Lowered for CPU on an accelerator host (an export): its CPU is not measured.
        cl = channels_last(spec)
        choice = _channels_last_table(cl.spec)
        return choice._replace(reason=f"{choice.reason}; the convolution table alone: "
                               f"lowered for CPU on a {jax.default_backend()} host, whose "
                               f"CPU is not calibrated", channels_last=not cl.is_identity)
    if backend == "cpu":
        cl = channels_last(spec)
        rates = _calibrate.rates(AUTO_FORWARDS["dilated"], FORMULATIONS["products"],
                                 AUTO_FORWARDS["phase"], backend)
        products, convolution = rates.predict(cl.spec)
        if rates.products_wins(cl.spec):
            # Layout-free: it moves x's channels last itself, inside its one matrix product.
            return AutoChoice("products", f"predicted on this machine's calibrated rates "
                              f"({rates.describe()}): forward+backward {products:.3g} ms as "
                              f"matrix products against {convolution:.3g} ms as convolutions")
        choice = _channels_last_table(cl.spec)
        why = (f"convolutions predicted faster than matrix products on this machine "
               f"({convolution:.3g} against {products:.3g} ms; {rates.describe()})"
               if products >= convolution else
               f"matrix products predicted faster ({products:.3g} against {convolution:.3g} "
               f"ms) but their temporary would be {_calibrate.temporary_bytes(cl.spec):,} "
               f"bytes, over {_calibrate.MAX_TEMP_BYTES:,}")
        choice = choice._replace(reason=f"{choice.reason}; {why}")
        if cl.is_identity:
            return choice
        return AutoChoice(choice.method, choice.reason + "; run channels-last (x, w and y "
                          "transposed), since XLA:CPU runs channels-first convolutions up to "
                          "100x slower", True)
    return AutoChoice("vjp", f"on {backend}, XLA lowers the VJP to the accelerator library's "
                             f"backward-data convolution (a choice by design: no {backend} "
                             f"timing has been measured for it yet)")


def _channels_last_table(spec: Spec) -> AutoChoice:
    """XLA:CPU's table for a channels-last spec."""
    if spec.num_spatial >= 3:
        return AutoChoice("phase", "XLA:CPU runs input-dilated 3-D convolutions (behind "
                                   "'vjp' and 'dilated') about 40x slower than the phase "
                                   "decomposition's stride-1 convolutions")
    if phase_plan(spec).form == "products":
        return AutoChoice("phase", "a small input with many channels: the phase "
                                   "decomposition is one matrix product")
    return AutoChoice("dilated", "XLA:CPU folds the zero insertion into its 1-D/2-D convolution")


def same_program(name: str, spec: Spec) -> str | None:
    """The strategy whose program `name` runs too, if any ("auto" often is one)."""
    if name != "auto":
        return None
    choice = auto(spec)
    if AUTO_FORWARDS[choice.method] is not FORMULATIONS.get(choice.method):
        return None
    return choice.method + ("+cl" if choice.channels_last else "")


def run(name: str, x: jax.Array, w: jax.Array, spec: Spec) -> jax.Array:
    """Run strategy `name` ("auto", a formulation, or a formulation + "+cl") on a checked spec."""
    if name == "auto":
        return _run_auto(x, w, spec)
    return _run(name, FORMULATIONS, x, w, spec)


# The platforms "auto" decides for at lowering, by `lax.platform_dependent`'s names;
# every other platform gets the choice for "cuda" (`auto` treats all accelerators alike).
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def auto_strategies(spec: Spec) -> dict[str, str]:
    """"auto"'s strategy for each platform in `PLATFORMS` ("phase+cl", "vjp", ...)."""
    strategies = {}
    for platform in PLATFORMS:
        choice = auto(spec, platform)
        strategies[platform] = choice.method + ("+cl" if choice.channels_last else "")
    return strategies


def _run_auto(x: jax.Array, w: jax.Array, spec: Spec) -> jax.Array:
    """The choice for the platform being lowered to: one branch per distinct strategy,
    picked by `lax.platform_dependent` (at lowering; in a multi-platform export, by the
    platform the program is compiled for), so the compiled program holds only one."""
    strategies = auto_strategies(spec)
    default = strategies["cuda"]
    branches = {platform: functools.partial(_run, strategy, AUTO_FORWARDS, spec=spec)
                for platform, strategy in strategies.items() if strategy != default}
    if not branches:
        return _run(default, AUTO_FORWARDS, x, w, spec)
    return lax.platform_dependent(
        x, w, default=functools.partial(_run, default, AUTO_FORWARDS, spec=spec), **branches)


def _run(name: str, forwards, x: jax.Array, w: jax.Array, spec: Spec) -> jax.Array:
    base, _, layout = name.partition("+")
    if not layout:
        return forwards[base](x, w, spec)
    cl = channels_last(spec)
    y = forwards[base](jnp.transpose(x, cl.x_perm), jnp.transpose(w, cl.w_perm), cl.spec)
    return jnp.transpose(y, cl.y_perm)
