"""``python -m jax_tconv``: the self-check (default), or ``bench``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jax_tconv",
        description="Without a command: check every transposed-convolution method against the "
                    "NumPy reference on the current JAX backend (forward and gradients); exits 1 "
                    "on a mismatch. 'bench': time every method against lax, Flax, PyTorch and "
                    "the forward-conv anchor.")
    parser.add_argument("--method", action="append", default=None,
                        help="check only this method (repeatable); default: all and 'auto'")
    sub = parser.add_subparsers(dest="command")
    bench = sub.add_parser("bench", help="benchmark suite (see README: Performance)")
    bench.add_argument("--layers", default="",
                       help="comma-separated substrings of layer names to run (default: all)")
    bench.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    bench.add_argument("--rounds", type=int, default=15, help="timed rounds per contestant")
    bench.add_argument("--out", default="bench_out", help="folder for bench.md and bench.png")
    bench.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    bench.add_argument("--list", action="store_true", help="list the suite and exit")
    _add_tune_command(sub)
    args = parser.parse_args(argv)

    if args.command == "bench":
        import jax.numpy as jnp

        from jax_tconv import _bench

        layers = [layer for layer in _bench.SUITE
                  if not args.layers or any(p in layer.name for p in args.layers.split(","))]
        if args.list or not layers:
            print("\n".join(layer.name for layer in _bench.SUITE))
            return 0 if layers else 2
        _bench.run(layers, rounds=args.rounds, dtype=getattr(jnp, args.dtype),
                   with_torch=not args.no_torch, out_dir=args.out)
        return 0

    if args.command == "tune":
        import jax.numpy as jnp

        from jax_tconv import _bench, _tune

        layers = [layer for layer in _bench.SUITE
                  if not args.layers or any(p in layer.name for p in args.layers.split(","))]
        if args.list or not layers:
            print("\n".join(layer.name for layer in _bench.SUITE))
            return 0 if layers else 2
        _tune.tune_layers(layers, dtype=getattr(jnp, args.dtype), rounds=args.rounds,
                          refresh=args.refresh)
        return 0

    from jax_tconv import _selfcheck

    return 0 if _selfcheck.run(tuple(args.method) if args.method else None) else 1


def _add_tune_command(sub) -> None:
    """``python -m jax_tconv tune``: fill the cache of method='tune' (docs/tune.md)."""
    tune = sub.add_parser(
        "tune", help="measure what method='tune' picks for the suite's layers and store it in "
                     "the tune cache (docs/tune.md)",
        description="Time every strategy of method='tune' (forward+backward and forward) on "
                    "each layer of the benchmark suite, or the layers chosen with --layers, "
                    "store the fastest in the tune cache ($JAX_TCONV_TUNE_CACHE, else "
                    "$XDG_CACHE_HOME/jax_tconv/tune.json, else ~/.cache/jax_tconv/tune.json) "
                    "and print a table: layer, choice, each candidate's fwd+bwd milliseconds, "
                    "and the seconds the measurement took. Cached layers are not measured "
                    "again unless --refresh is given.")
    tune.add_argument("--layers", default="",
                      help="comma-separated substrings of layer names to tune (see --list); "
                           "default: the whole suite")
    tune.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                      help="dtype of inputs and kernels (part of the cache key)")
    tune.add_argument("--rounds", type=int, default=None,
                      help="timed calls per candidate, the median is kept (default: 5)")
    tune.add_argument("--refresh", action="store_true",
                      help="measure again even where the cache has an answer")
    tune.add_argument("--list", action="store_true", help="list the suite's layers and exit")


if __name__ == "__main__":
    sys.exit(main())
