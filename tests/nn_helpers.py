"""NumPy references and a two-API harness for the jax_tconv.nn tests.

The references share no code with jax_tconv.nn: explicit NumPy loops (and the
package's own NumPy scatter reference for the transposed convolution).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_tconv.nn import linen as tlinen
from jax_tconv.nn import nnx as tnnx
from jax_tconv.reference import conv_transpose_reference

APIS = ("linen", "nnx")


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


class Layer:
    """One layer in either Flax API: ``layer(x, **call_kwargs)``, ``params`` dict, grads.

    Kernel and bias default to NumPy normal draws (tests run faster without a
    JAX random compilation per shape); pass kernel_init/bias_init to override.
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
        else:
            self.module = getattr(tnnx, cls)(in_features, features, kernel_size,
                                             rngs=nnx.Rngs(seed), **kwargs)

    @property
    def params(self):
        if self.api == "linen":
            return dict(self.variables["params"])
        p = {"kernel": self.module.kernel[...]}
        if self.module.bias is not None:
            p["bias"] = self.module.bias[...]
        return p

    def apply(self, params, x, **kw):
        """A pure function of (params, x), for grads and jit."""
        if self.api == "linen":
            return self.module.apply({"params": params}, x, **kw)
        graphdef, state = nnx.split(self.module)
        state = jax.tree.map(lambda v: v, state)
        module = nnx.merge(graphdef, state)
        module.kernel[...] = params["kernel"]
        if "bias" in params:
            module.bias[...] = params["bias"]
        return module(x, **kw)

    def __call__(self, x, **kw):
        return self.apply(self.params, x, **kw)
