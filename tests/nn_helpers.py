"""NumPy references and a three-API harness (linen, nnx, Equinox) for the jax_tconv.nn tests.

The references share no code with jax_tconv.nn: explicit NumPy loops (and the
package's own NumPy scatter reference for the transposed convolution).
"""

from __future__ import annotations

import importlib.util
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jax_tconv.nn import linen as tlinen
from jax_tconv.nn import nnx as tnnx
from jax_tconv.reference import conv_transpose_reference

APIS = ("linen", "nnx")
#: Equinox is an optional extra: its cases are skipped (and say so) without it.
HAS_EQUINOX = importlib.util.find_spec("equinox") is not None
EQUINOX = pytest.param("equinox", marks=pytest.mark.skipif(
    not HAS_EQUINOX, reason="the equinox extra is not installed"))
#: The layer APIs one test body runs against; `Layer` speaks channels-last for all three.
LAYER_APIS = (*APIS, EQUINOX)


def per_dim(v, n):
    return tuple(v) if isinstance(v, tuple | list) else (v,) * n


def pairs(padding, n):
    return tuple(p if isinstance(p, tuple) else (p, p) for p in per_dim(padding, n))


def ref_conv_transpose(x, kernel, bias=None, *, strides=1, padding=0, output_padding=0,
                       dilation=1, groups=1):
    """Channels-last x ``(*B, *i, C_in)``, kernel ``(*k, C_out // g, C_in)``, via the scatter."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    n = kernel.ndim - 2
    batch = x.shape[: x.ndim - n - 1]
    xf = x.reshape(-1, *x.shape[x.ndim - n - 1 :])
    w_torch = np.transpose(kernel, (n + 1, n, *range(n)))  # (C_in, C_out // g, *k)
    y = conv_transpose_reference(
        np.moveaxis(xf, -1, 1), w_torch, strides=per_dim(strides, n),
        padding=pairs(padding, n), output_padding=per_dim(output_padding, n),
        dilation=per_dim(dilation, n), groups=groups)
    y = np.moveaxis(y, 1, -1)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return y.reshape(*batch, *y.shape[1:])


def ref_conv(x, w, pads, *, dilation=1, groups=1):
    """Stride-1 correlation by explicit taps: x ``(N, *i, C_in)``, w ``(*k, C_in // g, C_out)``.

    `pads` is one (lo, hi) per dimension; negative values crop.
    """
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n = w.ndim - 2
    d = per_dim(dilation, n)
    grow = [(0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in pads] + [(0, 0)]
    x = np.pad(x, grow)
    x = x[(slice(None),) + tuple(slice(max(-lo, 0), x.shape[1 + j] - max(-hi, 0))
                                 for j, (lo, hi) in enumerate(pads))]
    k, cin_g, c_out = w.shape[:n], w.shape[-2], w.shape[-1]
    cout_g = c_out // groups
    o = [x.shape[1 + j] - d[j] * (k[j] - 1) for j in range(n)]
    y = np.zeros((x.shape[0], *o, c_out))
    for t in itertools.product(*map(range, k)):
        window = x[(slice(None),) + tuple(slice(t[j] * d[j], t[j] * d[j] + o[j])
                                          for j in range(n))]
        for g in range(groups):
            y[..., g * cout_g:(g + 1) * cout_g] += (
                window[..., g * cin_g:(g + 1) * cin_g] @ w[t][:, g * cout_g:(g + 1) * cout_g])
    return y


def ref_pixel_shuffle(x, r):
    """PyTorch's order by index: ``out[b, .., h_j*r_j + a_j, .., c] = in[b, .., h, c*R + q]``."""
    x = np.asarray(x)
    n = len(r)
    big_r = int(np.prod(r))
    sp = x.shape[1:-1]
    c = x.shape[-1] // big_r
    out = np.zeros((x.shape[0], *(s * rj for s, rj in zip(sp, r)), c), x.dtype)
    for h in itertools.product(*map(range, sp)):
        for q, a in enumerate(itertools.product(*map(range, r))):
            pos = tuple(h[j] * r[j] + a[j] for j in range(n))
            out[(slice(None), *pos)] = x[(slice(None), *h)][..., q::big_r][..., :c]
    return out


def nearest(x, s):
    """Nearest-neighbour upsampling of channels-last x by integer factors s."""
    for j, sj in enumerate(s):
        x = np.repeat(x, sj, axis=1 + j)
    return x


def np_init(seed=0):
    """A standard-normal initializer drawn by NumPy: no per-shape JAX compilation."""

    def init(key, shape, dtype=np.float32):
        del key
        return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)

    return init


def np_normal(shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def to_equinox(kernel):
    """A channels-last kernel ``(*k, B, A)`` in Equinox's layout ``(A, B, *k)``."""
    n = kernel.ndim - 2
    return jnp.transpose(kernel, (n + 1, n, *range(n)))


def from_equinox(weight):
    """An Equinox weight ``(A, B, *k)`` as the channels-last kernel ``(*k, B, A)``."""
    n = weight.ndim - 2
    return jnp.transpose(weight, (*range(2, n + 2), 1, 0))


class Layer:
    """One layer in any of the three APIs: ``layer(x, **call_kwargs)``, ``params`` dict, grads.

    Speaks channels-last and Flax's names for all three: for Equinox, `params`
    holds the weight as the channels-last kernel (``(*k, B, A)`` for Equinox's
    ``(A, B, *k)``) and the bias flat, ``strides`` is passed as ``stride``, and
    `apply` moves the channels first and maps the layer over the batch axes.
    Kernel and bias default to NumPy normal draws in the channels-last layout
    (the same numbers in every API; tests run faster without a JAX random
    compilation per shape); pass kernel_init/bias_init to override.
    """

    def __init__(self, api, cls, in_features, features, kernel_size, *, seed=0, x=None,
                 **kwargs):
        self.api = api
        kwargs.setdefault("kernel_init", np_init(seed))
        if kwargs.get("use_bias", True):
            kwargs.setdefault("bias_init", np_init(seed + 1))
        if api == "linen":
            self.module = getattr(tlinen, cls)(features, kernel_size, **kwargs)
            self.variables = self.module.init(jax.random.key(seed), x)
        elif api == "equinox":
            self._init_equinox(cls, in_features, features, kernel_size, seed, kwargs)
        else:
            self.module = getattr(tnnx, cls)(in_features, features, kernel_size,
                                             rngs=nnx.Rngs(seed), **kwargs)

    def _init_equinox(self, cls, in_features, features, kernel_size, seed, kwargs):
        import equinox as eqx

        from jax_tconv.nn import equinox as teqx

        kernel_init, bias_init = kwargs.pop("kernel_init"), kwargs.pop("bias_init", None)
        if "strides" in kwargs:
            kwargs["stride"] = kwargs.pop("strides")

        def make():
            return getattr(teqx, cls)(len(kernel_size), in_features, features, kernel_size,
                                      key=jax.random.key(seed), **kwargs)

        # Built abstractly, then given the NumPy draws: no JAX random compilation per shape.
        shaped = eqx.filter_eval_shape(make)
        a, b, *k = shaped.weight.shape
        weight = to_equinox(kernel_init(None, (*k, b, a), jnp.float32))
        bias = None
        if shaped.bias is not None:
            bias = bias_init(None, (shaped.bias.shape[0],), jnp.float32).reshape(shaped.bias.shape)
        self.module = teqx.with_arrays(make, weight, bias)

    @property
    def params(self):
        if self.api == "linen":
            return dict(self.variables["params"])
        if self.api == "equinox":
            p = {"kernel": from_equinox(self.module.weight)}
            if self.module.bias is not None:
                p["bias"] = self.module.bias.reshape(-1)
            return p
        p = {"kernel": self.module.kernel[...]}
        if self.module.bias is not None:
            p["bias"] = self.module.bias[...]
        return p

    def apply(self, params, x, **kw):
        """A pure function of (params, x), for grads and jit."""
        if self.api == "linen":
            return self.module.apply({"params": params}, x, **kw)
        if self.api == "equinox":
            return self._apply_equinox(params, x, **kw)
        graphdef, state = nnx.split(self.module)
        state = jax.tree.map(lambda v: v, state)
        module = nnx.merge(graphdef, state)
        module.kernel[...] = params["kernel"]
        if "bias" in params:
            module.bias[...] = params["bias"]
        return module(x, **kw)

    def _apply_equinox(self, params, x, **kw):
        import equinox as eqx

        module = eqx.tree_at(lambda m: m.weight, self.module, to_equinox(params["kernel"]))
        if "bias" in params:
            module = eqx.tree_at(lambda m: m.bias, module,
                                 params["bias"].reshape(self.module.bias.shape))
        return _equinox_batched(module, jnp.asarray(x), kw)

    def __call__(self, x, **kw):
        return self.apply(self.params, x, **kw)


def _equinox_batched(module, x, kw):
    """An unbatched channels-first Equinox layer on channels-last ``(*B, *s, C)``, jitted
    (one compilation per test instead of one per eager operation under vmap)."""
    import equinox as eqx

    global _EQUINOX_BATCHED
    if _EQUINOX_BATCHED is None:
        def run(module, x, kw):
            n = module.num_spatial_dims
            batch = x.shape[: x.ndim - n - 1]
            xs = jnp.moveaxis(x.reshape(-1, *x.shape[x.ndim - n - 1:]), -1, 1)
            ys = jax.vmap(lambda xi: module(xi, **kw))(xs)
            return jnp.moveaxis(ys, 1, -1).reshape(*batch, *ys.shape[2:], ys.shape[1])

        _EQUINOX_BATCHED = eqx.filter_jit(run)
    return _EQUINOX_BATCHED(module, x, kw)


_EQUINOX_BATCHED = None


def cf(x):
    """Channels-last ``(N, *s, C)`` as Equinox's batch of ``(C, *s)``."""
    return jnp.moveaxis(x, -1, 1)


def cl(x):
    return jnp.moveaxis(x, 1, -1)
