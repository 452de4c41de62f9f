"""Compile and run every method, forward and both gradients (and second order), on random
valid configurations, printing each before it runs. XLA aborts the whole process on a
CHECK failure, so this runs in a subprocess (tests/test_xla_crash.py); run it by hand for
a longer hunt:

    python tests/crash_hunt.py --count 2000 --seed 1
"""

import argparse
import json
import random
import sys

import jax
import jax.numpy as jnp

import jax_tconv

# The configuration that aborts lax.conv_transpose's kernel gradient on XLA:CPU (jax 0.10.2).
KNOWN = dict(i=[3, 3], k=[3, 4], s=[3, 2], d=[1, 1], pad=[2, 3], op=[1, 0], g=1, cin=2,
             cout=2, n=2)


def configs(seed, count):
    r = random.Random(seed)
    yield KNOWN
    while count > 0:
        nd = r.choice([1, 2, 2, 3])
        k = [r.randint(1, 5) for _ in range(nd)]
        s = [r.randint(1, 4) for _ in range(nd)]
        d = [r.choice([1, 1, 2, 3]) for _ in range(nd)]
        i = [r.randint(1, 5) for _ in range(nd)]
        pad = [[r.randint(0, d[j] * (k[j] - 1)), r.randint(0, d[j] * (k[j] - 1))]
               for j in range(nd)]
        op = [r.randint(0, max(s[j], d[j]) - 1) for j in range(nd)]
        g = r.choice([1, 1, 2])
        c = dict(i=i, k=k, s=s, d=d, pad=pad, op=op, g=g, cin=g * r.randint(1, 2),
                 cout=g * r.randint(1, 2), n=r.randint(1, 2))
        if all((ij - 1) * sj - lo - hi + dj * (kj - 1) + 1 >= 1
               for ij, kj, sj, dj, (lo, hi) in zip(i, k, s, d, pad)):
            count -= 1
            yield c


def run(c, method, second_order):
    x = jnp.ones((c["n"], *c["i"], c["cin"]))
    w = jnp.ones((*c["k"], c["cout"] // c["g"], c["cin"]))
    kw = dict(strides=c["s"], padding=[tuple(p) if isinstance(p, list) else p for p in c["pad"]],
              output_padding=c["op"], dilation=c["d"], groups=c["g"], method=method)

    def loss(x, w):
        return jnp.sum(jax_tconv.conv_transpose(x, w, **kw) ** 2)

    jax.block_until_ready(jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w))
    if second_order:
        def grad_norm(x, w):
            return sum(jnp.sum(a ** 2) for a in jax.grad(loss, argnums=(0, 1))(x, w))
        jax.block_until_ready(jax.jit(jax.grad(grad_norm, argnums=(0, 1)))(x, w))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default=",".join(jax_tconv.METHODS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=30)
    p.add_argument("--second-order-every", type=int, default=5)
    a = p.parse_args()
    for n, c in enumerate(configs(a.seed, a.count)):
        for method in a.methods.split(","):
            print(method, json.dumps(c), flush=True)
            run(c, method, second_order=n % a.second_order_every == 0)
    print("DONE", flush=True)


if __name__ == "__main__":
    sys.exit(main())
