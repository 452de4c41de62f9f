"""What the operand-swap guard costs (jax_tconv._operand_swap, docs/xla-bugs.md).

Configurations the guard leaves alone (every layer of the benchmark suite): each guarded
formulation is lowered next to its unguarded self (the function under the guard,
``f.__wrapped__``), forward and both gradients, and the two programs' text compared;
then both are timed round-robin in one run (one call each per round, medians), so a noisy
neighbour slows both alike. Configurations the guard changes cannot be timed against
the unguarded form, which aborts; their cost is the extra output computed and cropped.

    python benchmarks/operand_swap_overhead.py --rounds 15
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench import SUITE
from jax_tconv._dilated import dilated, transpose_by_dilation
from jax_tconv._operand_swap import extended, extension
from jax_tconv._phase import fast_kernel_gradient, transpose_by_phase
from jax_tconv._spec import transpose_spec
from jax_tconv._vjp import adjoint_derivatives, transpose_by_vjp

FORMULATIONS = {
    "vjp": transpose_by_vjp,
    "dilated": transpose_by_dilation,
    "phase": transpose_by_phase,
    "auto (dilated forward)": adjoint_derivatives(dilated, kernel_gradient=fast_kernel_gradient),
}


def _spec(x, w, **kw):
    return transpose_spec("bench", x, w, output_padding=kw.pop("op", 0), output_shape=None,
                          dilation=1, groups=1, dimension_numbers=None, precision=None,
                          preferred_element_type=None, **kw)


def _step(f, spec):
    """Forward and both gradients, one jitted program."""
    return jax.jit(jax.value_and_grad(lambda x, w, c: jnp.sum(f(x, w, spec) * c),
                                      argnums=(0, 1)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__}, {jax.default_backend()}, {a.rounds} rounds, medians")
    print("| layer | formulation | same program | unguarded ms | guarded ms | ratio |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for layer in SUITE:
        x = jnp.asarray(rng.standard_normal((layer.batch, *layer.i, layer.c_in)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((*layer.k, layer.c_out, layer.c_in)) * 0.05,
                        jnp.float32)
        spec = _spec(x, w, strides=layer.s, padding=layer.p, op=layer.op)
        assert extension(spec) is None, layer
        c = jnp.asarray(rng.standard_normal(spec.out_shape), jnp.float32)
        for name, f in FORMULATIONS.items():
            calls = [_step(f.__wrapped__, spec), _step(f, spec)]
            texts = [call.lower(x, w, c).as_text() for call in calls]
            times = [[], []]
            for call in calls:
                jax.block_until_ready(call(x, w, c))
            for _ in range(a.rounds):
                for j, call in enumerate(calls):
                    t0 = time.perf_counter()
                    jax.block_until_ready(call(x, w, c))
                    times[j].append(time.perf_counter() - t0)
            old, new = (statistics.median(t) * 1e3 for t in times)
            ratios.append(new / old)
            print(f"| {layer.name} | {name} | {'yes' if texts[0] == texts[1] else 'NO'} | "
                  f"{old:.2f} | {new:.2f} | {new / old:.2f} |", flush=True)
    print(f"\ngeometric mean of the ratios: {math.exp(statistics.mean(map(math.log, ratios))):.3f}"
          f" over {len(ratios)} pairs")

    # Guarded configurations: the extra output rows, computed and cropped.
    print("\n| guarded configuration | extension (below, above) per dim | output | computed |")
    print("|---|---|---|---|")
    for i, k, s, pad in [((6, 3), (2, 4), (2, 4), ((1, 1), (3, 1))),        # issue 15
                         ((16, 3), (2, 4), (2, 4), ((1, 1), (3, 1))),
                         ((3, 3), (3, 4), (3, 2), ((2, 2), (3, 3)))]:
        x = jax.ShapeDtypeStruct((8, *i, 64), jnp.float32)
        w = jax.ShapeDtypeStruct((*k, 32, 64), jnp.float32)
        spec = _spec(x, w, strides=s, padding=pad, op=(1, 0) if k == (3, 4) else 0)
        ext = extension(spec)
        print(f"| i={i} k={k} s={s} padding={pad} | {ext} | {spec.out_spatial} | "
              f"{extended(spec, ext).out_spatial} |")


if __name__ == "__main__":
    main()
