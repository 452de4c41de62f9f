""""auto" cannot be wrong about layout: one geometry in every `dimension_numbers`
permutation gets the same strategy and the same values and gradients.

The strategy is a pure function of the spec (`_strategy.auto`); on CPU it is decided on the
channels-last form, so the choice cannot depend on the memory order. Values are checked
against the channels-last call, itself checked against the NumPy reference elsewhere.
"""

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_tconv
from jax_tconv._spec import default_dimension_numbers

GEOMETRIES = [  # (N, C_in, spatial i, C_out // groups, kernel k, kwargs)
    (2, 4, (7,), 3, (4,), dict(strides=2, padding=1, groups=2)),
    (2, 6, (4, 5), 2, (3, 4),
     dict(strides=(2, 3), padding=((1, 0), (0, 2)), output_padding=(1, 0))),
    (1, 512, (4, 4), 4, (4, 4), dict(strides=2, padding=1)),   # the "products" phase form
    (1, 3, (3, 2, 4), 2, (2, 3, 2), dict(strides=2, padding=(0, 1, 0), dilation=(1, 1, 2))),
]


def _layouts(n, count, seed):
    """`count` random dimension_numbers for n spatial dims: the channels-last one first.

    lax numbers the spatial dimensions in the order of the kernel spec's letters, so
    the kernel spec keeps 'DHW' in order (O and I go anywhere) and per-dimension
    arguments keep their meaning; the input and output specs are any permutation.
    """
    rng = np.random.default_rng(seed)
    sp = default_dimension_numbers(n)[0][1:-1]
    out = [default_dimension_numbers(n)]
    perms = list(itertools.permutations("NC" + sp))
    kperms = [p for p in itertools.permutations("OI" + sp)
              if [c for c in p if c in sp] == list(sp)]
    while len(out) < count:
        lhs, o = ("".join(perms[j]) for j in rng.choice(len(perms), 2))
        rhs = "".join(kperms[rng.integers(len(kperms))])
        out.append((lhs, rhs, o))
    return out


def _arrange(a, spec_from, spec_to):
    return jnp.transpose(a, [spec_from.index(c) for c in spec_to])


@pytest.mark.parametrize("index", range(len(GEOMETRIES)))
def test_every_layout_same_strategy_values_and_gradients(index):
    batch, c_in, i, c_out_g, k, kw = GEOMETRIES[index]
    n = len(i)
    rng = np.random.default_rng(index)
    cl = default_dimension_numbers(n)
    x_cl = jnp.asarray(rng.normal(size=(batch, *i, c_in)), jnp.float32)
    w_cl = jnp.asarray(rng.normal(size=(*k, c_out_g, c_in)), jnp.float32)
    out_cl = jax_tconv.conv_transpose(x_cl, w_cl, **kw)
    ct_cl = jnp.asarray(rng.normal(size=out_cl.shape), jnp.float32)

    def loss(x, w, dn, ct):
        return jnp.sum(jax_tconv.conv_transpose(x, w, dimension_numbers=dn, **kw) * ct)

    ref_val, ref_grads = jax.value_and_grad(loss, (0, 1))(x_cl, w_cl, cl, ct_cl)
    choice = jax_tconv.auto_method(x_cl, w_cl, backend="cpu", **kw)
    for dn in _layouts(n, 4, index):
        lhs, rhs, out = dn
        x = _arrange(x_cl, cl[2], out)            # x is laid out by the output spec
        w = _arrange(w_cl, cl[1], rhs)
        ct = _arrange(ct_cl, cl[0], lhs)          # y by the input spec
        got = jax_tconv.auto_method(x, w, dimension_numbers=dn, backend="cpu", **kw)
        assert got.method == choice.method, (dn, got, choice)
        # "products" moves the channels itself, inside its matrix product.
        assert got.channels_last == (dn != cl and got.method != "products")
        val, (gx, gw) = jax.value_and_grad(loss, (0, 1))(x, w, dn, ct)
        scale = float(jnp.abs(ref_val)) + 1.0
        np.testing.assert_allclose(val, ref_val, rtol=1e-5, atol=1e-4 * scale)
        np.testing.assert_allclose(gx, _arrange(ref_grads[0], cl[2], out), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(gw, _arrange(ref_grads[1], cl[1], rhs), rtol=1e-4, atol=1e-3)


def test_nchw_runs_channels_last_and_says_so():
    x = jax.ShapeDtypeStruct((16, 64, 32, 32), jnp.float32)
    w = jax.ShapeDtypeStruct((64, 3, 4, 4), jnp.float32)
    choice = jax_tconv.auto_method(x, w, strides=2, padding=1, backend="cpu",
                                   dimension_numbers=("NCHW", "OIHW", "NCHW"))
    assert choice.channels_last and "channels-last" in choice.reason
    # The programs "auto" emits (forward and both gradients) hold no channels-first
    # convolution: every convolution's input is laid out [b, 0, 1, f] or [f, 0, 1, b].
    def loss(x, w):
        return jnp.sum(jax_tconv.conv_transpose(x, w, strides=2, padding=1,
                                                dimension_numbers=("NCHW", "OIHW", "NCHW")))

    for f in (jax.jit(loss), jax.jit(jax.grad(loss, (0, 1)))):
        layouts = re.findall(r"dim_numbers = \[([^\]]*)\]", f.lower(x, w).as_text())
        assert layouts and all(not lhs.startswith("b, f") for lhs in layouts), layouts
