"""Hunt for XLA aborts and wrong values: every method, forward and derivatives, on random
valid configurations.

An XLA CHECK failure aborts the whole process, so the hunt runs as a supervisor and a
worker. The worker draws configuration number `n` from (seed, n) alone, appends it to
the log as one JSON line (flushed to the OS) *before* compiling it, and runs it. When the
worker dies, the supervisor reports the case the log ends on, reruns that case one
(method, pass) pair at a time in fresh processes to name the pairs that abort, and
restarts the worker after it.

Each configuration: rank 1-3; input 1-5 and kernel 1-5 (1-3 in 3-D); strides 1-4,
dilation 1-3; padding anywhere in 0..d*(k-1) on each side (sometimes 'SAME' or
'VALID'); output_padding up to max(s, d) - 1 or the same size as output_shape; plain,
grouped or depthwise channels; batch 0-2; a random permutation of each of the three
layouts; float32, float64, bfloat16, float16 or complex64. Every method and "auto"
runs in one jitted program: the forward pass, the VJP in both arguments, the JVP in both,
and the gradient of the squared gradient norm (second order). "matmul" is left out where
its matrix would pass 1 MiB. Then every case's values are checked, in float32 (complex64
for complex cases): the forward pass and the VJP of every method against the NumPy
reference (which knows nothing of layouts: it runs on the default layout's arrays), and
the JVP and second order against "matmul"'s (no convolution at all; "vjp"'s where the
matrix is too large). A wrong value is logged as `wrong`, apart from aborts and errors.

    python tests/crash_hunt.py --count 5000 --seed 1 --log /tmp/hunt.jsonl
    python tests/crash_hunt.py --replay /tmp/hunt.jsonl --index 123      # in this process
    python tests/crash_hunt.py --windows --count 1000 --seed 1           # the predicate
    python tests/crash_hunt.py --at-risk --count 300 --seed 31           # guarded cases only

``--windows`` checks jax_tconv._operand_swap.swap_aborts against XLA itself: it compiles
single lax.conv_general_dilated calls drawn around the predicate's boundaries and
counts the aborts predicted and not, and the predicted aborts that did not happen.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import resource
import subprocess
import sys
import time
import zlib

METHODS = ("vjp", "matmul", "dilated", "phase", "products", "auto")
PASSES = ("forward", "vjp", "jvp", "second")
DTYPES = ("float32",) * 4 + ("float64", "bfloat16", "float16", "complex64")
MATMUL_MAX_BYTES = 1 << 20
# LLVM-level only: XLA's HLO passes, its algebraic simplifier among them, run as usual,
# and compiling a configuration takes about a third less time. --xla-defaults drops them.
FAST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"

# First cases of every hunt: issue 15's call (the pullback's group dimension), the
# configuration that aborted the vjp kernel gradient (a group dimension in its transpose),
# and issue 18's two wrong results of "phase" (a convolution with a negative low padding,
# which XLA:CPU misreads: garbage in NHWC, a deterministic error in a permuted layout).
FIXED = [
    dict(i=[6, 3], k=[2, 4], s=[2, 4], d=[1, 1], padding=[[1, 1], [3, 1]], op=[0, 0],
         output_shape=None, groups=1, cin=1, cout=2, batch=1,
         specs=["NHWC", "HWIO", "NHWC"], dtype="float32"),
    dict(i=[3, 3], k=[3, 4], s=[3, 2], d=[1, 1], padding=[[2, 2], [3, 3]], op=[1, 0],
         output_shape=None, groups=1, cin=2, cout=2, batch=1,
         specs=["NHWC", "HWIO", "NHWC"], dtype="float32"),
    dict(i=[3, 6], k=[5, 5], s=[3, 3], d=[1, 1], padding=[[4, 1], [3, 3]], op=[2, 1],
         output_shape=None, groups=2, cin=6, cout=4, batch=1,
         specs=["NHWC", "HWIO", "NHWC"], dtype="float32"),
    dict(i=[5, 4], k=[3, 2], s=[1, 4], d=[1, 2], padding=[[2, 2], [1, 0]], op=[0, 2],
         output_shape=None, groups=2, cin=6, cout=4, batch=2,
         specs=["CNWH", "IOHW", "HCWN"], dtype="float32"),
]


# ----------------------------------------------------------------------------
# Drawing configurations (pure Python: the supervisor does not import JAX).


def draw(seed: int, n: int, at_risk: bool = False) -> dict:
    """Configuration number `n` of the hunt with this seed: a function of (seed, n) alone.

    With `at_risk`, only configurations the operand-swap guard applies to (drawn the
    same way, the others rejected; this imports JAX).
    """
    if n < len(FIXED):
        return dict(FIXED[n])
    r = random.Random(f"jax_tconv-hunt:{seed}:{n}")
    while True:
        case = _draw(r)
        if case is not None and (not at_risk or _extension(case) is not None):
            return case


def _draw(r: random.Random) -> dict | None:
    nd = r.choice([1, 2, 2, 3, 3])
    top = 3 if nd == 3 else 5
    i = [r.randint(1, top) for _ in range(nd)]
    k = [r.randint(1, top) for _ in range(nd)]
    s = [r.randint(1, 4) for _ in range(nd)]
    d = [r.choice([1, 1, 2, 3]) for _ in range(nd)]
    full = [(ij - 1) * sj + dj * (kj - 1) + 1 for ij, kj, sj, dj in zip(i, k, s, d)]
    form = r.random()
    output_shape = None
    if form < 0.08:                       # the adjoint of the forward SAME
        padding, op = "SAME", [0] * nd
        if r.random() < 0.5:
            output_shape = [r.randint((ij - 1) * sj + 1, ij * sj) for ij, sj in zip(i, s)]
    else:
        if form < 0.12:
            pads = [[0, 0]] * nd
            padding = "VALID"
        else:
            pads = [[r.randint(0, dj * (kj - 1)), r.randint(0, dj * (kj - 1))]
                    for kj, dj in zip(k, d)]
            padding = pads
        op = [r.randint(0, max(sj, dj) - 1) for sj, dj in zip(s, d)]
        sizes = [f - lo - hi + o for f, (lo, hi), o in zip(full, pads, op)]
        if min(sizes) < 1:
            return None
        if r.random() < 0.3:
            output_shape, op = sizes, [0] * nd
    kind = r.choice(["plain", "plain", "grouped", "depthwise"])
    if kind == "plain":
        groups, cin, cout = 1, r.randint(1, 2), r.randint(1, 2)
    elif kind == "grouped":
        groups = r.randint(2, 3)
        cin, cout = groups * r.randint(1, 2), groups * r.randint(1, 2)
    else:
        groups = cin = r.randint(1, 3)
        cout = cin * r.randint(1, 2)
    spatial = "".join(r.sample("DHW"[3 - nd:], nd))
    io, kernel = list("NC" + spatial), list("OI" + spatial)
    r.shuffle(io)
    r.shuffle(kernel)              # its spatial letters' order is lax's spatial order
    out = list("NC" + spatial)
    r.shuffle(out)
    return dict(i=i, k=k, s=s, d=d, padding=padding, op=op, output_shape=output_shape,
                groups=groups, cin=cin, cout=cout, batch=r.choice([1, 2, 2, 1, 2, 0]),
                specs=["".join(io), "".join(kernel), "".join(out)], dtype=r.choice(DTYPES))


def letters(case) -> str:
    return "".join(c for c in case["specs"][1] if c not in "OI")


# ----------------------------------------------------------------------------
# Running one configuration (the worker).


def _arrays(case, dtype=None):
    import numpy as np

    dtype = dtype or case["dtype"]
    rng = np.random.default_rng(zlib.crc32(json.dumps(case, sort_keys=True).encode()))
    lhs, rhs, out = case["specs"]
    sp = letters(case)
    xc = rng.standard_normal((case["batch"], case["cin"], *case["i"]))
    wc = rng.standard_normal((case["cin"], case["cout"] // case["groups"], *case["k"]))
    x = np.transpose(xc, ["NC".__add__(sp).index(c) for c in out])
    w = np.transpose(wc, ["OI".__add__(sp).index(c) for c in rhs])
    return x.astype(dtype), w.astype(dtype), xc, wc


def _kwargs(case):
    padding = case["padding"]
    if not isinstance(padding, str):
        padding = [tuple(p) for p in padding]
    kw = dict(strides=case["s"], padding=padding, dilation=case["d"], groups=case["groups"],
              dimension_numbers=tuple(case["specs"]))
    if case["output_shape"] is not None:
        kw["output_shape"] = case["output_shape"]
    else:
        kw["output_padding"] = case["op"]
    return kw


def _matmul_bytes(case) -> int:
    import numpy as np

    i, k, s, d = (np.array(case[a]) for a in "iksd")
    o = (i - 1) * s + d * (k - 1) + 1 + np.array(case["op"])   # an upper bound
    return int(math.prod(i) * case["cin"] * math.prod(o) * case["cout"] * 16)


def run_case(case, methods=METHODS, passes=PASSES, check=True):
    """Compile and run `case` for `methods` x `passes` in one jitted program; with `check`,
    compare its values (`_check_values`). Returns the operand-swap extension or None."""
    import contextlib

    import jax
    import jax.numpy as jnp
    import numpy as np

    import jax_tconv

    if "matmul" in methods and _matmul_bytes(case) > MATMUL_MAX_BYTES:
        methods = tuple(m for m in methods if m != "matmul")
    x, w, _, _ = _arrays(case)
    kw = _kwargs(case)

    def sq(a):
        return jnp.sum(jnp.real(a * jnp.conj(a)))

    def program(x, w, g):
        outs = {}
        for method in methods:
            f = functools.partial(jax_tconv.conv_transpose, method=method, **kw)
            out = outs[method] = {}

            def loss(x, w, f=f):
                return sq(f(x, w))

            if "forward" in passes:
                out["y"] = f(x, w)
            if "vjp" in passes:
                out["dx"], out["dw"] = jax.vjp(f, x, w)[1](g)
            if "jvp" in passes:
                out["jvp"] = jax.jvp(f, (x, w), (x, w))[1]
            if "second" in passes:
                def norm(x, w, loss=loss):
                    return sum(sq(a) for a in jax.grad(loss, argnums=(0, 1))(x, w))
                out["d2x"], out["d2w"] = jax.grad(norm, argnums=(0, 1))(x, w)
        return outs

    x64 = jax.enable_x64(True) if case["dtype"] == "float64" else contextlib.nullcontext()
    with x64:
        y_shape = jax.eval_shape(functools.partial(jax_tconv.conv_transpose, **kw), x, w).shape
        rng = np.random.default_rng(1)
        g = rng.standard_normal(y_shape).astype(x.dtype)
        outs = jax.block_until_ready(jax.jit(program)(x, w, g))
    if check:
        _check_values(case, outs, g)
    return _extension(case)


def _spec(case):
    import jax
    import jax.numpy as jnp

    from jax_tconv._spec import transpose_spec

    sp, (_, rhs, out) = letters(case), case["specs"]
    x_sizes = dict(zip("NC" + sp, (case["batch"], case["cin"], *case["i"])))
    w_sizes = dict(zip("OI" + sp, (case["cin"], case["cout"] // case["groups"], *case["k"])))
    kw = _kwargs(case)
    return transpose_spec(
        "hunt", jax.ShapeDtypeStruct(tuple(x_sizes[c] for c in out), jnp.float32),
        jax.ShapeDtypeStruct(tuple(w_sizes[c] for c in rhs), jnp.float32),
        output_padding=kw.get("output_padding", 0), output_shape=kw.get("output_shape"),
        precision=None, preferred_element_type=None,
        **{a: kw[a] for a in ("strides", "padding", "dilation", "groups", "dimension_numbers")})


def _extension(case):
    from jax_tconv._operand_swap import extension

    return extension(_spec(case))


class WrongValue(AssertionError):
    """A method's value differs from the reference: the hunt logs it as wrong."""


#: Largest difference from the reference, relative to the reference's largest magnitude
#: (at least 1), by the dtype the case runs in.
TOLERANCE = {"float64": 1e-9, "float32": 1e-4, "complex64": 1e-4}
LOW_PRECISION_TOLERANCE = 5e-2      # bfloat16, float16


def _check_values(case, outs, g):
    """Each method's forward value and VJP against the NumPy reference (float64, the
    default layout); its JVP and second order against "matmul"'s (no convolution at all),
    else "vjp"'s. Raises `WrongValue` naming the first difference."""
    import numpy as np

    from jax_tconv.reference import conv_transpose_reference, conv_transpose_reference_vjp

    spec = _spec(case)
    x, w, _, _ = _arrays(case)
    lhs, rhs, out = case["specs"]
    sp = letters(case)
    wide = np.complex128 if case["dtype"] == "complex64" else np.float64
    to = lambda a, frm, spec_: np.transpose(a, [frm.index(c) for c in spec_])  # noqa: E731
    xc = to(np.asarray(x).astype(wide), out, "NC" + sp)
    wc = to(np.asarray(w).astype(wide), rhs, "OI" + sp)
    gc = to(np.asarray(g).astype(wide), lhs, "NC" + sp)
    geometry = dict(strides=spec.strides, padding=spec.padding,
                    output_padding=spec.output_padding, dilation=spec.dilation,
                    groups=spec.groups)
    dxc, dwc = conv_transpose_reference_vjp(xc, wc, gc, **geometry)
    expected = {"y": to(conv_transpose_reference(xc, wc, **geometry), "NC" + sp, lhs),
                "dx": to(dxc, "NC" + sp, out), "dw": to(dwc, "OI" + sp, rhs)}
    tol = TOLERANCE.get(case["dtype"], LOW_PRECISION_TOLERANCE)

    low_precision = case["dtype"] not in TOLERANCE

    def close(method, name, got, want, tol, *, may_overflow=False):
        got, want = np.asarray(got).astype(wide), np.asarray(want).astype(wide)
        if got.shape != want.shape:
            raise WrongValue(f"{method} {name} has shape {got.shape}, not {want.shape}")
        # A 16-bit JVP or second order may overflow (a sum of squares of gradients):
        # where the anchor or the method overflowed, the two are not comparable.
        # Anywhere else a non-finite value where the reference is finite is wrong.
        both = np.isfinite(got) & np.isfinite(want)
        if not (may_overflow and low_precision) and not np.array_equal(both,
                                                                       np.isfinite(want)):
            raise WrongValue(f"{method} {name} is not finite where the reference is")
        scale = max(1.0, float(np.abs(np.where(both, want, 0)).max(initial=0)))
        err = float(np.abs(np.where(both, got - want, 0)).max(initial=0))
        if not err <= tol * scale:
            raise WrongValue(f"{method} {name} differs from the reference by {err:.3g} "
                             f"(scale {scale:.3g}, tolerance {tol:g})")

    anchor = outs.get("matmul", outs.get("vjp"))
    for method, values in outs.items():
        for name, got in values.items():
            if name in expected:
                close(method, name, got, expected[name], tol)
            elif anchor is not None:    # JVP and second order: larger values, more rounding
                close(method, name, got, anchor[name], 10 * tol, may_overflow=True)


# ----------------------------------------------------------------------------
# --windows: single lax convolutions around the predicate's boundaries.


# The pullback of issue 15's call as JAX emits it (a group dimension of size 2 on an input
# of 6: aborts), with an input of 2 there (no abort), batch groups (abort: XLA:CPU ungroups
# them first) and feature groups (never swapped).
_ISSUE = dict(k=[2, 4], n=[6, 3], s=[1, 1], dl=[2, 4], pad=[[0, 0], [0, 2]], dr=[1, 1])
FIXED_WINDOWS = [dict(_ISSUE, groups="none"), dict(_ISSUE, n=[2, 3], groups="none"),
                 dict(_ISSUE, groups="batch"), dict(_ISSUE, groups="feature")]


def draw_window(seed: int, n: int) -> dict:
    """Window number `n` (the fixed ones first), a function of (seed, n) alone."""
    if n < len(FIXED_WINDOWS):
        return dict(FIXED_WINDOWS[n])
    r = random.Random(f"jax_tconv-windows:{seed}:{n}")
    while True:
        nd = r.choice([1, 2, 2, 3])
        dims = []
        for _ in range(nd):
            if r.random() < 0.6:                       # near a group dimension
                kj = r.randint(2, 4)
                dims.append(dict(k=kj, n=r.randint(1, 6),
                                 s=max(1, kj - 1 + r.choice([0, 0, -1, 1])),
                                 dl=kj + r.choice([0, 0, 0, -1, 1]),
                                 pad=r.choice([[0, 0]] * 4 + [[0, 1], [1, 0]]),
                                 dr=r.choice([1, 1, 1, 2])))
            else:
                kj = r.randint(1, 5)
                dims.append(dict(k=kj, n=r.randint(1, 6), s=r.randint(1, 3), dl=r.randint(1, 3),
                                 pad=[r.randint(0, 2), r.randint(0, 2)], dr=r.randint(1, 2)))
        c = {a: [dj[a] for dj in dims] for a in ("k", "n", "s", "dl", "pad", "dr")}
        c["groups"] = r.choice(["none"] * 4 + ["feature", "batch"])
        ok = all((dj["dl"] * (dj["n"] - 1) + 1 + sum(dj["pad"]) - dj["dr"] * (dj["k"] - 1) - 1) >= 0
                 and dj["dl"] >= 1 for dj in dims)
        if ok:
            return c


def window_of(c):
    from jax_tconv._operand_swap import Window

    return Window(tuple(c["n"]), tuple(c["k"]), tuple(c["s"]), tuple(map(tuple, c["pad"])),
                  tuple(c["dl"]), tuple(c["dr"]), "" if c["groups"] == "none" else c["groups"])


def run_window(c):
    import jax
    import jax.numpy as jnp
    from jax import lax

    nd = len(c["k"])
    sp = "DHW"[3 - nd:]
    fg = 2 if c["groups"] == "feature" else 1
    bg = 2 if c["groups"] == "batch" else 1
    x = jnp.ones((2 * bg, *c["n"], 2 * fg))
    w = jnp.ones((*c["k"], 2, 2 * fg * bg))
    f = jax.jit(lambda x, w: lax.conv_general_dilated(
        x, w, c["s"], [tuple(p) for p in c["pad"]], lhs_dilation=c["dl"],
        rhs_dilation=c["dr"], dimension_numbers=(f"N{sp}C", f"{sp}IO", f"N{sp}C"),
        feature_group_count=fg, batch_group_count=bg))
    jax.block_until_ready(f(x, w))


# ----------------------------------------------------------------------------
# Worker and supervisor.


def worker(a):
    log = open(a.log, "a")
    for n in range(a.start, a.count):
        case = draw_window(a.seed, n) if a.windows else draw(a.seed, n, a.at_risk)
        log.write(json.dumps({"n": n, "seed": a.seed, "windows": a.windows,
                              "at_risk": a.at_risk, "passes": a.passes,
                              "t": round(time.time(), 1), "case": case})
                  + "\n")
        log.flush()                 # in the OS's hands: an abort cannot lose it
        try:
            guarded = run_window(case) if a.windows else run_case(
                case, passes=tuple(a.passes.split(",")), check=not a.no_check)
        except WrongValue as e:     # a silent wrong result: the worst outcome
            log.write(json.dumps({"n": n, "wrong": str(e)[:2000]}) + "\n")
            log.flush()
            continue
        except Exception as e:      # a Python error is a failure too, but not an abort
            log.write(json.dumps({"n": n, "error": f"{type(e).__name__}: {e}"[:2000]}) + "\n")
            log.flush()
            continue
        if guarded is not None:
            log.write(json.dumps({"n": n, "guarded": guarded}) + "\n")
            log.flush()
    log.write(json.dumps({"done": a.count}) + "\n")
    log.close()


def _records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _env(a):
    env = dict(os.environ)
    if not a.xla_defaults:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_XLA_FLAGS}".strip()
    return env


def _split(case, env):
    """Rerun an aborting case one (method, pass) pair per process; return the ones that abort."""
    aborting = []
    for method in METHODS:
        for p in PASSES:
            proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case),
                                   "--methods", method, "--passes", p, "--no-check"],
                                  capture_output=True, text=True, env=env)
            if proc.returncode < 0 or proc.returncode == 134:
                aborting.append(f"{method}/{p}")
    return aborting


ABORTED = (-6, 134)     # SIGABRT, as a signal or as the shell's exit status


def supervise(a):
    if a.log is None:
        a.log = f"crash_hunt-{'windows-' if a.windows else ''}{a.seed}-{os.getpid()}.jsonl"
    start = 0
    if a.resume and os.path.exists(a.log):
        # Go on from the last case started: it may have been cut short, so it runs again.
        started = [r["n"] for r in _records(a.log) if "case" in r]
        start = started[-1] if started else 0
    else:
        open(a.log, "w").close()
    t0, retries = time.perf_counter(), 0
    cmd = [sys.executable, __file__, "--worker", "--seed", str(a.seed), "--count", str(a.count),
           "--log", a.log] + (["--windows"] if a.windows else []) + (
           ["--at-risk"] if a.at_risk else []) + (["--no-check"] if a.no_check else []) + [
           "--passes", a.passes]
    while True:
        proc = subprocess.run(cmd + ["--start", str(start)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env=_env(a))
        records = _records(a.log)
        if records and "done" in records[-1]:
            break
        last = next(r for r in reversed(records) if "case" in r)
        if proc.returncode not in ABORTED and retries < 2:
            # Killed from outside (or out of memory): not XLA's doing; run the case again.
            retries += 1
            print(f"worker ended with rc={proc.returncode} at n={last['n']}; rerunning it",
                  flush=True)
            start = last["n"]
            continue
        retries = 0
        where = [] if a.windows or a.no_split else _split(last["case"], _env(a))
        check = [line for line in proc.stderr.splitlines() if "Check failed" in line][:1]
        with open(a.log, "a") as f:
            f.write(json.dumps({"n": last["n"], "abort": proc.returncode, "pairs": where,
                                "check": check[0][:500] if check else ""}) + "\n")
        print(f"ABORT n={last['n']} rc={proc.returncode} {' '.join(where)}\n  "
              f"{json.dumps(last['case'])}\n  {check[0][:300] if check else ''}", flush=True)
        start = last["n"] + 1
    records = _records(a.log)
    cases = {r["n"]: r["case"] for r in records if "case" in r}
    aborts = [dict(r, case=cases[r["n"]]) for r in records if "abort" in r]
    errors = list({r["n"]: r for r in records if "error" in r}.values())   # a rerun counts once
    wrong = list({r["n"]: r for r in records if "wrong" in r}.values())
    guarded = {r["n"] for r in records if "guarded" in r}
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)     # the workers' (and splits') CPU
    summary = dict(configs=a.count, wrong=len(wrong), aborts=len(aborts), errors=len(errors),
                   guarded=len(guarded), seconds=round(seconds, 1),
                   cpu_seconds=round(usage.ru_utime + usage.ru_stime, 1), seed=a.seed,
                   at_risk=a.at_risk, xla_flags=_env(a).get("XLA_FLAGS", ""))
    if a.windows:
        aborted = {x["n"] for x in aborts}
        from jax_tconv._operand_swap import swap_aborts  # the supervisor imports JAX last

        predicted = {n for n, c in cases.items() if swap_aborts(window_of(c))}
        summary.update(predicted=len(predicted), predicted_and_aborted=len(predicted & aborted),
                       aborted_not_predicted=sorted(aborted - predicted),
                       predicted_not_aborted=sorted(predicted - aborted))
    for e in errors:
        print(f"ERROR n={e['n']}: {e['error']}", flush=True)
    for e in wrong:
        print(f"WRONG n={e['n']}: {e['wrong']}\n  {json.dumps(cases[e['n']])}", flush=True)
    with open(a.log, "a") as f:
        f.write(json.dumps({"summary": summary, "aborts": aborts}) + "\n")
    print("SUMMARY " + json.dumps(summary), flush=True)
    bad = aborts or errors or wrong
    if a.windows:
        bad = summary["aborted_not_predicted"] or summary["predicted_not_aborted"] or errors
    return 1 if bad else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=30, help="configurations (fixed ones included)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log", help="JSON-lines record of every case (default: a new file here)")
    p.add_argument("--windows", action="store_true", help="check swap_aborts against XLA")
    p.add_argument("--at-risk", action="store_true",
                   help="draw only configurations the operand-swap guard applies to")
    p.add_argument("--no-split", action="store_true", help="do not attribute aborts to pairs")
    p.add_argument("--resume", action="store_true",
                   help="go on with an existing --log from its last case instead of starting over")
    p.add_argument("--xla-defaults", action="store_true",
                   help=f"run the workers without {FAST_XLA_FLAGS}")
    p.add_argument("--replay", help="a hunt log: rerun --index's case in this process")
    p.add_argument("--index", type=int)
    p.add_argument("--case", help="one case as JSON, run in this process")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--no-check", action="store_true",
                   help="compile and run only, no value checks")
    p.add_argument("--passes", default=",".join(PASSES),
                   help="which of forward, vjp, jvp, second every case runs (default: all); "
                        "without second a case takes about 40%% less time")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker(a)
    if a.replay or a.case:
        if a.case:
            case, windows = json.loads(a.case), False
        else:
            rec = next(r for r in _records(a.replay) if r.get("n") == a.index and "case" in r)
            case, windows = rec["case"], rec["windows"]
        print(json.dumps(case), flush=True)
        if windows:
            run_window(case)
        else:
            run_case(case, tuple(a.methods.split(",")), tuple(a.passes.split(",")),
                     check=not a.no_check)
        print("OK", flush=True)
        return 0
    return supervise(a)


if __name__ == "__main__":
    sys.exit(main())
