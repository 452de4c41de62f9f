"""The argument checks every public entry point shares: one home per rule.

Each check takes the name of the function (or layer) the user called, so its
message says where the bad value went in, states the rule, shows the value,
and raises `TypeError` for a wrong kind of value and `ValueError` for a value
out of range. `_spec` builds the geometry on top of these; the layers,
initializers and pixel shuffle call them directly.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The formulations `method=` accepts besides "auto" and "tune", in a stable order.
METHODS = ("vjp", "matmul", "dilated", "phase")
#: Everything `method=` accepts: "auto" (a fixed rule per backend), "tune" (measured
#: once per configuration, then cached) and the formulations.
ACCEPTED_METHODS = ("auto", "tune", *METHODS)


def as_int(fn: str, name: str, value: Any) -> int:
    """`value` as an int; bools (and NumPy bools) are refused, as in lax."""
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{fn}: {name} must be an int, got the bool {value!r}.")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{fn}: {name} must be an int, got {value!r} of type {type(value).__name__}."
        ) from None


def positive_int(fn: str, name: str, value: Any) -> int:
    v = as_int(fn, name, value)
    if v < 1:
        raise ValueError(f"{fn}: {name} must be >= 1, got {v}.")
    return v


def is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def ints(fn: str, name: str, value: Any, n: int | None, *, minimum: int) -> tuple[int, ...]:
    """An int (broadcast to `n` dimensions), or a sequence of `n` ints; each >= minimum.

    With ``n=None`` the rank is not known yet, so `value` must be a sequence
    (its length sets the rank).
    """
    if is_sequence(value):
        if n is not None and len(value) != n:
            raise ValueError(
                f"{fn}: {name} must be an int or a sequence of {n} ints (one per "
                f"spatial dimension), got {value!r} of length {len(value)}."
            )
        out = tuple(as_int(fn, name, v) for v in value)
    elif n is None:
        raise ValueError(
            f"{fn}: with an int {name}={value!r} the number of spatial dimensions is "
            f"unknown; pass one value per spatial dimension (a tuple)."
        )
    else:
        out = (as_int(fn, name, value),) * n
    if not out or any(v < minimum for v in out):
        raise ValueError(f"{fn}: {name} must be >= {minimum} in every dimension, got {value!r}.")
    return out


def kernel_size(fn: str, value: Any) -> tuple[int, ...]:
    """A layer's `kernel_size`: a non-empty sequence of positive ints (it sets the rank)."""
    if not is_sequence(value) or not value:
        raise TypeError(
            f"{fn}: kernel_size must be a non-empty sequence of ints, one per spatial "
            f"dimension (its length sets the rank: (3,) for 1-D, (3, 3) for 2-D), got "
            f"{value!r}."
        )
    return tuple(positive_int(fn, "kernel_size", k) for k in value)


def groups(fn: str, value: Any, channels: dict[str, int | None]) -> int:
    """`groups` >= 1, dividing every channel count given (None: not known yet)."""
    g = positive_int(fn, "groups", value)
    for what, c in channels.items():
        if c is not None and c % g:
            raise ValueError(
                f"{fn}: groups={g} must divide {what}, but {c} is not divisible by {g}."
            )
    return g


def method(fn: str, value: Any) -> str:
    """'auto', 'tune' or one of `METHODS`."""
    if not isinstance(value, str) or value not in ACCEPTED_METHODS:
        raise ValueError(
            f"{fn}: unknown method {value!r}; choose 'auto', 'tune' or one of "
            f"{', '.join(map(repr, METHODS))}."
        )
    return value


#: What `padding_mode=` accepts: PyTorch's names for the values beyond the border.
PADDING_MODES = ("zeros", "circular", "reflect", "replicate")
# Other libraries' names for the same modes, named in the error message.
_MODE_ALIASES = {"constant": "zeros", "zero": "zeros", "wrap": "circular",
                 "periodic": "circular", "edge": "replicate", "symmetric": None}


def padding_mode(fn: str, value: Any, *, any_case: bool = False) -> str:
    """One of `PADDING_MODES`, spelled as PyTorch spells it.

    With `any_case` (the Equinox front end, whose own layers take 'ZEROS',
    'CIRCULAR', ...) a name in any case is accepted and returned in lower case.
    """
    valid = ", ".join(map(repr, PADDING_MODES))
    if not isinstance(value, str):
        raise TypeError(
            f"{fn}: padding_mode must be a string, one of {valid}, got {value!r} of type "
            f"{type(value).__name__}."
        )
    if value in PADDING_MODES:
        return value
    if any_case and value.lower() in PADDING_MODES:
        return value.lower()
    names = ("in any case: PyTorch's names, Equinox's 'ZEROS', 'CIRCULAR', ..."
             if any_case else "PyTorch's names")
    hint = ""
    near = value.lower() if value.lower() in PADDING_MODES else _MODE_ALIASES.get(value.lower())
    if near is not None:
        hint = f" ({value!r} is {near!r} here)"
    elif value.lower() in _MODE_ALIASES:
        hint = f" (NumPy's {value!r}, which repeats the edge element, has no equivalent)"
    raise ValueError(f"{fn}: unknown padding_mode {value!r}; choose one of {valid} "
                     f"({names}){hint}.")


def mode_padding(fn: str, mode: str, pads: Sequence[tuple[int, int]], sizes: Sequence[int],
                 what: str) -> None:
    """PyTorch's rules for padding with values from the array itself (`F.pad`'s).

    'reflect' mirrors without repeating the edge, so each side pads less than the
    size it pads; 'circular' wraps around once, so at most that size; 'replicate'
    any amount. A negative amount crops (as in lax) and is not limited. `what`
    names the padded array in the message (e.g. "the input").
    """
    if mode == "zeros":
        return
    for j, ((lo, hi), size) in enumerate(zip(pads, sizes)):
        if mode == "reflect" and max(lo, hi) >= size:
            rule = "< the size it pads"
        elif mode == "circular" and max(lo, hi) > size:
            rule = "<= the size it pads (one wrap-around)"
        else:
            continue
        raise ValueError(
            f"{fn}: padding_mode={mode!r} needs each padding {rule}, as PyTorch's F.pad; got "
            f"padding {(lo, hi)} in spatial dimension {j}, where {what} has size {size}. "
            f"Reduce the padding, or use padding_mode='replicate' (any padding)."
        )
