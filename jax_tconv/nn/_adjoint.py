"""`adjoint(layer)`: the exact adjoint of a convolution layer, sharing its kernel.

A convolution ``C`` and a jax_tconv ConvTranspose ``Cᵀ`` read one kernel array
the same way: flax's ``Conv`` kernel ``(*k, C_in // groups, C_out)`` is the
forward conv's ``'...IO'`` kernel, which is exactly what `conv_transpose`
takes (`jax_tconv.nn._common`'s layout table), and Equinox's ``Conv.weight``
``(C_out, C_in // groups, *k)`` is the same kernel in ``'OI...'``, which is
the weight of `jax_tconv.nn.equinox.ConvTranspose`. So the adjoint needs no
flip and no copy: it is built on the layer's own kernel. A complex kernel's
adjoint is ``Cᴴ = conj(C)ᵀ``, so it reads the kernel's conjugate (a copy in
nnx, computed from the layer's array in linen and Equinox).

    flax.nnx.Conv                       <->  jax_tconv.nn.nnx.ConvTranspose (the same nnx.Param)
    flax.linen.Conv (bound)             <->  jax_tconv.nn.linen.ConvTranspose (bound to its kernel)
    equinox.nn.Conv                     <->  jax_tconv.nn.equinox.ConvTranspose (the same array)

This module imports no framework: it hands the layer to the front end that owns
it (`jax_tconv.nn._adjoint_flax` for Flax, `jax_tconv.nn.equinox` for Equinox),
imported only then.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["adjoint"]

# The front end that builds each framework's adjoints, by the framework's module
# whose Module class a layer is an instance of.
_FRONT_ENDS = (("equinox", "jax_tconv.nn.equinox"), ("flax.nnx", "jax_tconv.nn._adjoint_flax"),
               ("flax.linen", "jax_tconv.nn._adjoint_flax"))


def adjoint(layer: Any, *, use_bias: bool = False) -> Any:
    """The exact adjoint of a convolution layer's linear part, built on the same kernel.

    For a convolution layer computing ``C x + b``, returns a layer computing
    ``Cᴴ y`` (``+ c`` with ``use_bias=True``): ``<C x, y> == <x, Cᴴ y>`` for
    all ``x`` and ``y``, with the inner product ``<a, b> = sum(conj(a) * b)``
    (`jax.numpy.vdot`). For a real kernel ``Cᴴ = Cᵀ``, and the kernel is
    shared, not copied and not flipped, so training one trains the other:

    ========================================  ==================================================
    layer                                     adjoint
    ========================================  ==================================================
    ``flax.nnx.Conv``                         `jax_tconv.nn.nnx.ConvTranspose` holding the same
                                              ``nnx.Param`` (``adjoint.kernel is layer.kernel``)
    ``flax.linen.Conv``, bound                `jax_tconv.nn.linen.ConvTranspose` bound to the
                                              layer's kernel (call it inside the parent module)
    ``equinox.nn.Conv``                       `jax_tconv.nn.equinox.ConvTranspose` whose
                                              ``weight`` is the layer's ``weight`` array
    a jax_tconv ``ConvTranspose``             the forward conv: ``flax.nnx.Conv``, a bound
                                              ``flax.linen.Conv``, ``equinox.nn.Conv``
    ========================================  ==================================================

    So ``adjoint(adjoint(conv))`` computes ``conv``'s linear part. The adjoint
    keeps strides, padding, dilation (flax: ``kernel_dilation``), groups
    (flax: ``feature_group_count``), what the padding holds (flax's
    ``'CIRCULAR'``/``'REFLECT'``, Equinox's ``padding_mode``, jax_tconv's
    ``padding_mode``), ``dtype`` and ``precision``.

    Complex kernels. The adjoint is the Hermitian one, ``Cᴴ = conj(C)ᵀ``: the
    same layer type on the conjugate kernel ``conj(w)``, not the bilinear
    transpose ``Cᵀ`` that `jax_tconv.conv_transpose` and the ConvTranspose
    layers compute with ``w`` itself (PyTorch's definition, kept). The
    conjugate is a new array, so the kernel is no longer the same object
    (``adjoint(adjoint(conv))`` holds ``conj(conj(w))``, equal to ``w``):
    linen and Equinox compute it from the layer's kernel where ``adjoint`` is
    called, so inside the traced call the gradients of both uses still reach
    the one kernel; nnx's adjoint holds it in a new ``nnx.Param`` that an
    optimizer step on the layer does not change (for tied training, call
    ``adjoint(self.conv)`` inside ``__call__``, as with Equinox).

    Sizes. ``C`` maps several input sizes to one output size (strides > 1), so
    ``Cᵀ`` must be told which one it returns: the returned ConvTranspose's
    ``__call__`` takes ``output_shape=`` (pass the conv input's shape, e.g.
    ``x.shape``). Without it, the ConvTranspose's own rule applies: with integer
    or pair padding the smallest size, ``(i - 1)*s - lo - hi + d*(k - 1) + 1``;
    with ``padding='SAME'`` the size ``i * s`` (any ``o`` with ``ceil(o / s) == i``
    through `output_shape`), `jax_tconv.conv_transpose`'s SAME rule.

    Args:
      layer: one of the layers above. Linen: a bound module (inside the parent's
        method, after the layer has been called once, so its kernel exists; or
        ``layer.bind(variables)``). Equinox: for tied training call
        ``adjoint(self.conv)`` inside the module's ``__call__``, so that the
        gradients of both uses reach the one leaf.
      use_bias: give the adjoint a bias of its own (zeros; nnx and Equinox only:
        a linen adjoint is bound to the layer's variables and owns none).

    Returns:
      The adjoint layer, as in the table (on ``conj(w)`` for a complex kernel).

    Raises:
      ValueError: the layer's linear part has no adjoint here, with the reason:
        input dilation, a mask, a jax_tconv ConvTranspose whose ``padding_mode``
        flax's Conv cannot express (flax pads with other values only through
        ``'CIRCULAR'`` and ``'REFLECT'``, each with one fixed padding; Equinox
        has every mode), negative padding, Equinox's
        ``'SAME_LOWER'``, a custom convolution function or
        ``preferred_element_type``; Flax's and Equinox's own ConvTranspose
        (convert them with `jax_tconv.interop`); ResizeConv and SubPixelConv.
      TypeError: `layer` is not a convolution layer.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jax_tconv.nn import adjoint
      >>> conv = nnx.Conv(3, 8, (4, 4), strides=2, padding=1, rngs=nnx.Rngs(0))
      >>> up = adjoint(conv)
      >>> up.kernel is conv.kernel
      True
      >>> x = jnp.ones((1, 16, 16, 3))
      >>> up(conv(x)).shape
      (1, 16, 16, 3)
    """
    if not isinstance(use_bias, bool):
        raise TypeError(f"adjoint: use_bias must be a bool, got {use_bias!r}.")
    for framework, front_end in _FRONT_ENDS:
        module = sys.modules.get(framework)   # a layer of it exists only if it is imported
        if module is not None and isinstance(layer, module.Module):
            return importlib.import_module(front_end).adjoint_layer(layer, use_bias=use_bias)
    raise TypeError(
        f"adjoint: expected a convolution layer (flax.nnx.Conv, a bound flax.linen.Conv, "
        f"equinox.nn.Conv or a jax_tconv ConvTranspose), got {type(layer).__name__}."
    )
