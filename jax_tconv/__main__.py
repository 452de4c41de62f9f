"""``python -m jax_tconv``: the self-check (default), or ``tune``.

The comparison against PyTorch, lax and Flax is not part of the package: it is
``benchmarks/bench.py`` in the repository (docs/performance.md).
"""

from __future__ import annotations

import argparse
import sys
import textwrap

MOVED = ("python -m jax_tconv bench: the comparison benchmark (against PyTorch, lax and Flax) "
         "is no longer part of the installed package. From a clone of the repository run "
         "'python benchmarks/bench.py' (same options; --help lists them); docs/performance.md "
         "has the measured results.")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                     argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help, except where there is none to show (a flag, None);
    descriptions and epilogs keep their line breaks (written wrapped with ``wrap``)."""

    def _get_help_string(self, action):
        if action.default is None or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def wrap(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=78)


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    parser = argparse.ArgumentParser(
        prog="python -m jax_tconv", formatter_class=HelpFormatter,
        description=wrap(
            "Without a command: check every transposed-convolution method against the NumPy "
            "reference on the current JAX backend (forward and gradients), with compile and "
            "run times; exits 1 on a mismatch. 'tune': fill method='tune''s cache for the "
            "layer suite ('python -m jax_tconv tune --help'). The comparison against PyTorch, "
            "lax and Flax is benchmarks/bench.py in the repository."))
    parser.add_argument("--method", action="append", default=None,
                        help="check only this method (repeatable); default: every method "
                             "and 'auto'")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("bench", help="moved: the comparison benchmark is benchmarks/bench.py in "
                                 "the repository")
    _add_tune_command(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # whatever its options were
        print(MOVED, file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    if args.command == "tune":
        import jax.numpy as jnp

        from jax_tconv import _tune
        from jax_tconv._suite import SUITE

        layers = [layer for layer in SUITE
                  if not args.layers or any(p in layer.name for p in args.layers.split(","))]
        if args.list or not layers:
            print("\n".join(layer.name for layer in SUITE))
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
