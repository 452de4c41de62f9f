"""`jax_tconv.nn.adjoint` for Flax layers: nnx's and linen's Conv and jax_tconv's own.

`jax_tconv.nn._adjoint` (which imports no framework) hands Flax layers here;
the table and the rules are in its docstring. A complex kernel's adjoint reads
its conjugate (``Cᴴ = conj(C)ᵀ``): nnx holds it in a new Param, linen is bound
to it.
"""

from __future__ import annotations

from typing import Any, cast

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx
from jax import lax

from jax_tconv._spec import Pairs, maybe_broadcast
from jax_tconv.nn import _common
from jax_tconv.nn import linen as tlinen
from jax_tconv.nn import nnx as tnnx
from jax_tconv.nn._common import NOT_ONE_CONV, unsupported

__all__ = ["adjoint_layer"]


def adjoint_layer(layer: Any, *, use_bias: bool) -> Any:
    """The adjoint of a Flax layer (nnx or linen), as `jax_tconv.nn.adjoint` documents."""
    if isinstance(layer, nnx.Module):
        return _nnx_adjoint(layer, use_bias)
    if isinstance(layer, nn.Module):
        return _linen_adjoint(layer, use_bias)
    raise TypeError(f"adjoint: expected a Flax convolution layer, got {type(layer).__name__}.")


# ----------------------------------------------------------------------------
# Flax's Conv (nnx and linen share its attributes).


def _padding_of_flax_conv(layer, n: int):
    """A flax Conv's padding in lax's terms, and what it holds (jax_tconv's mode name).

    'CAUSAL' is the pair it is; 'CIRCULAR' and 'REFLECT' are flax's pairs
    (`flax_mode_pairs`) filled with wrapped or mirrored values.
    """
    padding = layer.padding
    if isinstance(padding, str):
        mode = padding.upper()
        if mode in _FLAX_MODES:
            sizes = _kernel_size(layer)
            dilation = maybe_broadcast(layer.kernel_dilation, len(sizes))
            return flax_mode_pairs(sizes, dilation), _FLAX_MODES[mode]
        if mode == "CAUSAL":
            if n != 1:
                raise unsupported("flax", layer, "has padding='CAUSAL', which flax defines "
                                  "for 1-D convolutions only")
            d = maybe_broadcast(layer.kernel_dilation, 1)[0]
            k = _kernel_size(layer)[0]
            return ((d * (k - 1), 0),), "zeros"
        return padding, "zeros"
    if isinstance(padding, int):
        return ((padding, padding),) * n, "zeros"
    return tuple(p if isinstance(p, int) else tuple(p) for p in padding), "zeros"


# flax Conv's padding strings that pad with values of the input -> jax_tconv's padding_mode.
_FLAX_MODES = {"CIRCULAR": "circular", "REFLECT": "reflect"}


def flax_mode_pairs(kernel_size, dilation) -> Pairs:
    """The padding flax's Conv gives 'CIRCULAR' and 'REFLECT': the dilated kernel's
    ``((kd - 1) // 2, kd // 2)``, ``kd = d*(k - 1) + 1``, whatever the strides."""
    return tuple(((d * (k - 1)) // 2, (d * (k - 1) + 1) // 2)
                 for k, d in zip(kernel_size, dilation))


def flax_conv_padding(geo: _common.ConvGeometry, layer) -> Any:
    """The `padding` of a flax Conv computing `geo` (the forward conv of a ConvTranspose).

    Flax pads with values other than zeros only through 'CIRCULAR' and
    'REFLECT', each with one fixed padding (`flax_mode_pairs`).
    """
    if geo.padding_mode == "zeros":
        return geo.padding
    flax_name = {v: k for k, v in _FLAX_MODES.items()}.get(geo.padding_mode)
    pairs = flax_mode_pairs(geo.kernel_size, geo.dilation)
    if flax_name is None or geo.padding != pairs:
        can = (f"flax's Conv pads with {geo.padding_mode!r} values only as "
               f"padding={flax_name!r}, whose padding here is {pairs}"
               if flax_name else f"flax's Conv has no {geo.padding_mode!r} padding")
        raise unsupported("jax_tconv", layer, f"has padding={geo.padding!r} with "
                          f"padding_mode={geo.padding_mode!r}, and {can}; take the adjoint "
                          f"of an Equinox ConvTranspose (equinox.nn.Conv pads with every "
                          f"mode) or use jax_tconv.conv(..., padding_mode=...)")
    return flax_name


def _kernel_size(layer) -> tuple[int, ...]:
    k = layer.kernel_size
    return (k,) if isinstance(k, int) else tuple(k)


def _flax_geometry(layer) -> _common.ConvGeometry:
    """Check that a flax Conv's linear part has an adjoint here, and normalise it."""
    k = _kernel_size(layer)
    n = len(k)
    if any(v != 1 for v in maybe_broadcast(layer.input_dilation, n)):
        raise unsupported("flax", layer, f"has input_dilation={layer.input_dilation!r}: a "
                          f"convolution with input dilation is itself a transposed "
                          f"convolution, whose adjoint is a strided conv; no jax_tconv layer "
                          f"takes it")
    if layer.mask is not None:
        raise unsupported("flax", layer, "has a mask: the adjoint would need it too, and "
                          "jax_tconv's ConvTranspose takes none; multiply it into the kernel")
    custom = layer.conv_general_dilated
    if custom is not None and custom is not lax.conv_general_dilated:
        raise unsupported("flax", layer, "runs a custom conv_general_dilated, whose adjoint "
                          "is unknown here")
    if getattr(layer, "preferred_element_type", None) is not None:
        raise unsupported("flax", layer, "sets preferred_element_type, which jax_tconv's "
                          "layers do not take")
    padding, mode = _padding_of_flax_conv(layer, n)
    return _common.conv_geometry("adjoint", f"flax {type(layer).__name__}", kernel_size=k,
                                 strides=maybe_broadcast(layer.strides, n),
                                 padding=padding, padding_mode=mode,
                                 dilation=maybe_broadcast(layer.kernel_dilation, n),
                                 groups=layer.feature_group_count)


def _zeros(key, shape, dtype=jnp.float32):
    """A placeholder initializer: the adjoint's kernel is replaced by the layer's."""
    del key
    return jnp.zeros(shape, dtype)


def _hermitian_kernel(kernel):
    """The kernel the adjoint reads: `kernel` itself if real, its conjugate if complex."""
    return jnp.conj(kernel) if jnp.iscomplexobj(kernel) else kernel


def _nnx_kernel(param: nnx.Param) -> nnx.Param:
    """The adjoint's kernel Param: `param` itself (shared) if real; if complex, a new
    Param (same metadata) holding the conjugate, which no longer tracks `param`."""
    if not jnp.iscomplexobj(param[...]):
        return param
    return cast(nnx.Param, param.replace(jnp.conj(param[...])))


def _check_one_conv(layer, jax_tconv_module) -> None:
    if isinstance(layer, jax_tconv_module.ResizeConv | jax_tconv_module.SubPixelConv):
        raise unsupported("jax_tconv", layer, NOT_ONE_CONV)


# ----------------------------------------------------------------------------
# nnx


def _nnx_adjoint(layer, use_bias: bool):
    if isinstance(layer, tnnx.ConvTranspose):
        return _nnx_conv(layer, use_bias)
    if isinstance(layer, nnx.Conv):
        return _nnx_transpose(layer, use_bias)
    if isinstance(layer, nnx.ConvTranspose):
        raise unsupported("flax", layer, "computes lax.conv_transpose, whose kernel is not a "
                          "forward conv's (unflipped, and its padding is the dilated input's); "
                          "convert it with jax_tconv.interop.from_flax(layer, api='nnx') and "
                          "take the adjoint of the result")
    _check_one_conv(layer, tnnx)
    raise TypeError(
        f"adjoint: expected an nnx convolution layer (flax.nnx.Conv or "
        f"jax_tconv.nn.nnx.ConvTranspose), got {type(layer).__name__}."
    )


def _nnx_transpose(conv, use_bias: bool) -> tnnx.ConvTranspose:
    """nnx.Conv -> the ConvTranspose holding the same kernel Param (its conjugate if complex)."""
    geo = _flax_geometry(conv)
    c_in, c_out = conv.in_features, conv.out_features
    out = tnnx.ConvTranspose(c_out, c_in, geo.kernel_size, strides=geo.strides,
                             padding=geo.padding, dilation=geo.dilation, groups=geo.groups,
                             padding_mode=geo.padding_mode,
                             use_bias=use_bias, kernel_init=_zeros, bias_init=_zeros,
                             dtype=conv.dtype, param_dtype=conv.param_dtype,
                             precision=conv.precision, rngs=nnx.Rngs(0))
    out.kernel = _nnx_kernel(conv.kernel)
    return out


def _nnx_conv(transpose: tnnx.ConvTranspose, use_bias: bool) -> nnx.Conv:
    """jax_tconv's ConvTranspose -> the nnx.Conv holding the same kernel Param (its
    conjugate if complex)."""
    geo = _common.transpose_geometry(transpose.config)
    out = nnx.Conv(transpose.out_features, transpose.in_features, geo.kernel_size,
                   strides=geo.strides, padding=flax_conv_padding(geo, transpose),
                   kernel_dilation=geo.dilation,
                   feature_group_count=geo.groups, use_bias=use_bias, kernel_init=_zeros,
                   bias_init=_zeros, dtype=transpose.config.dtype,
                   param_dtype=transpose.kernel[...].dtype, precision=transpose.config.precision,
                   rngs=nnx.Rngs(0))
    out.kernel = _nnx_kernel(transpose.kernel)
    return out


# ----------------------------------------------------------------------------
# linen: the adjoint is bound to the layer's kernel, inside the parent's scope.


def _linen_kernel(layer):
    if layer.scope is None:
        raise unsupported("linen", layer, "is not bound, so it holds no kernel yet: call "
                          "adjoint(self.conv) inside the parent module's method after "
                          "self.conv(x) has run, or pass layer.bind(variables)")
    params = layer.variables.get("params", {})
    if "kernel" not in params:
        raise unsupported("linen", layer, "has no kernel yet: call the layer once (it "
                          "creates its kernel on its first call) before taking its adjoint")
    return params["kernel"]


def _linen_adjoint(layer, use_bias: bool):
    if use_bias and isinstance(layer, nn.Conv | tlinen.ConvTranspose):
        raise unsupported("linen", layer, "gets an adjoint bound to its own variables, which "
                          "can own no new parameter, so use_bias=True is refused; add a bias "
                          "in the parent module (self.param)")
    if isinstance(layer, tlinen.ConvTranspose):
        kernel = _linen_kernel(layer)
        geo = _common.transpose_geometry(layer._config())
        conv = nn.Conv(kernel.shape[-1], geo.kernel_size, strides=geo.strides,
                       padding=flax_conv_padding(geo, layer), kernel_dilation=geo.dilation,
                       feature_group_count=geo.groups, use_bias=False, dtype=layer.dtype,
                       param_dtype=kernel.dtype, precision=layer.precision)
        return conv.bind({"params": {"kernel": _hermitian_kernel(kernel)}})
    if isinstance(layer, nn.Conv):
        geo = _flax_geometry(layer)
        kernel = _linen_kernel(layer)
        transpose = tlinen.ConvTranspose(kernel.shape[-2] * geo.groups, geo.kernel_size,
                                         strides=geo.strides, padding=geo.padding,
                                         dilation=geo.dilation, groups=geo.groups,
                                         padding_mode=geo.padding_mode,
                                         use_bias=False, dtype=layer.dtype,
                                         param_dtype=kernel.dtype, precision=layer.precision)
        return transpose.bind({"params": {"kernel": _hermitian_kernel(kernel)}})
    if isinstance(layer, nn.ConvTranspose):
        raise unsupported("flax", layer, "computes lax.conv_transpose, whose kernel is not a "
                          "forward conv's (unflipped, and its padding is the dilated input's); "
                          "convert it with jax_tconv.interop.from_flax and take the adjoint "
                          "of the result")
    _check_one_conv(layer, tlinen)
    raise TypeError(
        f"adjoint: expected a linen convolution layer (flax.linen.Conv or "
        f"jax_tconv.nn.linen.ConvTranspose), got {type(layer).__name__}."
    )
