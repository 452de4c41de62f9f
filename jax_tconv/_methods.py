"""One public function per formulation: `conv_transpose` with `method` fixed.

Each is generated from `conv_transpose` itself (`_fixed_method`), so the
signature has one home: the same keyword-only arguments, less `method`; errors
name the function called.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import jax

from jax_tconv._api import conv_transpose, transpose

__all__ = ["conv_transpose_dilated", "conv_transpose_matmul", "conv_transpose_phase",
           "conv_transpose_products", "conv_transpose_vjp"]


def _fixed_method(method: str, summary: str) -> Callable[..., jax.Array]:
    name = f"conv_transpose_{method}"

    full = inspect.signature(conv_transpose)
    signature = full.replace(parameters=[p for p in full.parameters.values()
                                         if p.name != "method"])

    def fixed(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:  # an unknown or positional option: Python's words, our name
            raise TypeError(f"{name}: {e}; its options are keyword-only, as in "
                            f"conv_transpose") from None
        bound.apply_defaults()
        options = dict(bound.arguments)
        return transpose(name, method, options.pop("x"), options.pop("w"), **options)

    fixed.__signature__ = signature  # type: ignore[attr-defined]
    fixed.__name__ = fixed.__qualname__ = name
    fixed.__doc__ = f"{summary}\n\nSame contract as `conv_transpose` with ``method={method!r}``.\n"
    fixed.__annotations__ = {k: v for k, v in conv_transpose.__annotations__.items()
                             if k != "method"}
    return fixed


conv_transpose_vjp = _fixed_method("vjp", """Transposed convolution as `jax.vjp` of `conv` (input).

With a padding mode other than 'zeros', `jax.vjp` of the padding after the
transposed conv of the uncropped output: the chain rule of ``conv_valid ∘ pad``.""")

conv_transpose_matmul = _fixed_method("matmul", """Transposed convolution as ``Cᵀ @ vec(x)``.

C is the dense `conv_matrix`.

Builds C per example (refusing, with a ValueError, above `MATMUL_MAX_BYTES`).
Every output is a sum over *all* inputs, so one NaN or Inf input makes every
output of its example NaN (0 * NaN), unlike the convolution methods. A
padding mode other than 'zeros' is built into C (several taps of a row may
read one column).""")

conv_transpose_dilated = _fixed_method("dilated", """Transposed convolution by zero insertion.

A stride-1 conv of the zero-dilated input with the flipped kernel.

With a padding mode other than 'zeros', onto the uncropped output, whose
border is then folded back in (the padding's adjoint).""")

conv_transpose_phase = _fixed_method("phase", """Transposed convolution by phase decomposition.

Stride-1 convs of the undilated input with the ``s**n`` sub-kernels,
interleaved; no multiply by an inserted zero. With a padding mode other
than 'zeros', onto the uncropped output, whose border is then folded back in.""")

conv_transpose_products = _fixed_method("products", """Transposed convolution as matrix products.

Every input element times every tap first, one matrix product
``(N·∏i, C_in) @ (C_in, ∏k·C_out)``, then each output sums the products that
land on it (overlap-add); both gradients are matrix products too. Holds a
temporary ``∏k/∏s`` times the output's size. With a padding mode other than
'zeros', onto the uncropped output, whose border is then folded back in.""")
