"""No valid call may abort the process (issue 15; docs/xla-bugs.md).

XLA:CPU's convolution operand swap turns some convolutions into invalid ones and
aborts the process. jax_tconv._operand_swap states the condition (`swap_aborts`) and
routes every formulation around it. Here: the condition against XLA itself, in
subprocesses (an abort fails a test instead of killing pytest); the guard's effect on
programs, in this process; and a slice of the hunt, tests/crash_hunt.py, in a subprocess.
"""

from __future__ import annotations

import functools
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from jax.extend import core as jex_core

import jax_tconv
from jax_tconv import _operand_swap as swap
from jax_tconv._suite import SUITE
from jax_tconv._spec import transpose_spec

HUNT = pathlib.Path(__file__).with_name("crash_hunt.py")
METHODS = jax_tconv.METHODS + ("auto",)

# Issue 15: x (1, 6, 3, 1), w (2, 4, 2, 1), strides (2, 4), padding ((1, 1), (3, 1)).
ISSUE = dict(strides=(2, 4), padding=((1, 1), (3, 1)))
# The pullback JAX emits for it: a group dimension (size 2, stride 1, base dilation 2, no
# padding) on an input of size 6, and a window of 4 over an input of 3, which starts the swap.
PULLBACK = swap.Window(size=(6, 3), k=(2, 4), strides=(1, 1), padding=((0, 0), (0, 2)),
                       lhs_dilation=(2, 4), rhs_dilation=(1, 1))


def _spec(x_shape, w_shape, **kw):
    kw = dict(dict(output_padding=0, output_shape=None, dilation=1, groups=1,
                   dimension_numbers=None, precision=None, preferred_element_type=None), **kw)
    return transpose_spec("test", jax.ShapeDtypeStruct(x_shape, jnp.float32),
                          jax.ShapeDtypeStruct(w_shape, jnp.float32), **kw)


def _hunt(*args):
    proc = subprocess.run([sys.executable, str(HUNT), *args], capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("SUMMARY ")]
    summary = json.loads(lines[-1][len("SUMMARY "):]) if lines else {}
    return proc, summary


# ----------------------------------------------------------------------------
# The condition.


def test_swap_aborts_on_the_issue_pullback():
    assert swap.swap_aborts(PULLBACK)
    assert swap.transpose_lhs(swap.forward_window(_spec((1, 6, 3, 1), (2, 4, 2, 1), **ISSUE))) \
        == PULLBACK


@pytest.mark.parametrize("change", [
    dict(size=(2, 3)),                       # the group dimension's input matches its window
    dict(padding=((0, 1), (0, 2))),          # padded: not a group dimension
    dict(rhs_dilation=(2, 1)),               # window-dilated: not a group dimension
    dict(size=(6, 4)),                       # window product 4 == input product 4: no swap
    dict(groups="feature"),                  # feature-grouped convolutions are never swapped
])
def test_swap_aborts_needs_every_part_of_the_condition(change):
    import dataclasses

    assert not swap.swap_aborts(dataclasses.replace(PULLBACK, **change))


def test_batch_groups_are_swapped_like_ungrouped():
    import dataclasses

    assert swap.swap_aborts(dataclasses.replace(PULLBACK, groups="batch"))


def test_windows_predicted_exactly(tmp_path):
    """swap_aborts against XLA: 4 fixed windows (2 abort) and 26 drawn near its boundaries."""
    proc, summary = _hunt("--windows", "--count", "30", "--seed", "2026",
                          "--log", str(tmp_path / "windows.jsonl"))
    assert summary.get("predicted_and_aborted", 0) >= 2, proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


# ----------------------------------------------------------------------------
# The guard.


def test_the_issue_is_guarded_by_one_row():
    spec = _spec((1, 6, 3, 1), (2, 4, 2, 1), **ISSUE)
    assert swap.at_risk(spec)
    ext = swap.extension(spec)
    assert ext == ((0, 1), (0, 0))
    assert not swap.at_risk(spec, ext)
    assert swap.extension(swap.extended(spec, ext)) is None     # idempotent


@pytest.mark.parametrize("layer", SUITE, ids=lambda layer: layer.name)
def test_benchmark_layers_are_not_at_risk(layer):
    """The common path is the old one: no benchmark layer is guarded."""
    spec = _spec((layer.batch, *layer.i, layer.c_in), (*layer.k, layer.c_out, layer.c_in),
                 strides=layer.s, padding=layer.p, output_padding=layer.op)
    assert swap.extension(spec) is None


def _convs(jaxpr, out):
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            p, dn = eqn.params, eqn.params["dimension_numbers"]
            lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
            groups = ("feature" if p["feature_group_count"] > 1 else
                      "batch" if p["batch_group_count"] > 1 else "")
            out.append(swap.Window(
                tuple(lhs[a] for a in dn.lhs_spec[2:]), tuple(rhs[a] for a in dn.rhs_spec[2:]),
                tuple(p["window_strides"]), tuple(map(tuple, p["padding"])),
                tuple(p["lhs_dilation"]), tuple(p["rhs_dilation"]), groups))
        for sub in jex_core.jaxprs_in_params(eqn.params):
            _convs(sub, out)
    return out


def _programs(f):
    def sq(a):
        return jnp.sum(a * a)

    def loss(x, w):
        return sq(f(x, w))

    def norm(x, w):
        return sum(sq(a) for a in jax.grad(loss, argnums=(0, 1))(x, w))

    return lambda x, w: (f(x, w), jax.grad(loss, argnums=(0, 1))(x, w),
                         jax.jvp(f, (x, w), (x, w))[1], jax.grad(norm, argnums=(0, 1))(x, w))


@pytest.mark.parametrize("method", METHODS)
def test_no_program_of_the_issue_holds_an_aborting_convolution(method):
    """Forward, VJP, JVP and second order, as traced: no convolution makes XLA abort, and
    every one with a base dilation belongs to the family of the extended forward conv Ĉ.
    (XLA folds "dilated"'s explicit zero insertion into a base dilation only later; the
    subprocess tests cover that.)"""
    x, w = jnp.ones((1, 6, 3, 1)), jnp.ones((2, 4, 2, 1))
    spec = _spec(x.shape, w.shape, **ISSUE)
    family = swap.family(swap.forward_window(spec, swap.extension(spec)))
    f = functools.partial(jax_tconv.conv_transpose, method=method, **ISSUE)
    convs = _convs(jax.make_jaxpr(_programs(f))(x, w).jaxpr, [])
    assert [c for c in convs if swap.swap_aborts(c)] == []
    dilated = [c for c in convs if max(c.lhs_dilation) > 1]
    assert [c for c in dilated if c not in family] == []
    if method in ("vjp", "auto", "phase"):
        assert dilated    # the check saw the convolutions it is about


def test_unguarded_program_does_hold_it():
    """The check above can fail: the unguarded vjp formulation emits the aborting pullback."""
    from jax_tconv._vjp import transpose_by_vjp

    x, w = jnp.ones((1, 6, 3, 1)), jnp.ones((2, 4, 2, 1))
    spec = _spec(x.shape, w.shape, **ISSUE)
    convs = _convs(jax.make_jaxpr(lambda x, w: transpose_by_vjp.__wrapped__(x, w, spec))(x, w)
                   .jaxpr, [])
    assert PULLBACK in convs


def test_unaffected_programs_are_unchanged():
    """Where no convolution is at risk, the guarded program is the unguarded one, op for op."""
    from jax_tconv._dilated import transpose_by_dilation
    from jax_tconv._vjp import transpose_by_vjp

    x, w = jnp.ones((2, 8, 8, 16)), jnp.ones((4, 4, 8, 16))
    spec = _spec(x.shape, w.shape, strides=2, padding=1)
    assert swap.extension(spec) is None
    for f in (transpose_by_vjp, transpose_by_dilation):
        texts = [jax.jit(_programs(functools.partial(g, spec=spec))).lower(x, w).as_text()
                 for g in (f, f.__wrapped__)]
        assert texts[0] == texts[1]


# ----------------------------------------------------------------------------
# The hunt: every method and "auto", every pass, in a subprocess.


def test_hunt_slice(tmp_path):
    """Two fixed configurations (issue 15's and the earlier kernel-gradient abort, both
    guarded, their values checked against the reference and "matmul") and four drawn."""
    proc, summary = _hunt("--count", "6", "--seed", "2026", "--no-split",
                          "--log", str(tmp_path / "hunt.jsonl"))
    assert proc.returncode == 0 and summary.get("aborts") == 0 and summary.get("errors") == 0, (
        proc.stdout + proc.stderr[-3000:])
    assert summary.get("wrong") == 0, proc.stdout
    assert summary["guarded"] >= 2
