"""Every method sharded over 8 devices gives the single-device result (run by test_sharding.py).

Run as ``python tests/sharding_check.py [LAYER ...]`` (default: every layer in
`LAYERS`): it sets
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` itself (before JAX starts)
when no devices are forced, so 8 virtual CPU devices stand in for a TPU pod
slice or 8 GPUs. Checks, for every method and "auto", forward and both
gradients under ``jax.jit`` with ``NamedSharding`` over a ``Mesh``:

- data parallel: x sharded over the batch axis, w replicated;
- model parallel: w sharded over its output-channel axis ('I'), x replicated;
- both at once on a 2 x 4 mesh;
- spatial: x sharded over its height (XLA's partitioner exchanges the halos);

and a ``jax.shard_map`` version of the data-, model- and data+model-parallel
per-device computation, forward and gradients. Prints one line per check and
exits 1 on any mismatch.
"""

from __future__ import annotations

import os
import sys

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jax_tconv  # noqa: E402

METHODS = jax_tconv.METHODS + ("auto",)
# Two layers, channels-last (NHWC, HWIO: O = C_in, I = C_out // groups).
LAYERS = {
    "k4_s2_p1": dict(strides=2, padding=1),
    "k3_s2_p1_op1_d2": dict(strides=2, padding=1, output_padding=1, dilation=(1, 2)),
}
KERNELS = {"k4_s2_p1": (4, 4), "k3_s2_p1_op1_d2": (3, 3)}
N, H, W, C_IN, C_OUT = 8, 16, 8, 4, 16


def arrays(name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, C_IN)).astype(np.float32)
    w = rng.standard_normal((*KERNELS[name], C_OUT, C_IN)).astype(np.float32)
    return x, w


def value_and_grads(name, method):
    kwargs = LAYERS[name]

    def f(x, w):
        return jax_tconv.conv_transpose(x, w, method=method, **kwargs)

    def loss(x, w):
        return jnp.sum(jnp.sin(f(x, w)))

    return f, jax.grad(loss, argnums=(0, 1))


def close(a, b):
    """Equal up to float32 summation order (sharding splits the sums over batch and space)."""
    a, b = np.asarray(a), np.asarray(b)
    err = float(np.abs(a - b).max()) / max(1.0, float(np.abs(b).max()))
    if err > 1e-5:
        print(f"    relative error {err:.2e}")
    return a.shape == b.shape and err <= 1e-5


def main(names=tuple(LAYERS)):
    assert jax.device_count() == 8, jax.devices()
    devices = np.array(jax.devices())
    mesh = Mesh(devices, ("data",))
    mesh2 = Mesh(devices.reshape(2, 4), ("data", "model"))
    failures = 0
    for name in names:
        x, w = arrays(name)
        for method in METHODS:
            f, grads = value_and_grads(name, method)
            y_ref, (dx_ref, dw_ref) = jax.jit(f)(x, w), jax.jit(grads)(x, w)   # one device
            placements = {
                "batch": (mesh, P("data"), P()),
                "model": (mesh, P(), P(None, None, "data", None)),
                "batch+model": (mesh2, P("data"), P(None, None, "model", None)),
                "spatial": (mesh, P(None, "data"), P()),
            }
            for what, (m, x_spec, w_spec) in placements.items():
                xs = jax.device_put(x, NamedSharding(m, x_spec))
                ws = jax.device_put(w, NamedSharding(m, w_spec))
                y = jax.jit(f)(xs, ws)
                dx, dw = jax.jit(grads)(xs, ws)
                ok = close(y, y_ref) and close(dx, dx_ref) and close(dw, dw_ref)
                ok = ok and len(y.sharding.device_set) == 8
                failures += not ok
                print(f"{'ok' if ok else 'MISMATCH'} jit {what} {name} {method}", flush=True)
            # shard_map: each device runs jax_tconv on its own block; the gradient of an
            # input replicated over an axis is summed over it (JAX's rule for shard_map).
            maps = {
                "batch": (mesh, (P("data"), P()), P("data")),
                "model": (mesh, (P(), P(None, None, "data", None)), P(None, None, None, "data")),
                "batch+model": (mesh2, (P("data"), P(None, None, "model", None)),
                                P("data", None, None, "model")),
            }
            for what, (m, in_specs, out_spec) in maps.items():
                y = jax.jit(jax.shard_map(f, mesh=m, in_specs=in_specs, out_specs=out_spec))(x, w)
                dx, dw = jax.jit(jax.shard_map(grads, mesh=m, in_specs=in_specs,
                                               out_specs=in_specs))(x, w)
                ok = close(y, y_ref) and close(dx, dx_ref) and close(dw, dw_ref)
                failures += not ok
                print(f"{'ok' if ok else 'MISMATCH'} shard_map {what} {name} {method}", flush=True)
    print(f"{failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or tuple(LAYERS)))
