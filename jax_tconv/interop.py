"""Weights in and out of `jax_tconv.nn`'s ConvTranspose: PyTorch and Flax.

PyTorch (NumPy arrays in and out; torch is never imported)::

    ConvTransposeNd.weight (C_in, C_out // groups, *k)  <->  kernel (*k, C_out // groups, C_in)
    ConvTransposeNd.bias   (C_out,)                     <->  bias   (C_out,)

PyTorch's constructor arguments carry over with the same meaning:
``out_channels`` -> ``features`` (nnx: ``out_features``), ``in_channels`` ->
``in_features`` (nnx), ``stride`` -> ``strides``, ``bias`` -> ``use_bias``;
``padding``, ``output_padding``, ``dilation``, ``groups`` keep their names.

Flax (`from_flax`): ``flax.linen.ConvTranspose`` (or ``flax.nnx.ConvTranspose``)
computes ``lax.conv_transpose``: a stride-1 correlation of the stride-dilated
input, zero-padded by ``(a, b)`` per dimension, with its kernel ``(*k, C_in,
C_out)`` as is (``transpose_kernel=False``), or with ``(*k, C_out, C_in)``
flipped and transposed (``transpose_kernel=True``). With ``D = d*(k - 1)``
that is jax_tconv's ConvTranspose with padding ``(D - a, D - b)``, the kernel
flipped and its channel axes swapped for ``transpose_kernel=False`` and taken
as is for ``True``. A negative high padding ``D - b`` becomes
``output_padding``; what cannot be expressed (``a > D``, ``b - D >=
max(stride, dilation)``) raises a ValueError.

Flax's ``padding='CIRCULAR'`` runs the 'VALID' transposed convolution (the
whole uncropped output, size ``(i - 1)*s + D + 1``, zero-extended to ``i*s``
if shorter) and wraps it around with period ``P = i*s``, after shifting it by
``P - ceil(e/2)`` (``transpose_kernel=True``) or ``P - floor(e/2)``
(``False``), ``e = D + 1 - s`` the overhang. That is exactly the adjoint of a
circular convolution of an input of size ``P`` with stride ``s`` and padding
``(ceil(e/2), floor(e/2))`` (``False``: ``(floor(e/2), ceil(e/2))``), i.e.
jax_tconv's ConvTranspose with that padding and ``padding_mode='circular'``
(``e <= 0``: no padding, ``output_padding = -e``, nothing wraps) -- as long
as each padding is at most ``P`` (``e <= 2P``), PyTorch's circular rule,
which the layer checks on each input. Below that Flax wraps the border
around several times, which no single circular padding does, and the layer
refuses the input.

Equinox (`from_equinox`): ``equinox.nn.ConvTranspose`` is the same kind of
correlation: the stride-dilated input, zero-padded by ``(a, b)`` (computed
from its ``padding`` and ``output_padding`` by Relationship 14 of arXiv
1603.07285), with its weight ``(C_out, C_in // groups, *k)`` unflipped and
grouped along the output channels. `from_equinox` returns the
`jax_tconv.nn.equinox.ConvTranspose` computing the same: padding ``(D - a,
D - b)`` as above, the weight flipped and regrouped to ``(C_in, C_out //
groups, *k)``, the forward conv's kernel (Equinox's FAQ flip-and-swap, which
is right for ``groups=1`` only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jax_tconv._spec import maybe_broadcast
from jax_tconv.typing import ArrayLike

__all__ = ["from_equinox", "from_flax", "from_torch", "load_params", "to_torch"]


def from_torch(weight: ArrayLike, bias: ArrayLike | None) -> dict[str, np.ndarray]:
    """Module params from a PyTorch ``ConvTranspose{1,2,3}d``'s weight and bias.

    Args:
      weight: ``(C_in, C_out // groups, *k)``, a NumPy array (or anything
        `numpy.asarray` takes, e.g. ``module.weight.detach().numpy()``).
      bias: ``(C_out,)``, or None for a module built with ``bias=False``.

    Returns:
      ``{'kernel': (*k, C_out // groups, C_in), 'bias': (C_out,)}`` NumPy
      arrays (no 'bias' when None): ``{'params': ...}`` for linen, or
      `load_params` for nnx.

    Example:
      >>> import numpy as np
      >>> from jax_tconv import interop
      >>> p = interop.from_torch(np.zeros((8, 3, 4, 4)), np.zeros(3))
      >>> p['kernel'].shape, p['bias'].shape
      ((4, 4, 3, 8), (3,))
    """
    w = np.asarray(weight)
    if w.ndim < 3:
        raise ValueError(
            f"from_torch: weight must be a ConvTranspose weight (C_in, C_out // groups, *k) "
            f"with at least one spatial axis, got shape {w.shape}."
        )
    n = w.ndim - 2
    params = {"kernel": np.transpose(w, (*range(2, 2 + n), 1, 0))}
    if bias is not None:
        b = np.asarray(bias)
        if b.ndim != 1 or b.shape[0] % w.shape[1]:
            raise ValueError(
                f"from_torch: bias must be (C_out,) with C_out a multiple of weight.shape[1] "
                f"= C_out // groups = {w.shape[1]}, got bias shape {b.shape}."
            )
        params["bias"] = b
    return params


def to_torch(params: Any) -> dict[str, np.ndarray]:
    """PyTorch ``ConvTranspose{1,2,3}d`` state-dict arrays from module params.

    Args:
      params: ``{'kernel': (*k, C_out // groups, C_in), 'bias'?: (C_out,)}`` (a
        linen ``variables['params']``) or an nnx ``ConvTranspose``.

    Returns:
      ``{'weight': (C_in, C_out // groups, *k), 'bias': (C_out,)}`` NumPy arrays;
      load with ``module.load_state_dict({k: torch.from_numpy(v) ...})``.

    Example:
      >>> import numpy as np
      >>> from jax_tconv import interop
      >>> interop.to_torch({'kernel': np.zeros((4, 4, 3, 8))})['weight'].shape
      (8, 3, 4, 4)
    """
    kernel, bias = _read(params, "to_torch")
    if kernel.ndim < 3:
        raise ValueError(
            f"to_torch: kernel must be (*k, C_out // groups, C_in), got shape {kernel.shape}."
        )
    n = kernel.ndim - 2
    out = {"weight": np.transpose(kernel, (n + 1, n, *range(n)))}
    if bias is not None:
        out["bias"] = bias
    return out


def _read(params: Any, fn: str) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(params, Mapping):
        if "kernel" not in params:
            raise ValueError(
                f"{fn}: params must hold 'kernel' (and 'bias'); got keys {sorted(params)}. "
                f"Pass variables['params'] (of the layer), not the whole variables dict."
            )
        bias = params.get("bias")
        kernel = params["kernel"]
    elif hasattr(params, "kernel"):  # an nnx layer
        kernel, bias = params.kernel[...], params.bias
        bias = None if bias is None else bias[...]
    else:
        raise TypeError(f"{fn}: params must be a mapping or an nnx layer, got {type(params)}.")
    return np.asarray(kernel), None if bias is None else np.asarray(bias)


def load_params(layer: Any, params: Any) -> None:
    """Assign ``{'kernel', 'bias'}`` arrays to an nnx layer's parameters, shapes checked.

    Example:
      >>> import numpy as np
      >>> from flax import nnx
      >>> from jax_tconv import interop
      >>> from jax_tconv.nn import nnx as tnnx
      >>> layer = tnnx.ConvTranspose(8, 3, (4, 4), rngs=nnx.Rngs(0))
      >>> interop.load_params(layer, interop.from_torch(np.ones((8, 3, 4, 4)), np.ones(3)))
      >>> float(layer.kernel[...].sum()), float(layer.bias[...].sum())
      (384.0, 3.0)
    """
    kernel, bias = _read(params, "load_params")
    if tuple(layer.kernel.shape) != kernel.shape:
        raise ValueError(
            f"load_params: {type(layer).__name__}.kernel has shape {tuple(layer.kernel.shape)}, "
            f"the given kernel {kernel.shape}."
        )
    if (layer.bias is None) != (bias is None):
        raise ValueError(
            f"load_params: {type(layer).__name__} has use_bias={layer.bias is not None} but "
            f"the params {'lack' if bias is None else 'hold'} a bias."
        )
    if bias is not None and tuple(layer.bias.shape) != bias.shape:
        raise ValueError(
            f"load_params: {type(layer).__name__}.bias has shape {tuple(layer.bias.shape)}, "
            f"the given bias {bias.shape}."
        )
    layer.kernel[...] = kernel.astype(layer.kernel.dtype)
    if bias is not None:
        layer.bias[...] = bias.astype(layer.bias.dtype)


# ----------------------------------------------------------------------------
# Flax's ConvTranspose.


def _flax_pads(padding, k_eff, s, n) -> list[tuple[int, int]]:
    """The ``(a, b)`` padding lax.conv_transpose applies to the stride-dilated input."""
    if isinstance(padding, str):
        if padding == "SAME":  # lax's forward-SAME rule, per dimension
            pairs = []
            for kj, sj in zip(k_eff, s):
                total = kj + sj - 2
                a = kj - 1 if sj > kj - 1 else -(-total // 2)
                pairs.append((a, total - a))
            return pairs
        if padding == "VALID":
            return [(kj - 1, kj + sj - 2 + max(kj - sj, 0) - (kj - 1))
                    for kj, sj in zip(k_eff, s)]
        raise ValueError(
            f"from_flax: padding {padding!r} is not one Flax's ConvTranspose runs; "
            f"lax.conv_transpose takes 'SAME', 'VALID' (and Flax 'CIRCULAR') as strings."
        )
    if isinstance(padding, int):
        return [(padding, padding)] * n
    if isinstance(padding, Sequence) and len(padding) == n:
        pairs = []
        for p in padding:
            if isinstance(p, int):
                pairs.append((p, p))
            elif isinstance(p, Sequence) and len(p) == 2:
                pairs.append((int(p[0]), int(p[1])))
            else:
                break
        if len(pairs) == n:
            return pairs
    raise ValueError(f"from_flax: padding {padding!r} is not a valid Flax padding for {n}-D.")


def from_flax(module: Any, *, params: Mapping[str, ArrayLike] | None = None,
              api: str = "linen") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Arguments and params of the jax_tconv ConvTranspose equal to a Flax ConvTranspose.

    Args:
      module: a ``flax.linen.ConvTranspose`` or ``flax.nnx.ConvTranspose``.
      params: the linen module's ``variables['params']`` (``{'kernel', 'bias'?}``);
        for an nnx module None (read from it).
      api: ``"linen"`` (keyword arguments of `jax_tconv.nn.linen.ConvTranspose`)
        or ``"nnx"`` (of `jax_tconv.nn.nnx.ConvTranspose`, without ``rngs``).

    Returns:
      ``(kwargs, params)``: construct ``ConvTranspose(**kwargs)`` and use
      ``{'params': params}`` (linen) or `load_params` (nnx); the outputs equal
      the Flax module's. A ``mask`` is multiplied into the kernel.

    ``padding='CIRCULAR'`` becomes ``padding_mode='circular'`` with the padding
    that makes it the same operator (module docstring); the layer then refuses
    inputs so small (``i*s`` under half the overhang) that Flax wraps the
    border around more than once.

    Raises:
      ValueError: the configuration has no equivalent (padding beyond the reach
        of the kernel, ``preferred_element_type``), or `api`.

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn
      >>> from jax_tconv import interop
      >>> from jax_tconv.nn import linen
      >>> theirs = nn.ConvTranspose(4, (3, 3), strides=(2, 2), padding="SAME")
      >>> x = jnp.ones((1, 5, 5, 2))
      >>> variables = theirs.init(jax.random.key(0), x)
      >>> kwargs, params = interop.from_flax(theirs, params=variables["params"])
      >>> kwargs["padding"], kwargs["output_padding"]
      (((0, 1), (0, 1)), (0, 0))
      >>> ours = linen.ConvTranspose(**kwargs)
      >>> bool(jnp.allclose(ours.apply({"params": params}, x), theirs.apply(variables, x),
      ...                   atol=1e-5))
      True
    """
    if api not in ("linen", "nnx"):
        raise ValueError(f"from_flax: api must be 'linen' or 'nnx', got {api!r}.")
    features, params = _flax_params(module, params)
    kernel, bias = _read(params, "from_flax")
    if module.use_bias and bias is None:
        raise ValueError("from_flax: the module has use_bias=True but params hold no 'bias'.")
    if getattr(module, "preferred_element_type", None) is not None:
        raise ValueError(
            "from_flax: preferred_element_type has no jax_tconv layer equivalent; got "
            f"{module.preferred_element_type!r}."
        )
    k = (module.kernel_size,) if isinstance(module.kernel_size, int) else tuple(module.kernel_size)
    n = len(k)
    s, d = maybe_broadcast(module.strides, n), maybe_broadcast(module.kernel_dilation, n)
    kernel = _flax_kernel(module, kernel, n)
    if module.padding == "CIRCULAR":
        padding, output_padding = _flax_circular(k, s, d, module.transpose_kernel)
        mode = "circular"
    else:
        padding, output_padding = _from_flax_padding(module.padding, k, s, d)
        mode = "zeros"

    kwargs: dict[str, Any] = dict(
        kernel_size=k, strides=s, padding=padding, padding_mode=mode,
        output_padding=output_padding, dilation=d, use_bias=module.use_bias,
        dtype=module.dtype, param_dtype=module.param_dtype, precision=module.precision)
    if api == "linen":
        kwargs = dict(features=features, **kwargs)
    else:
        kwargs = dict(in_features=kernel.shape[-1], out_features=features, **kwargs)
    out = {"kernel": kernel}
    if bias is not None:
        out["bias"] = bias
    return kwargs, out


def _flax_params(module, params):
    """Step 1: ``(features, params)``; an nnx module holds its params, a linen one is given them."""
    if hasattr(module, "out_features"):  # nnx
        if params is not None:
            raise ValueError("from_flax: an nnx module holds its params; pass params=None.")
        params = {"kernel": module.kernel[...]}
        if module.bias is not None:
            params["bias"] = module.bias[...]
        return module.out_features, params
    if params is None:
        raise ValueError("from_flax: a linen module needs its variables['params'].")
    return module.features, params


def _flax_kernel(module, kernel: np.ndarray, n: int) -> np.ndarray:
    """Step 2: the kernel in jax_tconv's layout ``(*k, C_out, C_in)``, mask applied."""
    if module.mask is not None:
        kernel = kernel * np.asarray(module.mask)
    if not module.transpose_kernel:  # (*k, C_in, C_out), correlated as is: flip and swap
        kernel = np.flip(kernel, axis=tuple(range(n))).swapaxes(-1, -2)
    return np.ascontiguousarray(kernel)


def _from_flax_padding(padding, k, s, d) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """Step 3: lax.conv_transpose's ``(a, b)`` as jax_tconv's padding and output padding."""
    k_eff = tuple(dj * (kj - 1) + 1 for kj, dj in zip(k, d))
    return _from_dilated_padding("from_flax", f"padding {padding!r} gives lax.conv_transpose",
                                 _flax_pads(padding, k_eff, s, len(k)), k, s, d)


def _from_dilated_padding(fn: str, what: str, pairs, k, s, d):
    """``(a, b)``, the padding of the stride-dilated input, as padding and output padding.

    With ``D = d*(k - 1)`` the padding is ``(D - a, D - b)``; a negative high
    side becomes output padding, reachable only below ``max(stride, dilation)``.
    """
    pads, output_padding = [], []
    for j, ((a, b), kj, sj, dj) in enumerate(zip(pairs, k, s, d)):
        reach = dj * (kj - 1)
        lo, hi = reach - a, reach - b
        op = 0
        if hi < 0:
            op, hi = -hi, 0
        if lo < 0 or op >= max(sj, dj):
            raise ValueError(
                f"{fn}: {what} padding ({a}, {b}) in spatial dimension {j}; jax_tconv "
                f"reaches (a, b) only for a <= d*(k - 1) = {reach} and b - {reach} < "
                f"max(stride, dilation) = {max(sj, dj)} (the extra outputs would be constant "
                f"zeros plus bias)."
            )
        pads.append((lo, hi))
        output_padding.append(op)
    return tuple(pads), tuple(output_padding)


def _flax_circular(k, s, d, transpose_kernel) -> tuple[tuple[tuple[int, int], ...],
                                                      tuple[int, ...]]:
    """Step 3, ``padding='CIRCULAR'``: the circular padding whose adjoint Flax computes.

    Per dimension the overhang ``e = d*(k - 1) + 1 - s`` of the uncropped output
    beyond the period ``i*s`` is split as Flax shifts it (module docstring):
    ``(ceil(e/2), floor(e/2))`` for ``transpose_kernel=True``, the other way
    round for False; a negative ``e`` is output padding instead.
    """
    pads, output_padding = [], []
    for kj, sj, dj in zip(k, s, d):
        e = dj * (kj - 1) + 1 - sj
        if e <= 0:
            pads.append((0, 0))
            output_padding.append(-e)
            continue
        big, small = (e + 1) // 2, e // 2
        pads.append((big, small) if transpose_kernel else (small, big))
        output_padding.append(0)
    return tuple(pads), tuple(output_padding)


# ----------------------------------------------------------------------------
# Equinox's ConvTranspose.


def _equinox_pads(module) -> list[tuple[int, int]]:
    """The ``(a, b)`` padding equinox.nn.ConvTranspose applies to the stride-dilated input.

    Equinox's own rule (``ConvTranspose._padding_transpose``), from Relationship
    14 of arXiv 1603.07285: ``a = D - lo`` and ``b = D - hi + output_padding``,
    where 'SAME' / 'SAME_LOWER' take ``lo + hi = max(D - s + op + 1, 0)`` (split
    as lax does, or with the odd element first) and replace the output padding
    by ``max(-(D - s + op + 1), 0)``.
    """
    pairs = []
    for j, (kj, sj, dj, op) in enumerate(zip(module.kernel_size, module.stride,
                                             module.dilation, module.output_padding)):
        reach = dj * (kj - 1)
        if isinstance(module.padding, str):
            if module.padding == "VALID":
                lo = hi = 0
            else:
                total = reach - sj + op + 1  # Equinox replaces output_padding here
                op, total = max(-total, 0), max(total, 0)
                lo = (total + (module.padding == "SAME_LOWER")) // 2
                hi = total - lo
        else:
            lo, hi = module.padding[j]
        pairs.append((reach - lo, reach - hi + op))
    return pairs


def _equinox_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """Equinox's ``(C_out, C_in // g, *k)`` as the forward conv's ``(C_in, C_out // g, *k)``.

    Equinox correlates with it unflipped, grouped along its first axis.

    Output channel ``o`` of group ``j`` reads input channel ``j * C_in/g + i``
    through ``weight[o, i]``; in the forward conv's kernel that connection is
    ``[j * C_in/g + i, o - j * C_out/g]``, flipped in space.
    """
    c_out, i_g, *k = weight.shape
    o_g = c_out // groups
    w = weight.reshape(groups, o_g, i_g, *k).swapaxes(1, 2).reshape(groups * i_g, o_g, *k)
    return np.ascontiguousarray(np.flip(w, axis=tuple(range(2, w.ndim))))


def from_equinox(module: Any) -> Any:
    """The `jax_tconv.nn.equinox.ConvTranspose` equal to an ``equinox.nn.ConvTranspose``.

    Args:
      module: an ``equinox.nn.ConvTranspose`` (or ``ConvTranspose1d/2d/3d``).

    Returns:
      A `jax_tconv.nn.equinox.ConvTranspose` with the same channels, kernel size,
      stride, dilation, groups and bias, whose output equals the module's for
      every input; its weight is the forward conv's kernel (flipped and
      regrouped from Equinox's) and its padding PyTorch's (``'SAME'`` /
      ``'SAME_LOWER'`` resolved into pairs and output padding, as Equinox does).
      Equinox's ``padding_mode='CIRCULAR'`` (which it allows with 'SAME' and
      'SAME_LOWER': it wraps the input around and crops) becomes
      ``padding_mode='circular'``, the adjoint of the circular convolution with
      those pairs: equal while each padding is at most the output's size
      (PyTorch's rule; the layer refuses smaller inputs, which Equinox wraps
      around more than once).

    Raises:
      ValueError: a padding beyond the kernel's reach.
      TypeError: `module` is not an ``equinox.nn.ConvTranspose``.

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp
      >>> from jax_tconv import interop
      >>> theirs = eqx.nn.ConvTranspose(2, 4, 3, 3, stride=2, padding="SAME",
      ...                               key=jax.random.key(0))
      >>> ours = interop.from_equinox(theirs)
      >>> ours.padding, ours.output_padding
      (((0, 1), (0, 1)), (0, 0))
      >>> x = jax.random.normal(jax.random.key(1), (4, 5, 5))
      >>> bool(jnp.allclose(ours(x), theirs(x), atol=1e-5))
      True
    """
    import equinox as eqx
    import jax

    from jax_tconv.nn import equinox as teqx  # imports Equinox: only here

    fn = "from_equinox"
    if not isinstance(module, eqx.nn.ConvTranspose):
        raise TypeError(f"{fn}: expected an equinox.nn.ConvTranspose, got {type(module).__name__}.")
    k, s, d = module.kernel_size, module.stride, module.dilation
    padding, output_padding = _from_dilated_padding(
        fn, f"padding {module.padding!r} with output_padding {module.output_padding!r} gives "
            f"Equinox's", _equinox_pads(module), k, s, d)
    weight = np.asarray(module.weight)
    kernel = jax.numpy.asarray(_equinox_weight(weight, module.groups))
    n = module.num_spatial_dims
    return teqx.with_arrays(
        lambda: teqx.ConvTranspose(n, module.in_channels, module.out_channels, k, stride=s,
                                   padding=padding, output_padding=output_padding, dilation=d,
                                   groups=module.groups,
                                   padding_mode=module.padding_mode.lower(),
                                   use_bias=module.use_bias, dtype=weight.dtype,
                                   key=jax.random.key(0)),
        kernel, module.bias)
