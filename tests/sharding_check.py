"""Every method sharded over 8 devices gives the single-device result (run by test_sharding.py).

Run as ``python tests/sharding_check.py [LAYER ...]`` (default: every layer in
`LAYERS`): it sets ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
itself (before JAX starts) when no devices are forced, so 8 virtual CPU
devices stand in for a TPU pod slice or 8 GPUs. On a 2 x 4 mesh
``("data", "model")`` whose axes are Explicit, Auto, or mixed (``"data"``
Explicit, ``"model"`` Auto), for every placement in `PLACEMENTS` (batch, either
channel axis of the kernel, batch + channel, space):

- every method, "auto" and "tune" (each in one jit-compiled program per mesh
  and placement): the forward value and both gradients equal one device's,
  and a second-order gradient too, for each method on one placement per mesh
  (rotating, so every placement and method is covered);
- the output's sharding is what JAX gives the equivalent lax computation
  (`lax.conv_transpose`, or, where lax's convolution asks for
  ``out_sharding``, `jnp.einsum` over the channels: docs/sharding.md), and each
  gradient has its primal's sharding under explicit axes;

plus a ``jax.shard_map`` version of the data-, model- and data+model-parallel
per-device computation on the Auto and the Explicit mesh, inputs resharded
inside jit with `jax.sharding.reshard`, an eager call, x split into one row per
device (where XLA's partitioner errs and jax_tconv routes around it), circular
padding (halos that wrap around), and the layouts JAX refuses under explicit
axes (the error names the fix). Prints one line per check and exits 1 on any
failure.
"""

from __future__ import annotations

import os
import sys
import tempfile

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# "tune" measures into a cache of its own, one round per candidate.
os.environ["JAX_TCONV_TUNE_CACHE"] = os.path.join(tempfile.mkdtemp(), "tune.json")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jax_tconv  # noqa: E402
from jax_tconv import _tune  # noqa: E402

_tune.ROUNDS = 1

METHODS = jax_tconv.METHODS + ("auto", "tune")
# Two layers, channels-last (NHWC, HWIO: O = C_in, I = C_out // groups).
LAYERS = {
    "k3_s2_p1_op1_d2": dict(strides=2, padding=1, output_padding=1, dilation=(1, 2)),
    "k4_s2_p1": dict(strides=2, padding=1),
}
KERNELS = {"k3_s2_p1_op1_d2": (3, 3), "k4_s2_p1": (4, 4)}
N, H, W, C_IN, C_OUT = 8, 8, 4, 4, 8
E, A = AxisType.Explicit, AxisType.Auto
KINDS = {"explicit": (E, E), "auto": (A, A), "mixed": (E, A)}
# x (N, H, W, C_in) and w (kH, kW, C_out, C_in) on the 2 x 4 mesh ("data", "model"); the
# output's sharding under explicit axes (docs/sharding.md's rule), y (N, oH, oW, C_out).
PLACEMENTS = {
    "batch": (P(("data", "model")), P(), P(("data", "model"))),
    "out-channel": (P(), P(None, None, "model"), P(None, None, None, "model")),
    "in-channel": (P(), P(None, None, None, "model"), P()),
    "batch+channel": (P("data"), P(None, None, "model"), P("data", None, None, "model")),
    "batch+space": (P("data", "model"), P(), P("data", "model")),
    # x the same on the 4 devices of "model": XLA's partitioner multiplies kernel gradients
    # by 4 here (docs/sharding.md); under explicit axes jax_tconv routes around it, under
    # automatic ones it cannot see the layout (tests/test_sharding.py's xfail).
    "space": (P(None, "data"), P(), P(None, "data")),
}
SKIP = {("auto", "space")}
# Under automatic axes the partitioner may leave y of these unsplit where lax's convolution
# splits it (the kernel's channels, space): values equal, placement its choice ("tune" runs
# whichever strategy it measured fastest).
AUTO_MAY_GATHER = {"phase", "matmul", "products", "tune"}


def arrays(name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, C_IN)).astype(np.float32)
    w = rng.standard_normal((*KERNELS[name], C_OUT, C_IN)).astype(np.float32) / 4
    return x, w


def transpose(name, method, **options):
    return lambda x, w: jax_tconv.conv_transpose(x, w, method=method, **LAYERS[name], **options)


def lax_transpose(name):
    """The same layer as one `lax.conv_transpose` (padding of the dilated input)."""
    kw = LAYERS[name]
    s, p, op = kw["strides"], kw["padding"], kw.get("output_padding", 0)
    d = kw.get("dilation", (1, 1))
    pads = [(dj * (k - 1) - p, dj * (k - 1) - p + op) for k, dj in zip(KERNELS[name], d)]
    return lambda x, w: lax.conv_transpose(x, w, (s, s), pads, rhs_dilation=d,
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                           transpose_kernel=True)


def einsum_channels(x, w):
    """The channel contraction alone, for the sharding jnp.einsum gives it."""
    return jnp.einsum("nhwi,oi->nhwo", x, w[0, 0])


def program(name, methods, second, **options):
    """One function computing, per method: y, (dx, dw) and for `second` methods d/d(x, w) |dw|²;
    `options` go to every conv_transpose call (e.g. padding_mode)."""
    def run(x, w):
        out = {}
        for method in methods:
            f = transpose(name, method, **options)
            grads = jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1))
            out[method] = (f(x, w), *grads(x, w))
            if method in second:
                out[method] += jax.grad(lambda x, w: jnp.sum(grads(x, w)[1] ** 2),
                                        argnums=(0, 1))(x, w)
        return out
    return run


def close(a, b, tol=1e-5):
    """Equal up to float32 summation order (sharding splits the sums over batch and space)."""
    a, b = np.asarray(a), np.asarray(b)
    err = float(np.abs(a - b).max()) / max(1.0, float(np.abs(b).max()))
    if err > tol:
        print(f"    relative error {err:.2e}")
    return a.shape == b.shape and err <= tol


def spec_of(a) -> P:
    """`a`'s PartitionSpec over the explicit axes (its type), trailing Nones dropped."""
    spec = list(jax.typeof(a).sharding.spec)
    while spec and spec[-1] is None:
        spec.pop()
    return P(*spec)


def only(spec: P, axes) -> P:
    """`spec` with the mesh axes outside `axes` left out."""
    entries = [tuple(n for n in e if n in axes) for e in spec_of_entries(spec)]
    return P(*[None if not e else e for e in entries])


def same_spec(a: P, b: P) -> bool:
    return spec_of_entries(a) == spec_of_entries(b)


def spec_of_entries(spec: P) -> tuple:
    entries = [() if e is None else (e,) if isinstance(e, str) else tuple(e) for e in spec]
    while entries and not entries[-1]:
        entries.pop()
    return tuple(entries)


def report(ok, what):
    print(f"{'ok' if ok else 'MISMATCH'} {what}", flush=True)
    return not ok


def reference_sharding(name, kind, mesh, xs, ws):
    """The sharding JAX gives the equivalent lax computation, on arrays placed like ours."""
    f = lax_transpose(name)
    if kind != "explicit":
        return jax.jit(f)(xs, ws).sharding
    try:
        return jax.eval_shape(f, xs, ws).sharding
    except Exception as e:  # lax's convolution asks for out_sharding: einsum's rule
        if "out_sharding" not in str(e):
            raise
        return jax.eval_shape(einsum_channels, xs, ws).sharding


def check_grid(name, x, w, want):
    failures = 0
    for k_index, (kind, types) in enumerate(KINDS.items()):
        mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=types)
        with jax.set_mesh(mesh):
            placements = [p for p in PLACEMENTS if (kind, p) not in SKIP]
            for p_index, placement in enumerate(placements):
                x_spec, w_spec, y_spec = PLACEMENTS[placement]
                # Second order for each method on one placement or two per mesh, rotating.
                second = {m for i, m in enumerate(METHODS)
                          if (i + p_index + 2 * k_index) % len(placements) == 0}
                xs = jax.device_put(x, NamedSharding(mesh, x_spec))
                ws = jax.device_put(w, NamedSharding(mesh, w_spec))
                got = jax.jit(program(name, METHODS, second))(xs, ws)
                ref_sharding = reference_sharding(name, kind, mesh, xs, ws)
                for method in METHODS:
                    values = got[method]
                    ok = all(close(a, b, 1e-5 if i < 3 else 1e-4)
                             for i, (a, b) in enumerate(zip(values, want[method])))
                    y, dx, dw = values[:3]
                    # Under explicit axes: the rule, JAX's own answer, and each gradient
                    # sharded like its primal (the types' specs hold the explicit axes only).
                    explicit = [n for n, t in zip(mesh.axis_names, types) if t == E]
                    ok = ok and same_spec(spec_of(y), only(y_spec, explicit))
                    ok = ok and same_spec(spec_of(dx), only(x_spec, explicit))
                    ok = ok and same_spec(spec_of(dw), only(w_spec, explicit))
                    if kind == "explicit":
                        ok = ok and same_spec(ref_sharding.spec, y_spec)
                    note = ""
                    if kind != "explicit" and not y.sharding.is_equivalent_to(ref_sharding,
                                                                               y.ndim):
                        # Automatic axes: XLA's partitioner places y. "vjp", "dilated" and
                        # "auto" end as lax's convolution; "phase" and "matmul" reshape it.
                        ok = ok and method in AUTO_MAY_GATHER
                        note = f" (y {y.sharding.spec}, lax {ref_sharding.spec})"
                    if not ok:
                        print(f"    y {y.sharding.spec}, lax {ref_sharding.spec}, "
                              f"dx {dx.sharding.spec}, dw {dw.sharding.spec}")
                    order = " +2nd" if method in second else ""
                    failures += report(ok, f"jit {kind} {placement} {name} {method}{order}{note}")
    return failures


def check_shard_map(name, x, w, want):
    """Each device runs jax_tconv on its own block; the gradient of an input replicated over
    an axis is summed over it (JAX's rule for shard_map)."""
    failures = 0
    maps = {
        "batch": ((P("data"), P()), P("data")),
        "model": ((P(), P(None, None, "model")), P(None, None, None, "model")),
        "batch+model": ((P("data"), P(None, None, "model")), P("data", None, None, "model")),
    }
    for kind in ("auto", "explicit"):
        mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=KINDS[kind])
        for what, (in_specs, out_spec) in maps.items():
            def run(x, w, in_specs=in_specs, out_spec=out_spec):
                out = {}
                for method in METHODS:
                    f = transpose(name, method)
                    grads = jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1))
                    y = jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_spec)(x, w)
                    g = jax.shard_map(grads, mesh=mesh, in_specs=in_specs,
                                      out_specs=in_specs)(x, w)
                    out[method] = (y, *g)
                return out
            placed = [jax.device_put(a, NamedSharding(mesh, spec))
                      for a, spec in zip((x, w), in_specs)]
            got = jax.jit(run)(*placed)
            for method in METHODS:
                ok = all(close(a, b) for a, b in zip(got[method], want[method][:3]))
                failures += report(ok, f"shard_map {kind} {what} {name} {method}")
    return failures


def check_reshard_and_eager(name, x, w, want):
    """Explicit axes: x placed inside jit by jax.sharding.reshard, and an eager call."""
    failures = 0
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=KINDS["explicit"])
    with jax.set_mesh(mesh):
        for method in ("vjp", "phase"):
            f = transpose(name, method)

            def resharded(x, w, f=f):
                x = jax.sharding.reshard(x, P("data"))
                w = jax.sharding.reshard(w, P(None, None, "model"))
                return f(x, w), jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))),
                                         argnums=(0, 1))(x, w)
            y, (dx, dw) = jax.jit(resharded)(x, w)
            ok = close(y, want[method][0]) and close(dx, want[method][1])
            ok = ok and close(dw, want[method][2])
            ok = ok and same_spec(spec_of(y), P("data", None, None, "model"))
            failures += report(ok, f"reshard explicit {name} {method}")
        xs = jax.device_put(x, P("data"))
        y = transpose(name, "phase")(xs, jnp.asarray(w))          # eager, no jit
        ok = close(y, want["phase"][0]) and same_spec(spec_of(y), P("data"))
        failures += report(ok, f"eager explicit {name} phase")
    return failures


def check_thin_split(name):
    """Explicit axes, one row of x per device: Shardy's halo exchange would get the gradients
    wrong (docs/sharding.md), and jax_tconv routes around it."""
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=KINDS["explicit"])
    x, w = arrays(name)
    x = x[:, :4]                       # 4 rows over the 4 devices of "model"
    return _batch_and_space_split(mesh, name, x, w, "one-row-per-device")


def check_padding_mode(name):
    """Explicit axes, batch and space split, PyTorch's circular padding (wrapping halos)."""
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=KINDS["explicit"])
    x, w = arrays(name)
    return _batch_and_space_split(mesh, name, x, w, "batch+space circular",
                                  padding_mode="circular")


def _batch_and_space_split(mesh, name, x, w, what, **options):
    """Every method with x split ('data', 'model') under `mesh` against one device: values,
    both gradients, and y split like x."""
    run = program(name, METHODS, set(), **options)
    want = jax.jit(run)(x, w)
    with jax.set_mesh(mesh):
        got = jax.jit(run)(jax.device_put(x, P("data", "model")), w)
    failures = 0
    for method in METHODS:
        ok = all(close(a, b) for a, b in zip(got[method], want[method]))
        ok = ok and same_spec(spec_of(got[method][0]), P("data", "model"))
        failures += report(ok, f"jit explicit {what} {name} {method}")
    return failures


def check_refusals():
    """Layouts JAX refuses under explicit axes: jax_tconv says so and names the fix."""
    failures = 0
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=KINDS["explicit"])
    x = np.ones((N, H, W, C_IN), np.float32)
    w = np.ones((3, 3, C_OUT, C_IN), np.float32)
    cases = {
        # 8 rows -> 15 (k3 s2 p1): 4 devices cannot split 15 rows evenly; lax refuses too.
        "space, uneven output": (P(None, "model"), P(), dict(strides=2, padding=1),
                                 "not a multiple of 4", "not divisible by mesh axes"),
        # The summed channels split on both sides: a partial sum per device.
        "summed channels on both sides": (P(None, None, None, "model"),
                                          P(None, None, None, "model"), dict(strides=2),
                                          "ambiguous", "Contracting dimensions are sharded"),
        # One mesh axis on both the batch and the output channels.
        "one axis twice": (P("model"), P(None, None, "model"), dict(strides=2),
                           "in two dimensions", "illegally sharded"),
    }
    with jax.set_mesh(mesh):
        for what, (x_spec, w_spec, kw, ours, theirs) in cases.items():
            xs, ws = jax.device_put(x, x_spec), jax.device_put(w, w_spec)
            try:
                jax.jit(lambda x, w, kw=kw: jax_tconv.conv_transpose(x, w, **kw))(xs, ws)
                message = ""
            except ValueError as e:
                message = str(e)
            ok = ours in message and "reshard" in message and theirs in message
            if not ok:
                print(f"    {message!r}")
            failures += report(ok, f"refused explicit {what}")
    return failures


def main(names=tuple(LAYERS)):
    assert jax.device_count() == 8, jax.devices()
    failures = 0
    for name in names:
        x, w = arrays(name)
        # One device: every method's values (and second-order gradients) for comparison.
        want = jax.jit(program(name, METHODS, set(METHODS)))(x, w)
        failures += check_grid(name, x, w, want)
        failures += check_shard_map(name, x, w, want)
        failures += check_reshard_and_eager(name, x, w, want)
        failures += check_thin_split(name)
        failures += check_padding_mode(name)
    failures += check_refusals()
    print(f"{failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or tuple(LAYERS)))
