"""``python -m jax_tconv``: the self-check (default)."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jax_tconv",
        description="Check every transposed-convolution method against the NumPy reference "
                    "on the current JAX backend (forward and gradients); exits 1 on a mismatch.")
    parser.add_argument("--method", action="append", default=None,
                        help="check only this method (repeatable); default: all and 'auto'")
    args = parser.parse_args(argv)
    from jax_tconv import _selfcheck

    return 0 if _selfcheck.run(tuple(args.method) if args.method else None) else 1


if __name__ == "__main__":
    sys.exit(main())
