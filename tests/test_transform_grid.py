"""Every JAX transformation x every method (and "tune"), against a reference written from
lax alone (the VJP of `lax.conv_general_dilated`) under the same transformation.

docs/contract.md's table of transformations is this grid. It is a covering set, not the
full product: transformation t and method m run configuration (t + m) mod len(CONFIGS),
so every transformation meets every configuration and every method too.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.experimental import checkify

import jax_tconv

METHODS = jax_tconv.METHODS + ("auto", "tune", "linen")   # "linen": the layer, its kernel w


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    x_shape: tuple          # in the layout of dn[2] (x is the forward conv's output)
    w_shape: tuple          # in the layout of dn[1]
    dn: tuple
    strides: tuple
    padding: tuple          # (lo, hi) per spatial dimension
    dilation: tuple
    groups: int = 1
    output_padding: tuple | None = None
    padding_mode: str = "zeros"

    def kwargs(self):
        kw = dict(strides=self.strides, padding=self.padding, dilation=self.dilation,
                  groups=self.groups, dimension_numbers=self.dn, padding_mode=self.padding_mode)
        if self.output_padding is not None:
            kw["output_padding"] = self.output_padding
        return kw

    def y_shape(self):
        """The output's shape: x's with spatial sizes (i - 1)s - lo - hi + d(k - 1) + 1 + op."""
        dn = lax.conv_dimension_numbers(self.x_shape, self.w_shape, self.dn)
        shape = list(self.x_shape)
        op = self.output_padding or (0,) * len(self.strides)
        for j, (s, (lo, hi), d) in enumerate(zip(self.strides, self.padding, self.dilation)):
            i, k = self.x_shape[dn.out_spec[2 + j]], self.w_shape[dn.rhs_spec[2 + j]]
            shape[dn.out_spec[2 + j]] = (i - 1) * s - lo - hi + d * (k - 1) + 1 + op[j]
        shape[dn.out_spec[1]] = self.w_shape[dn.rhs_spec[1]] * self.groups
        # x is laid out by the output spec, y by the input spec: the same letters here.
        assert self.dn[0] == self.dn[2]
        return tuple(shape)


CONFIGS = [
    Config("2d-nhwc-groups-op", (2, 3, 3, 4), (3, 3, 3, 4), ("NHWC", "HWIO", "NHWC"), (2, 2),
           ((1, 1), (1, 1)), (1, 1), groups=2, output_padding=(1, 0)),
    Config("1d-ncw-dilated", (2, 3, 4), (3, 2, 3), ("NCW", "OIW", "NCW"), (2,), ((2, 1),), (2,)),
    Config("3d-ndhwc", (1, 2, 2, 2, 2), (2, 2, 2, 3, 2), ("NDHWC", "DHWIO", "NDHWC"),
           (2, 2, 2), ((0, 0),) * 3, (1, 1, 1)),
    Config("2d-nchw-circular", (2, 2, 3, 3), (2, 3, 3, 3), ("NCHW", "OIHW", "NCHW"), (1, 1),
           ((1, 1), (1, 1)), (1, 1), padding_mode="circular"),
]


def reference(c: Config):
    """conv_transpose from lax alone: the VJP of (the mode's padding, then) the forward conv."""
    dn = lax.conv_dimension_numbers(c.y_shape(), c.w_shape, c.dn)

    def forward(y, w):
        pads = c.padding
        if c.padding_mode != "zeros":
            widths = [(0, 0)] * y.ndim
            for j, pair in enumerate(pads):
                widths[dn.lhs_spec[2 + j]] = pair
            y = jnp.pad(y, widths, mode="wrap")
            pads = ((0, 0),) * len(pads)
        return lax.conv_general_dilated(y, w, c.strides, pads, rhs_dilation=c.dilation,
                                        dimension_numbers=dn, feature_group_count=c.groups)

    def f(x, w):
        _, pullback = jax.vjp(lambda y: forward(y, w), jnp.zeros(c.y_shape(), x.dtype))
        return pullback(x)[0]

    return f


def function(c: Config, method: str):
    if method == "linen":
        return layer(c)
    return lambda x, w: jax_tconv.conv_transpose(x, w, method=method, **c.kwargs())


def layer(c: Config):
    """The linen ConvTranspose applied with kernel w (channels-last around it where the
    configuration is channels-first, as a model would move them)."""
    from jax_tconv.nn import linen

    n = len(c.strides)
    first = c.dn[0][1] == "C"
    module = linen.ConvTranspose(
        features=c.w_shape[1 if first else n] * c.groups, kernel_size=tuple(
            c.w_shape[2:] if first else c.w_shape[:n]), strides=c.strides, padding=c.padding,
        output_padding=c.output_padding or 0, dilation=c.dilation, groups=c.groups,
        use_bias=False, padding_mode=c.padding_mode)

    def f(x, w):
        if first:   # NC... / OI... -> N...C / ...IO
            x, w = jnp.moveaxis(x, -n - 1, -1), jnp.moveaxis(w, (0, 1), (-1, -2))
        y = module.apply({"params": {"kernel": w}}, x)
        return jnp.moveaxis(y, -1, -n - 1) if first else y

    return f


def loss(f):
    return lambda x, w: jnp.sum(jnp.sin(f(x, w)))


def _scan(f, x, w):
    def step(carry, xi):
        y = f(xi, w)
        return carry + jnp.sum(y), y
    return lax.scan(step, 0.0, jnp.stack([x, 2 * x]))


def _checkify(f, x, w):
    err, y = checkify.checkify(f, errors=checkify.float_checks)(x, w)
    err.throw()
    return y


def _export(f, x, w):
    from jax import export
    exp = export.deserialize(export.export(jax.jit(f))(x, w).serialize())
    return exp.call(x, w)


def _jet(f, x, w):
    return jax_tconv.jet(f, (x, w), ((jnp.cos(x), x), (jnp.cos(w), 0.5 * w)))


def _unbatched(f, x, w):
    """Each example without its batch axis (the reference, batched, runs the whole batch)."""
    return jnp.stack([f(x[i], w) for i in range(x.shape[0])])


def _pmap(f, x, w):
    return jax.pmap(f, in_axes=(0, None))(x[None], w)[0]


def _linear_transpose(f, x, w):
    y = jax.eval_shape(f, x, w)
    ct = jnp.cos(jnp.arange(np.prod(y.shape), dtype=y.dtype)).reshape(y.shape)
    return jax.linear_transpose(lambda x: f(x, w), x)(ct)


def _jacobians(f, x, w):
    return jax.jacfwd(f, argnums=1)(x, w), jax.jacrev(f, argnums=1)(x, w)


def _complex128(f, x, w):
    with jax.enable_x64(True):
        x = (x + 0.5j * x[::-1]).astype(np.complex128)
        w = (w - 0.25j * w[::-1]).astype(np.complex128)
        y = jax.jit(f)(x, w)
        assert y.dtype == jnp.complex128
        return np.asarray(y)


# name -> transform(f, x, w): a pytree of arrays, computed for the method and the reference.
TRANSFORMS = {
    "jit": lambda f, x, w: jax.jit(f)(x, w),
    "vmap-x": lambda f, x, w: jax.vmap(f, (0, None))(jnp.stack([x, -x]), w),
    "vmap-w": lambda f, x, w: jax.vmap(f, (None, 0))(x, jnp.stack([w, 2 * w])),
    "vmap-both": lambda f, x, w: jax.vmap(f)(jnp.stack([x, -x]), jnp.stack([w, 2 * w])),
    "grad": lambda f, x, w: jax.grad(loss(f), argnums=(0, 1))(x, w),
    "jacfwd=jacrev": _jacobians,
    "hessian": lambda f, x, w: jax.hessian(loss(f), argnums=1)(x, w),
    "linear_transpose": _linear_transpose,
    "checkify": _checkify,
    "remat": lambda f, x, w: jax.grad(jax.checkpoint(loss(f)), argnums=(0, 1))(x, w),
    "scan": _scan,
    "export": _export,
    "eval_shape": lambda f, x, w: jnp.zeros(jax.eval_shape(f, x, w).shape),
    "pmap": _pmap,
    "jet": _jet,
    "unbatched": _unbatched,
    "complex128": _complex128,
}
GRID = [(t, m, CONFIGS[(i + j) % len(CONFIGS)])
        for i, t in enumerate(TRANSFORMS) for j, m in enumerate(METHODS)]


@pytest.fixture(autouse=True)
def _tune_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JAX_TCONV_TUNE_CACHE",
                       str(tmp_path_factory.getbasetemp() / "grid-tune.json"))


@functools.lru_cache(maxsize=None)
def arrays(c: Config):
    rng = np.random.default_rng(len(c.name))
    return (rng.standard_normal(c.x_shape).astype(np.float32),
            rng.standard_normal(c.w_shape).astype(np.float32))


@pytest.mark.parametrize("transform,method,config", GRID,
                         ids=[f"{t}-{m}-{c.name}" for t, m, c in GRID])
def test_transformation(transform, method, config):
    if method == "linen":
        pytest.importorskip("flax")
    if transform == "export":
        pytest.importorskip("flatbuffers")
    x, w = arrays(config)
    if transform == "jacfwd=jacrev":
        fwd, rev = _jacobians(function(config, method), x, w)
        _, expected = _jacobians(reference(config), x, w)
        got = (fwd, rev)
        expected = (expected, expected)
    elif transform == "unbatched":
        n_axis = config.dn[0].index("N")
        got = jnp.moveaxis(_unbatched(function(config, method), jnp.moveaxis(x, n_axis, 0), w),
                           0, n_axis)
        expected = reference(config)(x, w)
    else:
        got = TRANSFORMS[transform](function(config, method), x, w)
        expected = TRANSFORMS[transform](reference(config), x, w)
    got, expected = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        scale = float(np.max(np.abs(b))) if b.size else 1.0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4,
                                   atol=1e-4 * (scale + 1))
