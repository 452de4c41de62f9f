"""The Flax layers with partitioned parameters, trained on 8 devices (run by test_sharding.py).

``python tests/layers_sharding_check.py`` sets
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` itself. On a 2 x 4 mesh
``("data", "model")`` with explicit and with automatic axes, a linen and an nnx
`ConvTranspose` get ``with_partitioning`` on ``kernel_init`` (its output
channels 'I' over ``"model"``) and ``bias_init`` (over ``"model"``), are
initialised under the mesh (linen: ``jax.jit(init, out_shardings=...)``; nnx:
``nnx.jit``), and trained for a few optax Adam steps on a batch split over
``"data"``. Checks that every parameter and every Adam moment keeps its
partitioning through training, and that losses and final parameters equal
those of the same training on one device. Prints one line per check and exits
1 on any failure.
"""

from __future__ import annotations

import os
import sys

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from jax_tconv.nn import linen as tlinen  # noqa: E402
from jax_tconv.nn import nnx as tnnx  # noqa: E402

STEPS = 3
KERNEL = (None, None, "model", None)     # (kH, kW, C_out, C_in): the output channels 'I'
BIAS = ("model",)
KINDS = {"explicit": (AxisType.Explicit,) * 2, "auto": (AxisType.Auto,) * 2}
rng = np.random.default_rng(0)
X = rng.standard_normal((8, 6, 6, 4)).astype(np.float32)
T = rng.standard_normal((8, 12, 12, 8)).astype(np.float32)


def loss_of(y, t):
    return jnp.mean((y - t) ** 2)


def close(a, b, tol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = float(np.abs(a - b).max())
    if err > tol:
        print(f"    max |difference| {err:.2e}")
    return err <= tol


def report(ok, what):
    print(f"{'ok' if ok else 'MISMATCH'} {what}", flush=True)
    return not ok


def specs_of(tree):
    """The PartitionSpec of every array leaf, trailing Nones dropped."""
    def spec(a):
        entries = list(a.sharding.spec)
        while entries and entries[-1] is None:
            entries.pop()
        return P(*entries)
    return [spec(a) for a in jax.tree.leaves(tree)]


# ----------------------------------------------------------------------------
# linen


def linen_layer():
    return tlinen.ConvTranspose(
        8, (4, 4), strides=2, padding=1,
        kernel_init=nn.with_partitioning(nn.initializers.lecun_normal(), KERNEL),
        bias_init=nn.with_partitioning(nn.initializers.normal(0.1), BIAS))


def linen_train(layer, params, x, t):
    opt = optax.adam(1e-2)

    @jax.jit
    def step(params, opt_state):
        value, grads = jax.value_and_grad(lambda p: loss_of(layer.apply(p, x), t))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    opt_state = jax.jit(opt.init)(params)
    losses = []
    for _ in range(STEPS):
        params, opt_state, value = step(params, opt_state)
        losses.append(float(value))
    return params, opt_state, losses


def check_linen(kind, mesh, reference):
    layer = linen_layer()
    key = jax.random.key(0)
    abstract = jax.eval_shape(layer.init, key, jax.ShapeDtypeStruct(X.shape, X.dtype))
    with jax.set_mesh(mesh):
        x = jax.device_put(X, NamedSharding(mesh, P("data")))
        t = jax.device_put(T, NamedSharding(mesh, P("data")))
        if kind == "auto":
            params = jax.jit(layer.init, out_shardings=nn.get_sharding(abstract, mesh))(key, x)
        else:
            # Flax's Partitioned boxes place values with with_sharding_constraint, an assert
            # under explicit axes (for every linen module): initialise with the axes made
            # automatic and give the result the boxes' shardings.
            init = jax.sharding.auto_axes(layer.init, out_sharding=nn.get_partition_spec(abstract))
            params = jax.jit(init)(key, x)
        placed = specs_of(params)
        params, opt_state, losses = linen_train(layer, params, x, t)
    want_params, want_losses = reference
    failures = report(placed == [P("model"), P(None, None, "model")],
                      f"linen {kind} init partitioned {placed}")
    kept = specs_of(params) == placed and specs_of(opt_state[0].mu) == placed
    kept = kept and specs_of(opt_state[0].nu) == placed
    failures += report(kept, f"linen {kind} training keeps every parameter's sharding")
    same = all(close(a, b, 1e-4) for a, b in zip(jax.tree.leaves(params),
                                                  jax.tree.leaves(want_params)))
    same = same and close(losses, want_losses, 1e-5)
    failures += report(same, f"linen {kind} losses and parameters equal one device's")
    return failures


def linen_reference():
    """The same training on one device."""
    layer = linen_layer()
    with jax.set_mesh(one_device()):
        params = layer.init(jax.random.key(0), X)
        params, _, losses = linen_train(layer, params, X, T)
    return params, losses


# ----------------------------------------------------------------------------
# nnx


def nnx_layer():
    return tnnx.ConvTranspose(
        4, 8, (4, 4), strides=2, padding=1, rngs=nnx.Rngs(0),
        kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), KERNEL),
        bias_init=nnx.with_partitioning(nnx.initializers.normal(0.1), BIAS))


def nnx_train(model, x, t):
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        value, grads = nnx.value_and_grad(lambda m: loss_of(m(x), t))(model)
        optimizer.update(model, grads)
        return value

    losses = [float(step(model, optimizer)) for _ in range(STEPS)]
    return optimizer, losses


def check_nnx(kind, mesh, reference):
    with jax.set_mesh(mesh):
        model = nnx.jit(nnx_layer)()
        placed = specs_of(nnx.state(model, nnx.Param))
        x = jax.device_put(X, NamedSharding(mesh, P("data")))
        t = jax.device_put(T, NamedSharding(mesh, P("data")))
        optimizer, losses = nnx_train(model, x, t)
    want_params, want_losses = reference
    failures = report(placed == [P("model"), P(None, None, "model")],
                      f"nnx {kind} init partitioned {placed}")
    # Adam's moments, in the parameters' order: mu's then nu's.
    moments = [v for path, v in nnx.state(optimizer).flat_state() if "mu" in path or "nu" in path]
    kept = specs_of(nnx.state(model, nnx.Param)) == placed
    kept = kept and len(moments) == 4 and specs_of(moments) == placed * 2
    failures += report(kept, f"nnx {kind} training keeps every parameter's sharding")
    same = all(close(a, b, 1e-4) for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param)),
                                                  jax.tree.leaves(want_params)))
    same = same and close(losses, want_losses, 1e-5)
    failures += report(same, f"nnx {kind} losses and parameters equal one device's")
    return failures


def nnx_reference():
    with jax.set_mesh(one_device()):    # nnx places partitioned variables as they are made
        model = nnx_layer()
        _, losses = nnx_train(model, X, T)
    return nnx.state(model, nnx.Param), losses


def one_device():
    return jax.make_mesh((1, 1), ("data", "model"), axis_types=KINDS["auto"],
                         devices=jax.devices()[:1])


def main():
    assert jax.device_count() == 8, jax.devices()
    references = {"linen": linen_reference(), "nnx": nnx_reference()}
    failures = 0
    for kind, types in KINDS.items():
        mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=types)
        failures += check_linen(kind, mesh, references["linen"])
        failures += check_nnx(kind, mesh, references["nnx"])
    print(f"{failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
