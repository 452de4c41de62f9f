"""``python -m jax_tconv``: the self-check (default), or ``bench``."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

BENCH_FILES = (
    ("bench.md", "headlines, auto per layer, NCHW / NHWC, geomeans, all rows"),
    ("bench.json", "every row: ms, ratios, GFLOP/s, % of peak, compile s, temp"),
    ("bench.png", "time / anchor per layer, layout, contestant (matplotlib)"),
)
MODEL_FILES = (
    ("models.md", "--models: step times, ratios, memory, compile s, agreement"),
    ("models.json", "--models: every row"),
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                     argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help, except where there is none to show (a flag, None);
    descriptions and epilogs keep their line breaks (written wrapped with ``_wrap``)."""

    def _get_help_string(self, action):
        if action.default is None or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def _wrap(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=78)


def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command line's parser and its ``bench`` subparser."""
    parser = argparse.ArgumentParser(
        prog="python -m jax_tconv", formatter_class=_HelpFormatter,
        description=_wrap(
            "Without a command: check every transposed-convolution method against the NumPy "
            "reference on the current JAX backend (forward and gradients), with compile and "
            "run times; exits 1 on a mismatch. 'bench': time every method against lax, Flax, "
            "PyTorch and the forward-conv anchor ('python -m jax_tconv bench --help')."))
    parser.add_argument("--method", action="append", default=None,
                        help="check only this method (repeatable); default: every method "
                             "and 'auto'")
    sub = parser.add_subparsers(dest="command")
    files = "\n".join(f"  OUT/{name:<12s}{what}" for name, what in BENCH_FILES + MODEL_FILES)
    bench = sub.add_parser(
        "bench", formatter_class=_HelpFormatter,
        help="time every method against lax, Flax, PyTorch and the anchor (docs/performance.md)",
        description=_wrap(
            "Time, round-robin (one call of each contestant per round), every method, 'auto', "
            "lax.conv_transpose, Flax's nn.ConvTranspose, PyTorch's conv_transpose{1,2,3}d "
            "(when torch is installed) and the anchor, the forward strided convolution whose "
            "adjoint the layer is, forward and forward+backward, on a suite of layers from "
            "DCGAN, U-Net, FCN, 1-D audio and 3-D volumes, in channels-last (NHWC) and "
            "channels-first (NCHW) layout. Flax's nn.ConvTranspose has no layout option and "
            "runs channels-last in both; PyTorch runs its native NCHW in both. Every row also "
            "gives its useful FLOP rate as a share of the machine's matmul peak, measured in "
            "the same run. With --models: a jitted training step of four small decoders "
            "(DCGAN, U-Net, 3-D V-Net, 1-D vocoder) instead, jax_tconv's 'auto' in each layout "
            "against lax, Flax and PyTorch, after checking that all give the same loss and "
            "gradients. Prints the median times and ratios, then writes the files below."),
        epilog=f"files written to --out:\n{files}\n\nMeasured results: docs/performance.md.")
    bench.add_argument("--layers", default=None,
                       help="comma-separated substrings of layer (with --models: model) names "
                            "to run (see --list); default: the whole suite")
    bench.add_argument("--layout", default="both", choices=["nhwc", "nchw", "both"],
                       help="the layout of jax_tconv's, lax's and the anchor's arrays: "
                            "channels-last (NWC/NHWC/NDHWC, kernel (*k, C_out, C_in)), "
                            "channels-first (NCW/NCHW/NCDHW, PyTorch's kernel (C_in, C_out, *k)), "
                            "or both; with --models, jax_tconv's only (lax and Flax run "
                            "channels-last there, PyTorch channels-first)")
    bench.add_argument("--models", action="store_true",
                       help="time a training step of whole models (DCGAN generator, U-Net "
                            "decoder, 3-D V-Net decoder, 1-D vocoder; float32) instead of "
                            "single layers")
    bench.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                       help="dtype of inputs, kernels and results")
    bench.add_argument("--rounds", type=int, default=15,
                       help="timed rounds per contestant; the median is reported")
    bench.add_argument("--out", default="bench_out",
                       help="folder for the files listed below (created if missing)")
    bench.add_argument("--no-torch", action="store_true",
                       help="leave PyTorch out (it is left out anyway when not installed)")
    bench.add_argument("--list", action="store_true",
                       help="list the suite's layers (with --models: models) and exit")
    _add_tune_command(sub)
    return parser, bench


def main(argv=None) -> int:
    args = build_parsers()[0].parse_args(argv)

    if args.command == "bench":
        import jax.numpy as jnp

        from jax_tconv import _bench

        layouts = _bench.LAYOUTS if args.layout == "both" else (args.layout,)
        patterns = args.layers.split(",") if args.layers else []
        suite: list[Any]
        if args.models:
            from jax_tconv import _bench_models
            suite = _bench_models.suite()
        else:
            suite = _bench.SUITE
        chosen = [item for item in suite if not patterns or any(p in item.name for p in patterns)]
        if args.list or not chosen:
            print("\n".join(item.name for item in suite))
            return 0 if chosen else 2
        if not args.models:
            _bench.run(chosen, rounds=args.rounds, dtype=getattr(jnp, args.dtype),
                       with_torch=not args.no_torch, out_dir=args.out, layouts=layouts)
            return 0
        if args.dtype != "float32":
            print(f"bench --models: runs float32 only (its contestants must agree to 1e-4 "
                  f"before they are timed), not --dtype {args.dtype}")
            return 2
        try:
            _bench_models.run(chosen, rounds=args.rounds, with_torch=not args.no_torch,
                              layouts=layouts, out_dir=args.out)
        except _bench_models.ModelMismatch as e:
            print(f"bench --models: FAILED, nothing timed: {e}")
            return 1
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
