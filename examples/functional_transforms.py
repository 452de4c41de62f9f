"""What only a functional library allows: JAX's transforms applied to conv_transpose.

Each line checks one identity that holds because `conv_transpose` is a pure
function of arrays, and prints the largest difference it found:

1. `jax.linear_transpose` of the forward `conv` is `conv_transpose`.
2. The Jacobian of `conv_transpose` with respect to its input is
   ``conv_matrix(...).T``.
3. Per-example gradients with ``vmap(grad(loss))`` equal a Python loop of
   `grad`, and their mean is the batch gradient.
4. Per-example kernels: a hypernetwork makes one kernel per sample and
   `vmap` runs one transposed convolution per (sample, kernel) pair; it equals
   a loop and one grouped `conv_transpose` (groups = batch), gradients included.
5. `jax.jvp`: the tangent of the bilinear ``T(x, w)`` is ``T(dx, w) + T(x, dw)``.
6. A Hessian-vector product (``jvp`` of ``grad``) of a least-squares loss in the
   kernel equals ``Jᵀ J v``, built from the transposed convolution's own VJP.

Every check runs for each formulation (``--methods``), each under `jax.jit`.

    python examples/functional_transforms.py
"""

from __future__ import annotations

import functools

import _common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jax_tconv

jax.config.update("jax_default_matmul_precision", "highest")

# One geometry for every check: PyTorch's ConvTranspose2d(C_in, C_out, 3, stride=2,
# padding=1, output_padding=1), i -> 2i.
GEOMETRY = dict(strides=2, padding=1, output_padding=1)


def transposed(method):
    return functools.partial(jax_tconv.conv_transpose, method=method, **GEOMETRY)


def forward(u, w):
    """The forward conv C that conv_transpose transposes (output_padding is a size choice)."""
    return jax_tconv.conv(u, w, strides=2, padding=1)


def check_linear_transpose(method, x, w):
    t = transposed(method)
    y = t(x, w)
    c_transpose = jax.linear_transpose(lambda u: forward(u, w), jax.ShapeDtypeStruct(y.shape,
                                                                                     y.dtype))
    (by_lax,) = jax.jit(c_transpose)(x)
    return _common.max_diff(by_lax, jax.jit(t)(x, w))


def jacobian_and_matrix(method, x, w):
    """``jacfwd`` of ``conv_transpose(·, w)`` at one example, and ``conv_matrix(...).T``."""
    x1 = x[:1]
    t = transposed(method)
    out_shape = t(x1, w).shape
    jac = jax.jit(jax.jacfwd(lambda v: t(v, w)))(x1)             # (*out_shape, *x1.shape)
    jac = jac.reshape(int(np.prod(out_shape)), int(np.prod(x1.shape)))
    c = jax_tconv.conv_matrix(w, out_shape, strides=2, padding=1)   # forward: out -> x1
    return jac, c.T


def check_jacobian(method, x, w):
    return _common.max_diff(*jacobian_and_matrix(method, x, w))


def check_per_example_grads(method, x, w, target):
    t = transposed(method)

    def loss(w, x, target):                                       # one example
        return 0.5 * jnp.sum((t(x[None], w)[0] - target) ** 2)

    per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))(w, x, target)
    looped = jnp.stack([jax.grad(loss)(w, x[n], target[n]) for n in range(x.shape[0])])
    batch = jax.jit(jax.grad(lambda w: jnp.mean(jax.vmap(loss, (None, 0, 0))(w, x, target))))(w)
    return max(_common.max_diff(per_example, looped),
               _common.max_diff(per_example.mean(0), batch))


def hypernetwork(params, z, kernel_shape):
    """A two-layer MLP from a per-sample code ``z`` to one kernel ``(*k, C_out, C_in)``."""
    h = jnp.tanh(z @ params["w1"] + params["b1"])
    return (h @ params["w2"]).reshape(kernel_shape) / np.sqrt(np.prod(kernel_shape[:-2]))


def check_hypernetwork(method, x, kernel_shape, key):
    n, c_in = x.shape[0], x.shape[-1]
    k1, k2, k3 = jax.random.split(key, 3)
    params = {"w1": jax.random.normal(k1, (8, 32)) / np.sqrt(8), "b1": jnp.zeros(32),
              "w2": jax.random.normal(k2, (32, int(np.prod(kernel_shape)))) / np.sqrt(32)}
    z = jax.random.normal(k3, (n, 8))
    t = transposed(method)

    def per_sample(params, z, x):
        kernels = jax.vmap(lambda zi: hypernetwork(params, zi, kernel_shape))(z)
        return jax.vmap(lambda xi, wi: t(xi[None], wi)[0])(x, kernels)

    def grouped(params, z, x):
        # The same thing as one conv_transpose: samples side by side as channel groups.
        kernels = jax.vmap(lambda zi: hypernetwork(params, zi, kernel_shape))(z)
        w = jnp.concatenate(list(kernels), axis=-1)            # (*k, C_out, n * C_in)
        xs = jnp.moveaxis(x, 0, -2).reshape(1, *x.shape[1:-1], n * c_in)
        y = t(xs, w, groups=n)[0]                              # (*o, n * C_out)
        return jnp.moveaxis(y.reshape(*y.shape[:-1], n, -1), -2, 0)

    vmapped = jax.jit(per_sample)(params, z, x)
    looped = jnp.stack([t(x[i:i + 1], hypernetwork(params, z[i], kernel_shape))[0]
                        for i in range(n)])
    as_groups = jax.jit(grouped)(params, z, x)
    grad_v = jax.jit(jax.grad(lambda p: jnp.sum(per_sample(p, z, x) ** 2)))(params)
    grad_g = jax.jit(jax.grad(lambda p: jnp.sum(grouped(p, z, x) ** 2)))(params)
    grad_diff = max(_common.max_diff(grad_v[k], grad_g[k]) for k in params)
    return max(_common.max_diff(vmapped, looped), _common.max_diff(vmapped, as_groups),
               grad_diff)


def check_jvp(method, x, w, key):
    t = transposed(method)
    dx = jax.random.normal(key, x.shape)
    dw = jax.random.normal(jax.random.fold_in(key, 1), w.shape)
    primal, tangent = jax.jit(lambda *a: jax.jvp(t, a[:2], a[2:]))(x, w, dx, dw)
    return max(_common.max_diff(primal, t(x, w)),
               _common.max_diff(tangent, t(dx, w) + t(x, dw)))


def check_hvp(method, x, w, target, key):
    t = transposed(method)
    v = jax.random.normal(key, w.shape)

    def loss(w):
        return 0.5 * jnp.sum((t(x, w) - target) ** 2)

    hvp = jax.jit(lambda w, v: jax.jvp(jax.grad(loss), (w,), (v,))[1])(w, v)
    # T is linear in w, so the Hessian is JᵀJ with J = dT/dw: J v = T(x, v), then Jᵀ by vjp.
    _, vjp = jax.vjp(lambda w: t(x, w), w)
    (gauss_newton,) = vjp(t(x, v))
    return _common.max_diff(hvp, gauss_newton) / float(jnp.max(jnp.abs(gauss_newton)))


CHECKS = (
    ("linear_transpose(conv) == conv_transpose", "linear_transpose"),
    ("jacfwd(conv_transpose) == conv_matrix(...).T", "jacobian"),
    ("vmap(grad) == loop of grad; mean == batch grad", "per_example"),
    ("hypernetwork kernels: vmap == loop == groups=N", "hypernetwork"),
    ("jvp(T)(dx, dw) == T(dx, w) + T(x, dw)", "jvp"),
    ("HVP jvp(grad) == Jᵀ J v (relative)", "hvp"),
)


def draw(path, jac, c_t, results):
    fig, axes = plt.subplots(1, 3, figsize=(14, 5.2), width_ratios=[1, 1, 1.6])
    lim = float(np.max(np.abs(c_t)))
    for ax, m, title in ((axes[0], jac, "jax.jacfwd(conv_transpose)"),
                         (axes[1], c_t, "conv_matrix(w, ...).T")):
        ax.imshow(np.asarray(m), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto",
                  interpolation="nearest")
        ax.set_title(f"{title}\n{m.shape[0]} outputs x {m.shape[1]} inputs", fontsize=10)
        ax.set_xlabel("input element")
        ax.set_ylabel("output element")
    ax = axes[2]
    methods = list(results)
    names = [name for _, name in CHECKS]
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        values = [max(results[method][n], 1e-9) for n in names]
        ax.bar(np.arange(len(names)) + j * width, values, width, label=method)
    ax.set_yscale("log")
    ax.set_ylim(1e-9 / 2, 1e-2)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=25, ha="right")
    ax.set_ylabel("max |difference| (0 drawn at 1e-9)")
    ax.set_title("every identity, every formulation", fontsize=10)
    ax.legend(fontsize=8, ncols=len(methods))
    fig.suptitle("Transforms of conv_transpose: the Jacobian is Cᵀ, and five more identities",
                 fontsize=12)
    return _common.save_figure(fig, path)


def main(argv=None) -> dict:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=6, help="input spatial size i (output 2i)")
    p.add_argument("--batch", type=int, default=4, help="examples per batch")
    p.add_argument("--channels", type=int, nargs=2, default=(4, 3), metavar=("C_IN", "C_OUT"),
                   help="input and output channels of the transposed convolution")
    p.add_argument("--methods", nargs="+", default=["auto", *jax_tconv.METHODS],
                   choices=["auto", *jax_tconv.METHODS], help="formulations to check")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="a difference above this is reported as FAIL")
    args = _common.parse(p, argv)
    clock = _common.Clock()
    c_in, c_out = args.channels
    key = jax.random.key(args.seed)
    kx, kw, kt, kh, kj, kv = jax.random.split(key, 6)
    x = jax.random.normal(kx, (args.batch, args.size, args.size, c_in))
    w = jax.random.normal(kw, (3, 3, c_out, c_in)) / 3.0
    target = jax.random.normal(kt, (args.batch, 2 * args.size, 2 * args.size, c_out))
    run = {
        "linear_transpose": lambda m: check_linear_transpose(m, x, w),
        "jacobian": lambda m: check_jacobian(m, x, w),
        "per_example": lambda m: check_per_example_grads(m, x, w, target),
        "hypernetwork": lambda m: check_hypernetwork(m, x, w.shape, kh),
        "jvp": lambda m: check_jvp(m, x, w, kj),
        "hvp": lambda m: check_hvp(m, x, w, target, kv),
    }
    print(f"x {x.shape}, w {w.shape} (C's kernel), conv_transpose(x, w, {GEOMETRY}) -> "
          f"{jax_tconv.conv_transpose(x, w, **GEOMETRY).shape}\n")
    results: dict[str, dict[str, float]] = {}
    tasks = [(m, label, name) for m in args.methods for label, name in CHECKS]
    lines = []
    for method, label, name in _common.progress(tasks, desc="checks", enabled=args.progress,
                                                leave=False):
        d = run[name](method)
        results.setdefault(method, {})[name] = d
        lines.append(f"{method:>8s}  {label:<48s} max |diff| = {d:.1e}  "
                     f"{'ok' if d <= args.tolerance else 'FAIL'}")
    print("\n".join(lines))
    worst = max(d for r in results.values() for d in r.values())
    print(f"\n{len(tasks)} checks, largest max |diff| = {worst:.1e} "
          f"({'all within' if worst <= args.tolerance else 'ABOVE'} {args.tolerance:g})")
    paths = [_common.write_json(args.out / "functional_transforms.json",
                                {"max_abs_diff": worst, "tolerance": args.tolerance,
                                 "checks": results}),
             draw(args.out / "functional_transforms.png",
                  *jacobian_and_matrix(args.methods[0], x, w), results)]
    _common.written(paths)
    clock.done("functional_transforms")
    return results


if __name__ == "__main__":
    main()
