"""Weights in and out of `jax_tconv.nn`'s ConvTranspose: PyTorch, Flax and Equinox.

PyTorch modules (`from_torch_module`, `to_torch_module`): a whole
``torch.nn.ConvTranspose{1,2,3}d``, configuration and weights, to the layer of
any front end (linen, nnx, Equinox) and back, in one call. They import torch
when called; nothing here imports it at import time.

PyTorch arrays (`from_torch`, `to_torch`: NumPy arrays in and out; torch is
never imported)::

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

from jax_tconv import _checks
from jax_tconv._checks import padding_pairs
from jax_tconv._spec import maybe_broadcast
from jax_tconv.typing import ArrayLike

__all__ = ["from_equinox", "from_flax", "from_torch", "from_torch_module", "load_params",
           "to_torch", "to_torch_module"]


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


# ----------------------------------------------------------------------------
# PyTorch's ConvTranspose modules, configuration and weights in one call.

_APIS = ("linen", "nnx", "equinox")


def _torch_for(fn: str, module: Any) -> Any:
    """The torch package, after checking that `module` is a torch ConvTranspose (TypeError)."""
    wanted = "a torch.nn.ConvTranspose1d, ConvTranspose2d or ConvTranspose3d"
    try:
        import torch
    except ImportError:
        raise TypeError(
            f"{fn}: module must be {wanted}, got {type(module).__name__} (and torch is not "
            f"installed)."
        ) from None
    classes = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
    if not isinstance(module, classes):
        hint = ""
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            hint = " (a forward convolution: only transposed ones convert)"
        elif isinstance(module, torch.nn.Module):
            hint = " (pass the ConvTranspose submodule itself, e.g. model.decoder[0])"
        raise TypeError(f"{fn}: module must be {wanted}, got {type(module).__name__}{hint}.")
    return torch


def _torch_array(tensor: Any) -> np.ndarray:
    """A torch tensor as a NumPy array of its own: detached, on the CPU, copied.

    bfloat16 (which NumPy holds only through ml_dtypes) goes through float32,
    exactly; float64 becomes float32 unless ``jax_enable_x64`` is set, as JAX
    stores it.
    """
    import jax
    import jax.numpy as jnp
    import torch

    t = tensor.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.float().numpy().astype(jnp.bfloat16)
    a = np.array(t.numpy(), copy=True)
    return a.astype(jax.dtypes.canonicalize_dtype(a.dtype), copy=False)


def from_torch_module(module: Any, *, api: str, method: str = "auto") -> Any:
    """The jax_tconv ConvTranspose equal to a PyTorch ``ConvTranspose{1,2,3}d`` module.

    One call carries over the whole module: channels, kernel size, stride,
    padding, output padding, dilation, groups, whether it has a bias, the
    weight and bias themselves (detached and copied to the host), and the
    parameter dtype (float64 becomes float32 unless ``jax_enable_x64`` is set,
    as everywhere in JAX). The layer's output equals the module's for every input,
    in the layer's layout: linen and nnx take channels-last input (``NCHW ->
    NHWC`` with ``np.moveaxis(x, 1, -1)``), the Equinox layer one unbatched
    channels-first example (``jax.vmap`` it over the batch).

    Args:
      module: a ``torch.nn.ConvTranspose1d``, ``ConvTranspose2d`` or
        ``ConvTranspose3d`` (a lazy one after its first call).
      api: which front end to build: ``"linen"``, ``"nnx"`` or ``"equinox"``.
      method: the layer's ``method`` (``"auto"``, ``"tune"`` or one of
        `jax_tconv.METHODS`); it picks how JAX computes, not what.

    Returns:
      ``"linen"``: ``(layer, variables)``, a `jax_tconv.nn.linen.ConvTranspose`
      and its ``{'params': {'kernel', 'bias'?}}``, to run as
      ``layer.apply(variables, x)``. ``"nnx"``: a `jax_tconv.nn.nnx.ConvTranspose`
      holding the weights. ``"equinox"``: a `jax_tconv.nn.equinox.ConvTranspose`
      holding them (its weight is PyTorch's, unchanged).
      `to_torch_module` goes back.

    Raises:
      TypeError: `module` is not a torch ConvTranspose module.
      ValueError: `api`, `method`, or a module PyTorch itself cannot run: a lazy module
        not yet initialised, a ``padding_mode`` other than ``'zeros'`` (set on
        the module after construction; torch's forward raises for it), an
        ``output_padding`` not below ``max(stride, dilation)``.

    Example:
      >>> import numpy as np, torch
      >>> from jax_tconv import interop
      >>> theirs = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
      ...                                   groups=2)
      >>> layer, variables = interop.from_torch_module(theirs, api="linen")
      >>> layer.features, layer.strides, layer.padding, layer.output_padding
      (6, (2, 2), (1, 1), (1, 1))
      >>> x = np.random.default_rng(0).standard_normal((1, 4, 5, 5), np.float32)
      >>> y = layer.apply(variables, np.moveaxis(x, 1, -1))        # channels last
      >>> y.shape
      (1, 10, 10, 6)
      >>> with torch.no_grad():
      ...     expected = theirs(torch.from_numpy(x)).numpy()
      >>> bool(np.allclose(np.moveaxis(y, -1, 1), expected, atol=1e-5))
      True
    """
    fn = "from_torch_module"
    if api not in _APIS:
        raise ValueError(
            f"{fn}: api must be one of {', '.join(map(repr, _APIS))} (the front end to "
            f"build), got {api!r}."
        )
    _checks.method(fn, method)
    torch = _torch_for(fn, module)
    if isinstance(module.weight, torch.nn.parameter.UninitializedParameter):
        raise ValueError(
            f"{fn}: module is a lazy {type(module).__name__} whose weight is not initialised "
            f"yet; call it once on an input (module(x)) so that it knows in_channels, then "
            f"convert it."
        )
    if module.padding_mode != "zeros":
        raise ValueError(
            f"{fn}: module.padding_mode must be 'zeros', the only mode PyTorch's "
            f"{type(module).__name__} runs (its forward raises for any other), got "
            f"{module.padding_mode!r}. Set module.padding_mode = 'zeros' if that is what "
            f"the module computed."
        )
    n = len(module.kernel_size)
    k = _checks.ints(fn, "module.kernel_size", module.kernel_size, n, minimum=1)
    g = _checks.positive_int(fn, "module.groups", module.groups)
    geometry: dict[str, Any] = dict(
        kernel_size=k, strides=_checks.ints(fn, "module.stride", module.stride, n, minimum=1),
        padding=_checks.ints(fn, "module.padding", module.padding, n, minimum=0),
        output_padding=_checks.ints(fn, "module.output_padding", module.output_padding, n,
                                    minimum=0),
        dilation=_checks.ints(fn, "module.dilation", module.dilation, n, minimum=1), groups=g)
    c_in, c_out = int(module.in_channels), int(module.out_channels)
    shape = (c_in, c_out // g, *k)
    if tuple(module.weight.shape) != shape:
        raise ValueError(
            f"{fn}: module.weight has shape {tuple(module.weight.shape)}, but in_channels="
            f"{c_in}, out_channels={c_out}, groups={g} and kernel_size={k} make it "
            f"(in_channels, out_channels // groups, *kernel_size) = {shape}."
        )
    if module.bias is not None and tuple(module.bias.shape) != (c_out,):
        raise ValueError(f"{fn}: module.bias has shape {tuple(module.bias.shape)}, not "
                         f"(out_channels,) = ({c_out},).")
    weight = _torch_array(module.weight)
    bias = None if module.bias is None else _torch_array(module.bias)
    try:
        return _build_layer(api, n, c_in, c_out, geometry, weight, bias, method)
    except ValueError as e:
        raise ValueError(
            f"{fn}: the module's configuration has no jax_tconv layer (PyTorch's forward "
            f"refuses it too): {e}"
        ) from e


def _build_layer(api: str, n: int, c_in: int, c_out: int, geometry: dict[str, Any],
                 weight: np.ndarray, bias: np.ndarray | None, method: str) -> Any:
    """The `api`'s ConvTranspose with `geometry`, holding PyTorch's `weight` and `bias`."""
    import jax
    import jax.numpy as jnp

    use_bias = bias is not None
    if api == "equinox":
        from jax_tconv.nn import equinox as teqx  # imports Equinox: only here

        k = geometry.pop("kernel_size")
        geometry["stride"] = geometry.pop("strides")
        return teqx.with_arrays(
            lambda: teqx.ConvTranspose(n, c_in, c_out, k, **geometry, use_bias=use_bias,
                                       dtype=weight.dtype, method=method,
                                       key=jax.random.key(0)),
            jnp.asarray(weight), None if bias is None else jnp.asarray(bias).reshape(
                (c_out, *(1,) * n)))
    params = from_torch(weight, bias)
    if api == "linen":
        from jax_tconv.nn import linen

        layer = linen.ConvTranspose(features=c_out, **geometry, use_bias=use_bias,
                                    param_dtype=weight.dtype, method=method)
        return layer, {"params": {name: jnp.asarray(a) for name, a in params.items()}}
    from flax import nnx

    from jax_tconv.nn import nnx as tnnx

    def given(name: str):  # initialises a parameter with the module's array: nothing drawn
        return lambda key, shape, dtype: jnp.asarray(params[name], dtype)

    return tnnx.ConvTranspose(c_in, c_out, **geometry, use_bias=use_bias,
                              kernel_init=given("kernel"), bias_init=given("bias"),
                              param_dtype=weight.dtype, method=method, rngs=nnx.Rngs(0))


def to_torch_module(layer: Any, *, variables: Mapping[str, Any] | None = None) -> Any:
    """The PyTorch ``ConvTranspose{1,2,3}d`` equal to a jax_tconv ConvTranspose layer.

    The reverse of `from_torch_module`: a new CPU module with the layer's
    channels, kernel size, stride, dilation, groups and bias, holding copies of
    its weight and bias in their dtype, whose output equals the layer's. The
    layer's padding becomes PyTorch's symmetric padding: a pair ``(lo, hi)``
    is ``padding=lo`` with ``hi - lo`` less output padding, ``'VALID'`` is 0,
    and ``'SAME'`` is resolved (lax's split, the odd element at the end).
    ``method``, ``precision`` and the computation ``dtype`` say how JAX
    computes and have no PyTorch counterpart. Torch's random generator is not
    touched.

    Args:
      layer: a `jax_tconv.nn.linen.ConvTranspose`, `jax_tconv.nn.nnx.ConvTranspose`
        or `jax_tconv.nn.equinox.ConvTranspose`.
      variables: a linen layer's variables, ``{'params': {'kernel', 'bias'?}}``
        (what ``layer.init`` returns); None for nnx and Equinox layers, which
        hold their parameters.

    Returns:
      A ``torch.nn.ConvTranspose{n}d`` (``n`` = 1, 2 or 3) with ``requires_grad``
      parameters.

    Raises:
      TypeError: `layer` is not one of those layers (Flax's or Equinox's own
        ConvTranspose: convert them with `from_flax` / `from_equinox` first).
      ValueError: `variables` missing or given where not wanted, or a layer
        that no torch module computes: ``padding_mode`` other than ``'zeros'``
        (PyTorch's ConvTranspose runs no other), padding that crops more at
        the high end than the low one beyond what output padding makes up
        (``'SAME'`` with an odd total among them), more than 3 spatial
        dimensions.

    Example:
      >>> import numpy as np, torch
      >>> from flax import nnx
      >>> from jax_tconv import interop
      >>> from jax_tconv.nn import nnx as tnnx
      >>> layer = tnnx.ConvTranspose(4, 6, (3, 3), strides=2, padding=((1, 0), (1, 0)),
      ...                            groups=2, rngs=nnx.Rngs(0))
      >>> module = interop.to_torch_module(layer)
      >>> module.padding, module.output_padding            # (1, 0): crop 1 low, 0 high
      ((1, 1), (1, 1))
      >>> x = np.ones((1, 4, 5, 5), np.float32)
      >>> with torch.no_grad():
      ...     y = module(torch.from_numpy(x)).numpy()
      >>> bool(np.allclose(y, np.moveaxis(layer(np.moveaxis(x, 1, -1)), -1, 1), atol=1e-5))
      True
    """
    fn = "to_torch_module"
    config, c_in, weight, bias = _layer_parts(fn, layer, variables)
    n = config.num_spatial
    if config.padding_mode != "zeros":
        raise ValueError(
            f"{fn}: the layer has padding_mode={config.padding_mode!r}, the adjoint of a "
            f"convolution padded that way; PyTorch's ConvTranspose runs only "
            f"padding_mode='zeros' (its constructor raises for any other), so no torch module "
            f"computes it."
        )
    if n > 3:
        raise ValueError(
            f"{fn}: PyTorch has ConvTranspose1d, 2d and 3d only; the layer has {n} spatial "
            f"dimensions."
        )
    s = _checks.ints(fn, "strides", config.strides, n, minimum=1)
    d = _checks.ints(fn, "dilation", config.dilation, n, minimum=1)
    pads, op = _resolved_padding(fn, config, s, d)
    padding, output_padding = [], []
    for j, ((lo, hi), sj, dj, opj) in enumerate(zip(pads, s, d, op)):
        extra = opj + lo - hi
        if not 0 <= extra < max(sj, dj):
            raise ValueError(
                f"{fn}: the layer's padding {config.padding!r} crops ({lo}, {hi}) in spatial "
                f"dimension {j}, with output_padding {opj}; PyTorch crops its padding p from "
                f"both ends and adds output_padding at the high end, so it needs 0 <= "
                f"output_padding + lo - hi = {extra} < max(stride, dilation) = {max(sj, dj)}. "
                f"No torch ConvTranspose module computes this layer."
            )
        padding.append(lo)
        output_padding.append(extra)
    return _torch_module(c_in, config.features, config.kernel_size, s, tuple(padding),
                         tuple(output_padding), d, config.groups, weight, bias)


def _resolved_padding(fn: str, config: Any, s: tuple[int, ...], d: tuple[int, ...]
                      ) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """A layer's ``(lo, hi)`` pairs and output padding; 'SAME' resolved as the layers do.

    'SAME' is the forward conv's SAME padding for an input of size ``i*s``:
    ``max(d*(k - 1) + 1 - s, 0)`` in total, the smaller half first, with the
    output padding that reaches ``i*s``, ``max(s - d*(k - 1) - 1, 0)``
    (neither depends on ``i``). 'VALID' is no padding.
    """
    n = config.num_spatial
    op = _checks.ints(fn, "output_padding", config.output_padding, n, minimum=0)
    pairs = padding_pairs(fn, config.padding, n)
    if pairs == "VALID":
        return ((0, 0),) * n, op
    if pairs == "SAME":  # the layer refuses output_padding with 'SAME'
        pads, op_same = [], []
        for kj, sj, dj in zip(config.kernel_size, s, d):
            reach = dj * (kj - 1) + 1
            total = max(reach - sj, 0)
            pads.append((total // 2, total - total // 2))
            op_same.append(max(sj - reach, 0))
        return tuple(pads), tuple(op_same)
    assert not isinstance(pairs, str)
    return pairs, op


def _layer_parts(fn: str, layer: Any, variables: Any):
    """``(config, C_in, weight (C_in, C_out // g, *k), bias (C_out,) or None)`` of a layer."""
    import sys

    kind = None
    for api in _APIS:
        front = sys.modules.get(f"jax_tconv.nn.{api}")  # a layer means its module is loaded
        if front is not None and isinstance(layer, front.ConvTranspose):
            kind = api
        elif front is not None and isinstance(layer, tuple(getattr(front, c) for c in (
                "ResizeConv", "SubPixelConv", "PixelShuffle"))):
            raise TypeError(
                f"{fn}: layer must be a jax_tconv ConvTranspose, got {api} "
                f"{type(layer).__name__}, which no torch ConvTranspose module computes."
            )
    if kind is None:
        origin = type(layer).__module__.split(".")[0]
        hint = {"flax": " (Flax's own: convert it with jax_tconv.interop.from_flax first)",
                "equinox": " (Equinox's own: convert it with jax_tconv.interop.from_equinox "
                           "first)"}.get(origin, "")
        raise TypeError(
            f"{fn}: layer must be a jax_tconv.nn.linen, nnx or equinox ConvTranspose, got "
            f"{type(layer).__module__}.{type(layer).__name__}{hint}."
        )
    if kind == "linen":
        if not isinstance(variables, Mapping) or "params" not in variables:
            got = "None" if variables is None else (
                f"keys {sorted(variables)}" if isinstance(variables, Mapping)
                else type(variables).__name__)
            raise ValueError(
                f"{fn}: a linen layer holds no parameters; pass variables= its variables "
                f"{{'params': {{'kernel', 'bias'}}}} (what layer.init returns), got {got}."
            )
        config = layer._config()
        state = to_torch(variables["params"])
        if layer.use_bias != ("bias" in state):
            raise ValueError(
                f"{fn}: the layer has use_bias={layer.use_bias} but variables['params'] "
                f"{'lacks' if layer.use_bias else 'holds'} a 'bias'."
            )
        weight, bias = state["weight"], state.get("bias")
    else:
        if variables is not None:
            raise ValueError(
                f"{fn}: an {kind} layer holds its parameters; pass variables=None, got "
                f"{type(variables).__name__}."
            )
        config = layer.config
        if kind == "nnx":
            state = to_torch(layer)
            weight, bias = state["weight"], state.get("bias")
        else:
            weight = np.asarray(layer.weight)
            bias = None if layer.bias is None else np.asarray(layer.bias).reshape(-1)
    n, g = config.num_spatial, config.groups
    expected = (config.kernel_size, config.features // g)
    if weight.ndim != n + 2 or (tuple(weight.shape[2:]), weight.shape[1]) != expected:
        raise ValueError(
            f"{fn}: the layer's weight has shape {weight.shape} (PyTorch's layout), not "
            f"(C_in, features // groups = {expected[1]}, *kernel_size = {expected[0]})."
        )
    if bias is not None and bias.shape != (config.features,):
        raise ValueError(f"{fn}: the layer's bias has shape {bias.shape}, not "
                         f"(features,) = ({config.features},).")
    return config, weight.shape[0], weight, bias


def _torch_module(c_in, c_out, k, s, padding, output_padding, d, groups, weight, bias):
    """A ``torch.nn.ConvTranspose{n}d`` holding copies of `weight` and `bias`.

    Built on the meta device and then allocated, so torch's initialisation
    draws no random numbers.
    """
    import jax.numpy as jnp
    import torch

    def tensor(a: np.ndarray):
        if a.dtype == jnp.bfloat16:
            return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
        return torch.from_numpy(np.array(a, copy=True))

    w = tensor(weight)
    cls = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d,
           torch.nn.ConvTranspose3d)[len(k) - 1]
    module = cls(c_in, c_out, tuple(k), stride=tuple(s), padding=padding,
                 output_padding=output_padding, groups=groups, bias=bias is not None,
                 dilation=tuple(d), dtype=w.dtype, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        module.weight.copy_(w)
        if bias is not None:
            module.bias.copy_(tensor(bias))
    return module
