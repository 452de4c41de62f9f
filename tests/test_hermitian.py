"""Complex kernels: `nn.adjoint` is the Hermitian adjoint ``Cᴴ``, `operator_norm` is ``σ_1``.

With the inner product ``<a, b> = sum(conj(a) * b)`` (`jnp.vdot`), the adjoint
of a complex convolution ``C`` is ``Cᴴ = conj(C)ᵀ``, not the bilinear transpose
``Cᵀ`` that `conv_transpose` computes (PyTorch's definition, kept). References:
the dense matrix ``C = conv_matrix(...)`` in NumPy (``C.conj().T @ g``, and
``numpy.linalg.svd``), which shares no code with the layers' adjoints.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nn_helpers import EQUINOX, cf, cl, from_equinox, to_equinox

import jax_tconv
from jax_tconv.nn import adjoint
from jax_tconv.nn import linen as tlinen
from jax_tconv.nn import nnx as tnnx

# (name, spatial input, C_in, C_out, kernel_size, forward conv kwargs, padding mode).
# With a mode, the padding is flax's for it ('CIRCULAR'/'REFLECT': `mode_pairs`).
CASES = [
    ("1d_circular_s2", (8,), 2, 3, (3,), dict(strides=2), "circular"),
    ("2d_s2_p1", (8, 8), 2, 3, (3, 3), dict(strides=2, padding=1), "zeros"),   # the issue's
    ("2d_reflect_dil_g2", (7, 6), 2, 4, (3, 2), dict(strides=(2, 1), dilation=(1, 2), groups=2),
     "reflect"),
    ("3d_pairs", (4, 3, 4), 2, 2, (2, 3, 2),
     dict(strides=(1, 2, 1), padding=((1, 0), (1, 1), (0, 0))), "zeros"),
]
FRONT_ENDS = ("nnx", "linen", EQUINOX)
DTYPES = (np.complex64, np.complex128)
TOL = {np.complex64: 1e-4, np.complex128: 1e-10}


def _grid():
    """Every front end x every case, each pair with one dtype: both dtypes for every front
    end and every case, in half the runs of the full product."""
    params = []
    for i, front_end in enumerate(FRONT_ENDS):
        name = getattr(front_end, "values", (front_end,))[0]
        for j, case in enumerate(CASES):
            dtype = DTYPES[(i + j) % 2]
            marks = getattr(front_end, "marks", ())
            params.append(pytest.param(name, case, dtype, marks=marks,
                                       id=f"{name}-{case[0]}-{np.dtype(dtype).name}"))
    return params


def mode_pairs(k, dilation):
    """flax's padding for 'CIRCULAR' and 'REFLECT': ``d*(k - 1)`` split, the odd one high."""
    return tuple((d * (kj - 1) // 2, d * (kj - 1) - d * (kj - 1) // 2)
                 for kj, d in zip(k, dilation))


def geometry(case):
    """The case's conv kwargs in jax_tconv's names (padding as pairs where a mode fills it)."""
    _, spatial, _, _, k, kw, mode = case
    n = len(k)
    kw = dict(kw)
    if mode != "zeros":
        d = kw.get("dilation", 1)
        kw["padding"] = mode_pairs(k, (d,) * n if isinstance(d, int) else d)
        kw["padding_mode"] = mode
    return kw


def crandn(shape, seed, dtype):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal(shape) + 1j * rng.standard_normal(shape), dtype)


def close(a, b, tol):
    a, b = np.asarray(a, np.complex128), np.asarray(b, np.complex128)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max())))


def dense(w, x_shape, kw):
    """The matrix ``C`` of the forward conv on one example, complex128."""
    return np.asarray(jax_tconv.conv_matrix(w, (1, *x_shape[1:]), **kw), np.complex128)


def flax_kwargs(case):
    _, _, _, _, _, kw, mode = case
    return dict(strides=kw.get("strides", 1),
                padding=mode.upper() if mode != "zeros" else kw.get("padding", 0),
                kernel_dilation=kw.get("dilation", 1), feature_group_count=kw.get("groups", 1))


def eqx_kwargs(case):
    kw = geometry(case)
    return dict(stride=kw.get("strides", 1), padding=kw.get("padding", 0),
                padding_mode=kw.get("padding_mode", "zeros").upper(),
                dilation=kw.get("dilation", 1), groups=kw.get("groups", 1))


class Tied(nn.Module):
    """linen: a Conv, its adjoint and the adjoint's adjoint, one kernel."""

    features: int
    kernel_size: tuple
    conv_kwargs: dict
    kernel: jax.Array

    @nn.compact
    def __call__(self, x, g):
        conv = nn.Conv(self.features, self.kernel_size, use_bias=False,
                       param_dtype=self.kernel.dtype, kernel_init=lambda *_: self.kernel,
                       **self.conv_kwargs)
        y = conv(x)
        up = adjoint(conv)
        return y, up(g, output_shape=x.shape[1:-1]), adjoint(up)(x)


def run(front_end, case, w, x, g):
    """``(C x, adjoint(C) g, adjoint(adjoint(C)) x)``, channels-last; `w` is C's kernel
    ``(*k, C_in // groups, C_out)``. Checks what each adjoint holds on the way."""
    _, _, c_in, c_out, k, _, _ = case
    conj = np.conj(np.asarray(w))
    if front_end == "nnx":
        conv = nnx.Conv(c_in, c_out, k, use_bias=False, param_dtype=w.dtype,
                        kernel_init=lambda *_: w, rngs=nnx.Rngs(0), **flax_kwargs(case))
        up = adjoint(conv)
        assert isinstance(up, tnnx.ConvTranspose) and up.kernel is not conv.kernel
        np.testing.assert_array_equal(up.kernel[...], conj)
        down = adjoint(up)
        assert isinstance(down, nnx.Conv)
        np.testing.assert_array_equal(down.kernel[...], w)
        return conv(x), up(g, output_shape=x.shape[1:-1]), down(x)
    if front_end == "linen":
        model = Tied(c_out, k, flax_kwargs(case), w)
        variables = model.init(jax.random.key(0), x, g)
        return model.apply(variables, x, g)
    import equinox as eqx

    from jax_tconv.nn import equinox as teqx
    weight = to_equinox(w)
    conv = teqx.with_arrays(lambda: eqx.nn.Conv(len(k), c_in, c_out, k, use_bias=False,
                                                key=jax.random.key(0), **eqx_kwargs(case)),
                            weight, None)
    up = adjoint(conv)     # complex weight: built without Equinox's (real) initialiser
    assert isinstance(up, teqx.ConvTranspose)
    np.testing.assert_array_equal(from_equinox(up.weight), conj)
    down = adjoint(up)
    assert isinstance(down, eqx.nn.Conv) and down.padding_mode == conv.padding_mode
    np.testing.assert_array_equal(down.weight, weight)

    @eqx.filter_jit
    def compute(conv, x, g):      # one program: eager vmapped ops compile one by one
        z = jax.vmap(lambda gi: adjoint(conv)(gi, output_shape=x.shape[1:-1]))(cf(g))
        return cl(jax.vmap(conv)(cf(x))), cl(z), cl(jax.vmap(adjoint(adjoint(conv)))(cf(x)))

    return compute(conv, x, g)


@pytest.mark.parametrize("front_end,case,dtype", _grid())
def test_adjoint_of_a_complex_conv_is_hermitian(front_end, case, dtype):
    _, spatial, c_in, c_out, k, _, _ = case
    kw = geometry(case)
    with jax.enable_x64(dtype == np.complex128):
        w = crandn((*k, c_in // kw.get("groups", 1), c_out), 3, dtype)
        x = crandn((1, *spatial, c_in), 1, dtype)
        y_shape = jax.eval_shape(lambda x: jax_tconv.conv(x, w, **kw), x).shape
        g = crandn(y_shape, 2, dtype)
        y, z, back = run(front_end, case, w, x, g)
        assert y.dtype == z.dtype == back.dtype == dtype and z.shape == x.shape
        c = dense(w, x.shape, kw)
        tol = TOL[dtype]
        close(y.ravel(), c @ np.ravel(x), tol)                 # the layer is C
        close(jnp.vdot(y, g), jnp.vdot(x, z), tol)             # <C x, g> == <x, Cᴴ g>
        close(z.ravel(), c.conj().T @ np.ravel(g), tol)        # Cᴴ g, by the dense matrix
        close(back, y, tol)                                    # adjoint(adjoint(C)) is C


@pytest.mark.parametrize("front_end,index,dtype", [
    ("nnx", 1, np.complex64), ("linen", 0, np.complex128),
    pytest.param(EQUINOX.values[0], 2, np.complex64, marks=EQUINOX.marks)])
def test_adjoint_of_a_complex_conv_transpose_is_the_conjugate_conv(front_end, index, dtype):
    """A jax_tconv ConvTranspose on ``w`` computes the bilinear ``Cᵀ``; its adjoint is
    ``(Cᵀ)ᴴ = conj(C)``, the forward conv on ``conj(w)``."""
    case = CASES[index]
    _, spatial, c_in, c_out, k, _, _ = case
    kw = geometry(case)
    with jax.enable_x64(dtype == np.complex128):
        w = crandn((*k, c_in // kw.get("groups", 1), c_out), 4, dtype)   # C's kernel
        x_shape = (1, *spatial, c_in)                                    # C's input
        y_shape = jax.eval_shape(lambda x: jax_tconv.conv(x, w, **kw),
                                 jax.ShapeDtypeStruct(x_shape, dtype)).shape
        g = crandn(y_shape, 1, dtype)        # the ConvTranspose's input
        x = crandn(x_shape, 2, dtype)        # its adjoint's input
        if front_end == "nnx":
            t = tnnx.ConvTranspose(c_out, c_in, k, use_bias=False, param_dtype=dtype,
                                   kernel_init=lambda *_: w, rngs=nnx.Rngs(0), **kw)
            tg, back = t(g, output_shape=spatial), adjoint(t)(x)
        elif front_end == "linen":
            class Model(nn.Module):
                @nn.compact
                def __call__(self, g, x):
                    t = tlinen.ConvTranspose(c_in, k, use_bias=False, param_dtype=dtype,
                                             kernel_init=lambda *_: w, **kw)
                    return t(g, output_shape=spatial), adjoint(t)(x)

            variables = Model().init(jax.random.key(0), g, x)
            tg, back = Model().apply(variables, g, x)
        else:
            from jax_tconv.nn import equinox as teqx
            eq_kw = {("stride" if a == "strides" else a): v for a, v in kw.items()}
            t = teqx.with_arrays(lambda: teqx.ConvTranspose(len(k), c_out, c_in, k,
                                                            use_bias=False,
                                                            key=jax.random.key(0), **eq_kw),
                                 to_equinox(w), None)
            conv = adjoint(t)
            tg = cl(jax.vmap(lambda gi: t(gi, output_shape=spatial))(cf(g)))
            back = cl(jax.vmap(conv)(cf(x)))
        c, tol = dense(w, x_shape, kw), TOL[dtype]
        close(tg.ravel(), c.T @ np.ravel(g), tol)              # the layer: bilinear Cᵀ
        close(jnp.vdot(tg, x), jnp.vdot(g, back), tol)         # <Cᵀ g, x> == <g, (Cᵀ)ᴴ x>
        close(back.ravel(), c.conj() @ np.ravel(x), tol)       # (Cᵀ)ᴴ = conj(C)


def test_the_bilinear_transpose_is_not_the_adjoint():
    """The identity the tests check can fail: on the issue's data, conv_transpose with the
    kernel itself (``Cᵀ``) misses it by far; with the conjugate kernel it holds."""
    _, spatial, c_in, c_out, k, kw, _ = CASES[1]
    w = crandn((*k, c_in, c_out), 3, np.complex64)
    x = crandn((1, *spatial, c_in), 1, np.complex64)
    y = jax_tconv.conv(x, w, **kw)
    g = crandn(y.shape, 2, np.complex64)
    lhs = complex(jnp.vdot(y, g))
    bilinear = jax_tconv.conv_transpose(g, w, output_shape=spatial, **kw)
    hermitian = jax_tconv.conv_transpose(g, jnp.conj(w), output_shape=spatial, **kw)
    assert abs(complex(jnp.vdot(x, bilinear)) - lhs) > 0.1 * abs(lhs)
    assert abs(complex(jnp.vdot(x, hermitian)) - lhs) < 1e-4 * abs(lhs)


def test_nnx_tied_complex_model_gradient_is_the_sum_of_both_uses():
    """nnx holds a complex adjoint's kernel in a new Param; called inside ``__call__``,
    the adjoint is computed from the layer's Param, and the gradient sums both uses."""
    w = crandn((3, 3, 2, 3), 5, np.complex64)
    x = crandn((1, 6, 6, 2), 6, np.complex64)
    kw = dict(strides=2, padding=1)

    class AutoEncoder(nnx.Module):
        def __init__(self):
            self.down = nnx.Conv(2, 3, (3, 3), use_bias=False, param_dtype=jnp.complex64,
                                 kernel_init=lambda *_: w, rngs=nnx.Rngs(0), **kw)

        def __call__(self, x):
            return adjoint(self.down)(jnp.tanh(self.down(x)), output_shape=x.shape[1:3])

    grads = nnx.grad(lambda m: jnp.sum(jnp.abs(m(x)) ** 2))(AutoEncoder())

    def reference(w1, w2):
        h = jnp.tanh(jax_tconv.conv(x, w1, **kw))
        return jnp.sum(jnp.abs(jax_tconv.conv_transpose(h, jnp.conj(w2), output_shape=(6, 6),
                                                        **kw)) ** 2)

    g1, g2 = jax.grad(reference, argnums=(0, 1))(w, w)
    assert float(jnp.abs(g1).max()) > 0 and float(jnp.abs(g2).max()) > 0
    close(grads["down"]["kernel"][...], g1 + g2, 1e-4)


# ----------------------------------------------------------------------------
# operator_norm: the largest singular value of the complex matrix C.

# (name, input shape, kernel shape, kwargs of conv, dtype): the three geometries,
# both dtypes among them.
NORMS = [
    ("1d_s2_p1", (1, 9, 2), (3, 2, 3), dict(strides=2, padding=1), np.complex128),
    ("2d_s2_p1", (1, 8, 8, 2), (3, 3, 2, 3), dict(strides=2, padding=1), np.complex64),
    ("3d_depthwise_nchw", (1, 2, 4, 3, 4), (2, 1, 2, 2, 2),
     dict(strides=(1, 2, 1), groups=2, dimension_numbers=("NCDHW", "OIDHW", "NCDHW")),
     np.complex128),
]


@pytest.mark.parametrize("name,input_shape,w_shape,kw,dtype", NORMS, ids=[c[0] for c in NORMS])
def test_operator_norm_of_a_complex_kernel_is_the_top_singular_value(name, input_shape,
                                                                     w_shape, kw, dtype):
    with jax.enable_x64(dtype == np.complex128):
        w = crandn(w_shape, len(name), dtype)
        c = np.asarray(jax_tconv.conv_matrix(w, input_shape, **kw), np.complex128)
        s = np.linalg.svd(c, compute_uv=False)
        r = jax_tconv.operator_norm(w, input_shape, **kw)
        assert r.value.dtype == np.finfo(dtype).dtype
        assert bool(r.converged) and int(r.iterations) < 500
        np.testing.assert_allclose(float(r.value), s[0], rtol=1e-4)
        assert float(r.value) <= s[0] * (1 + 1e-5)     # a lower bound, up to rounding
