"""``python -m jax_tconv``: every method against the NumPy reference on this backend."""

from __future__ import annotations

import importlib.metadata
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_tconv import _api
from jax_tconv.reference import conv_transpose_reference, conv_transpose_reference_vjp

# name, (N, C_in, *i), kernel (C_in, C_out // groups, *k) [PyTorch layout], arguments
CONFIGS = [
    ("1-D k4 s2 p1", (2, 3, 8), (3, 2, 4), dict(strides=2, padding=1)),
    ("1-D k16 s8 audio", (1, 2, 6), (2, 1, 16), dict(strides=8, padding=4)),
    ("2-D k4 s2 p1 DCGAN", (2, 4, 5, 5), (4, 3, 4, 4), dict(strides=2, padding=1)),
    ("2-D k3 s2 p1 op1", (2, 3, 4, 3), (3, 2, 3, 3), dict(strides=2, padding=1, output_padding=1)),
    ("2-D groups=2", (2, 4, 4, 4), (4, 3, 3, 3), dict(strides=2, padding=(1, 0), groups=2)),
    ("2-D depthwise d2", (1, 3, 4, 4), (3, 1, 3, 3), dict(strides=1, dilation=2, groups=3)),
    ("2-D SAME s3", (1, 2, 3, 4), (2, 2, 5, 5), dict(strides=3, padding="SAME")),
    ("3-D k2 s2", (1, 2, 3, 3, 2), (2, 2, 2, 2, 2), dict(strides=2)),
    ("3-D k3 s2 p1 op1", (1, 2, 2, 3, 2), (2, 2, 3, 3, 3), dict(strides=2, padding=1,
                                                                output_padding=(1, 0, 1))),
    # padding modes: the adjoint of a conv whose padding holds values of its input
    ("1-D reflect p2", (2, 3, 6), (3, 2, 3), dict(strides=2, padding=2, padding_mode="reflect")),
    ("2-D circular", (2, 4, 5, 5), (4, 3, 4, 4), dict(strides=2, padding=1,
                                                      padding_mode="circular")),
    ("2-D replicate g2", (1, 4, 4, 3), (4, 1, 3, 2), dict(strides=(2, 1), padding=((2, 1), (0, 1)),
                                                          groups=2, padding_mode="replicate")),
]
TOLERANCE = 1e-4  # max |error| / max |reference|, float32


def _reference_args(x_shape, w_shape, kw):
    """Padding pairs and output padding for the reference (SAME resolved to o = i*s)."""
    n = len(x_shape) - 2
    per = lambda v: tuple(v) if isinstance(v, tuple) else (v,) * n  # noqa: E731
    s, d, op = per(kw.get("strides", 1)), per(kw.get("dilation", 1)), per(kw.get("output_padding", 0))
    pad = kw.get("padding", 0)
    if pad == "SAME":
        pairs, op = [], []
        for i, k, sj, dj in zip(x_shape[2:], w_shape[2:], s, d):
            total = max(dj * (k - 1) + 1 - sj, 0)
            pairs.append((total // 2, total - total // 2))
            op.append(i * sj - ((i - 1) * sj - total + dj * (k - 1) + 1))
    else:
        pairs = [p if isinstance(p, tuple) else (p, p) for p in per(pad)]
    return dict(strides=s, dilation=d, padding=tuple(pairs), output_padding=tuple(op),
                groups=kw.get("groups", 1), padding_mode=kw.get("padding_mode", "zeros"))


def _rel_err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


def _median_time(f, *args, repeats=5):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def versions() -> str:
    """Python's and the installed packages' versions, as run ('absent': not installed)."""
    import jax_tconv

    parts = [f"python {platform.python_version()}", f"jax_tconv {jax_tconv.__version__}"]
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "torch"):
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} absent")
    return ", ".join(parts)


def run(methods=None, print_fn=print) -> bool:
    """Print one row per (config, method); return True when every method agrees."""
    methods = methods or _api.METHODS + ("auto",)
    rng = np.random.default_rng(0)
    ok = True
    print_fn(f"versions: {versions()}")
    print_fn(f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}); "
             f"tolerance {TOLERANCE:g} relative")
    header = f"{'config':<20} {'method':<8} {'fwd err':>9} {'grad err':>9} {'compile ms':>10} {'run ms':>8}"
    print_fn(header)
    print_fn("-" * len(header))
    for name, x_shape, w_shape, kw in CONFIGS:
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        ref_kw = _reference_args(x_shape, w_shape, kw)
        ref = conv_transpose_reference(x, w, **ref_kw)
        g = rng.standard_normal(ref.shape).astype(np.float32)
        ref_dx, ref_dw = conv_transpose_reference_vjp(x, w, g, **ref_kw)
        nd = len(x_shape) - 2
        sp = "DHW"[3 - nd:]
        dn = (f"NC{sp}", f"OI{sp}", f"NC{sp}")
        for method in methods:
            def fwd_and_grad(x, w, method=method):
                def f(x, w):
                    return _api.conv_transpose(x, w, method=method, dimension_numbers=dn, **kw)
                y, pullback = jax.vjp(f, x, w)
                return (y, *pullback(jnp.asarray(g)))

            t0 = time.perf_counter()
            compiled = jax.jit(fwd_and_grad).lower(x, w).compile()
            compile_ms = 1e3 * (time.perf_counter() - t0)
            y, dx, dw = compiled(x, w)
            fwd = _rel_err(y, ref) if y.shape == ref.shape else float("inf")
            grad = max(_rel_err(dx, ref_dx), _rel_err(dw, ref_dw))
            run_ms = 1e3 * _median_time(compiled, x, w)
            good = fwd <= TOLERANCE and grad <= TOLERANCE
            ok &= good
            print_fn(f"{name:<20} {method:<8} {fwd:9.1e} {grad:9.1e} {compile_ms:10.1f} "
                     f"{run_ms:8.3f}{'' if good else '  MISMATCH'}")
    print_fn("all methods agree with the reference" if ok else "SOME METHODS DISAGREE")
    return ok
