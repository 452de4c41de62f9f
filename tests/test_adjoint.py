"""`jax_tconv.nn.adjoint`: the exact transpose of a conv layer on the same kernel, and back.

For flax.nnx.Conv, a bound flax.linen.Conv and equinox.nn.Conv (and jax_tconv's
ConvTranspose in each front end): the adjoint satisfies ``<C x, y> == <x, Cᵀ y>``,
equals ``jax.vjp`` of the conv's linear part, shares the kernel (an optimizer
step on one is seen by the other; a tied model's gradient is the sum of both
uses), and ``adjoint(adjoint(conv))`` computes the conv again. Real kernels here;
complex ones (the adjoint is then ``Cᴴ``, on the conjugate kernel) in test_hermitian.py.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from nn_helpers import EQUINOX, HAS_EQUINOX, cf, cl, np_init, np_normal

import jax_tconv
from jax_tconv.nn import adjoint
from jax_tconv.nn import linen as tlinen
from jax_tconv.nn import nnx as tnnx

FRONT_ENDS = ("nnx", "linen", EQUINOX)

# (name, spatial input, C_in, C_out, kernel_size, forward conv kwargs in jax_tconv's names)
CONVS = [
    ("1d_s2_p1", (9,), 2, 4, (3,), dict(strides=2, padding=1)),
    ("1d_s3_dil2_g2_valid", (12,), 4, 2, (3,), dict(strides=3, padding="VALID", dilation=2,
                                                    groups=2)),
    ("2d_same_s2_odd", (7, 8), 3, 2, (3, 3), dict(strides=2, padding="SAME")),
    ("2d_pairs_dil_g2", (6, 7), 4, 6, (3, 2), dict(strides=(2, 1), padding=((1, 0), (2, 1)),
                                                   dilation=(1, 2), groups=2)),
    ("3d_per_dim", (4, 5, 4), 2, 2, (2, 3, 2), dict(strides=(1, 2, 2), padding=(0, 1, 1))),
    # Padding that holds values of the input: flax's 'CIRCULAR'/'REFLECT' (Equinox:
    # padding_mode with flax's padding, `mode_pairs`).
    ("2d_circular_s2_dil", (8, 9), 2, 3, (3, 4), dict(strides=2, padding="CIRCULAR",
                                                      dilation=(1, 2))),
    ("1d_reflect_s3_g2", (10,), 4, 2, (4,), dict(strides=3, padding="REFLECT", groups=2)),
]
IDS = [c[0] for c in CONVS]


def mode_pairs(k, dilation):
    """flax's padding for 'CIRCULAR' and 'REFLECT': ``d*(k - 1)`` split, the odd one high."""
    dilation = (dilation,) * len(k) if isinstance(dilation, int) else dilation
    return tuple((d * (kj - 1) // 2, d * (kj - 1) - d * (kj - 1) // 2)
                 for kj, d in zip(k, dilation))


def close(a, b, tol=2e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


def flax_kwargs(kw):
    return dict(strides=kw.get("strides", 1), padding=kw.get("padding", 0),
                kernel_dilation=kw.get("dilation", 1), feature_group_count=kw.get("groups", 1))


def eqx_kwargs(kw, k):
    padding, mode = kw.get("padding", 0), "ZEROS"
    if padding in ("CIRCULAR", "REFLECT"):
        padding, mode = mode_pairs(k, kw.get("dilation", 1)), padding
    return dict(stride=kw.get("strides", 1), padding=padding, padding_mode=mode,
                dilation=kw.get("dilation", 1), groups=kw.get("groups", 1))


class Tied(nn.Module):
    """linen: a Conv, its adjoint and the adjoint's adjoint, one kernel."""

    features: int
    kernel_size: tuple
    conv_kwargs: dict

    @nn.compact
    def __call__(self, x, g):
        conv = nn.Conv(self.features, self.kernel_size, use_bias=False,
                       kernel_init=np_init(3), **self.conv_kwargs)
        y = conv(x)
        up = adjoint(conv)
        return y, up(g, output_shape=x.shape[1:-1]), adjoint(up)(x)


def run(front_end, k, c_in, c_out, kw, x, g):
    """``(C x, Cᵀ g, adjoint(adjoint(conv))(x), vjp of C at g)``, channels-last arrays."""
    if front_end == "nnx":
        conv = nnx.Conv(c_in, c_out, k, use_bias=False, kernel_init=np_init(3),
                        rngs=nnx.Rngs(0), **flax_kwargs(kw))
        up = adjoint(conv)
        assert isinstance(up, tnnx.ConvTranspose) and up.kernel is conv.kernel
        down = adjoint(up)
        assert isinstance(down, nnx.Conv) and down.kernel is conv.kernel
        y, pullback = jax.vjp(conv, x)
        return y, up(g, output_shape=x.shape[1:-1]), down(x), pullback(g)[0]
    if front_end == "linen":
        model = Tied(c_out, k, flax_kwargs(kw))
        variables = model.init(jax.random.key(0), x, g)
        assert jax.tree.map(jnp.shape, variables) == {
            "params": {"Conv_0": {"kernel": (*k, c_in // kw.get("groups", 1), c_out)}}}
        y, z, back = model.apply(variables, x, g)
        _, pullback = jax.vjp(lambda x: model.apply(variables, x, g)[0], x)
        return y, z, back, pullback(g)[0]
    import equinox as eqx

    from jax_tconv.nn import equinox as teqx
    w = np_init(3)(None, (c_out, c_in // kw.get("groups", 1), *k))
    conv = teqx.with_arrays(lambda: eqx.nn.Conv(len(k), c_in, c_out, k, use_bias=False,
                                                key=jax.random.key(0), **eqx_kwargs(kw, k)),
                            w, None)
    up = adjoint(conv)
    assert isinstance(up, teqx.ConvTranspose) and up.weight is conv.weight
    down = adjoint(up)
    assert isinstance(down, eqx.nn.Conv) and down.weight is conv.weight

    @eqx.filter_jit
    def compute(conv, x, g):      # one program: eager vmapped ops compile one by one
        c = jax.vmap(conv)
        y, pullback = jax.vjp(c, cf(x))
        z = jax.vmap(lambda gi: adjoint(conv)(gi, output_shape=x.shape[1:-1]))(cf(g))
        back = jax.vmap(adjoint(adjoint(conv)))(cf(x))
        return cl(y), cl(z), cl(back), cl(pullback(cf(g))[0])

    return compute(conv, x, g)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
@pytest.mark.parametrize("index", range(len(CONVS)), ids=IDS)
def test_adjoint_of_a_conv_is_its_transpose(front_end, index):
    _, spatial, c_in, c_out, k, kw = CONVS[index]
    x = np_normal((2, *spatial, c_in), 1)
    if kw.get("padding") in ("CIRCULAR", "REFLECT"):   # the same shape as with zeros
        kw = dict(kw, padding=mode_pairs(k, kw.get("dilation", 1)))
    y_shape = jax.eval_shape(lambda x, w: jax_tconv.conv(x, w, **kw), x,
                             jax.ShapeDtypeStruct((*k, c_in // kw.get("groups", 1), c_out),
                                                  jnp.float32)).shape
    g = np_normal(y_shape, 2)
    y, z, back, vjp = run(front_end, k, c_in, c_out, kw, x, g)
    assert y.shape == g.shape and z.shape == x.shape
    close(jnp.vdot(y, g), jnp.vdot(x, z), 1e-4)       # <C x, g> == <x, Cᵀ g>
    close(z, vjp)                                      # Cᵀ is the VJP of C
    close(back, y)                                     # adjoint(adjoint(conv)) is conv


# A jax_tconv ConvTranspose first: its adjoint is the forward conv C (output padding
# included: with d > s it trims the forward conv's padding, as PyTorch does).
TRANSPOSES = [
    ("2d_s2_p1_op1", (4, 3), 3, 2, (3, 3), dict(strides=2, padding=1, output_padding=1)),
    ("1d_d2_op1", (5,), 2, 2, (3,), dict(strides=1, dilation=2, output_padding=1)),
    ("2d_same_g2", (3, 4), 2, 4, (4, 3), dict(strides=(2, 3), padding="same", groups=2)),
    # flax's 'CIRCULAR' padding for k (3, 4): its adjoint is a flax Conv with that string.
    ("2d_circular_s2", (4, 5), 2, 3, (3, 4), dict(strides=2, padding=((1, 1), (1, 2)),
                                                  padding_mode="circular")),
]


@pytest.mark.parametrize("front_end", FRONT_ENDS)
@pytest.mark.parametrize("name,spatial,c_in,c_out,k,kw", TRANSPOSES,
                         ids=[t[0] for t in TRANSPOSES])
def test_adjoint_of_a_conv_transpose_is_the_conv(front_end, name, spatial, c_in, c_out, k, kw):
    x = np_normal((2, *spatial, c_in), 1)
    if front_end == "nnx":
        t = tnnx.ConvTranspose(c_in, c_out, k, use_bias=False, kernel_init=np_init(4),
                               rngs=nnx.Rngs(0), **kw)
        conv = adjoint(t)
        assert isinstance(conv, nnx.Conv) and conv.kernel is t.kernel
        y, pullback = jax.vjp(t, x)
        g = np_normal(y.shape, 2)
        cg = conv(g)
    elif front_end == "linen":
        class Model(nn.Module):
            @nn.compact
            def __call__(self, x, g):
                t = tlinen.ConvTranspose(c_out, k, use_bias=False, kernel_init=np_init(4), **kw)
                return t(x), adjoint(t)(g)

        model = Model()
        y_shape = jax.eval_shape(lambda x: tlinen.ConvTranspose(c_out, k, **kw).init_with_output(
            jax.random.key(0), x)[0], x).shape
        g = np_normal(y_shape, 2)
        variables = model.init(jax.random.key(0), x, g)
        y, cg = model.apply(variables, x, g)
        _, pullback = jax.vjp(lambda x: model.apply(variables, x, g)[0], x)
    else:
        import equinox as eqx

        from jax_tconv.nn import equinox as teqx
        eq_kw = {("stride" if a == "strides" else a): v for a, v in kw.items()}
        w = np_init(4)(None, (c_in, c_out // kw.get("groups", 1), *k))
        t = teqx.with_arrays(lambda: teqx.ConvTranspose(len(k), c_in, c_out, k, use_bias=False,
                                                        key=jax.random.key(0), **eq_kw), w, None)
        conv = adjoint(t)
        assert isinstance(conv, eqx.nn.Conv) and conv.weight is t.weight

        @jax.jit
        def compute(x):
            y, pb = jax.vjp(jax.vmap(t), cf(x))
            g = np_normal(y.shape, 2)
            return cl(y), g, cl(jax.vmap(adjoint(t))(g)), cl(pb(g)[0])

        y, g_cf, cg, vjp = compute(x)
        g = cl(g_cf)
        pullback = lambda g: (vjp,)  # noqa: E731
    assert cg.shape == x.shape
    close(jnp.vdot(y, g), jnp.vdot(x, cg), 1e-4)
    close(cg, pullback(g)[0])


def test_output_size_without_output_shape():
    """Explicit padding: the smallest size; 'SAME': input * stride (conv_transpose's rules)."""
    conv = nnx.Conv(1, 1, (3,), strides=2, padding=1, rngs=nnx.Rngs(0))
    assert adjoint(conv)(jnp.ones((1, 4, 1))).shape == (1, 7, 1)       # (4 - 1)*2 - 2 + 3
    assert adjoint(conv)(jnp.ones((1, 4, 1)), output_shape=(8,)).shape == (1, 8, 1)
    same = nnx.Conv(1, 1, (3,), strides=2, padding="SAME", rngs=nnx.Rngs(0))
    assert adjoint(same)(jnp.ones((1, 4, 1))).shape == (1, 8, 1)
    assert adjoint(same)(jnp.ones((1, 4, 1)), output_shape=(7,)).shape == (1, 7, 1)


def test_causal_padding_and_bias():
    conv = nnx.Conv(2, 3, (3,), kernel_dilation=2, padding="CAUSAL", use_bias=False,
                    rngs=nnx.Rngs(0))
    up = adjoint(conv, use_bias=True)
    assert up.config.padding == ((4, 0),) and up.bias.shape == (2,)
    assert float(jnp.abs(up.bias[...]).max()) == 0
    x, g = np_normal((1, 6, 2), 1), np_normal((1, 6, 3), 2)
    close(jnp.vdot(conv(x), g), jnp.vdot(x, up(g)), 1e-4)


# ----------------------------------------------------------------------------
# One kernel, two layers: training one trains the other.


def test_nnx_weight_sharing_survives_an_optimizer_step():
    class AutoEncoder(nnx.Module):
        def __init__(self):
            self.down = nnx.Conv(1, 4, (4, 4), strides=2, padding=1, rngs=nnx.Rngs(0))
            self.up = adjoint(self.down)

        def __call__(self, x):
            return self.up(jax.nn.relu(self.down(x)), output_shape=x.shape[1:3])

    model = AutoEncoder()
    params = nnx.state(model, nnx.Param)
    assert len(jax.tree.leaves(params)) == 2          # one kernel, one bias: nothing duplicated
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    x = np_normal((2, 8, 8, 1), 1)

    @nnx.jit
    def step(model, optimizer, x):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - x) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    before = model.down.kernel[...]
    losses = [float(step(model, optimizer, x)) for _ in range(3)]
    assert model.up.kernel is model.down.kernel
    after = model.up.kernel[...]
    assert float(jnp.abs(after - before).max()) > 1e-3      # the step moved the shared kernel
    np.testing.assert_array_equal(after, model.down.kernel[...])
    assert losses[-1] < losses[0]


def _tied_gradient_reference(kernel_cl, x_cl, conv_kw):
    """d/dw of sum((Cᵀ relu(C x))²) where w feeds C and Cᵀ: the two uses, summed."""
    def loss(w1, w2):
        h = jax.nn.relu(jax_tconv.conv(x_cl, w1, **conv_kw))
        return jnp.sum(jax_tconv.conv_transpose(h, w2, output_shape=x_cl.shape[1:-1],
                                                **conv_kw) ** 2)

    g1, g2 = jax.grad(loss, argnums=(0, 1))(kernel_cl, kernel_cl)
    assert float(jnp.abs(g1).max()) > 0 and float(jnp.abs(g2).max()) > 0
    return g1 + g2


def test_linen_tied_model_gradient_is_the_sum_of_both_uses():
    class AutoEncoder(nn.Module):
        @nn.compact
        def __call__(self, x):
            down = nn.Conv(3, (3, 3), strides=2, padding=1, use_bias=False)
            h = jax.nn.relu(down(x))      # first: the call creates the kernel
            return adjoint(down)(h, output_shape=x.shape[1:3])

    model, x = AutoEncoder(), np_normal((2, 7, 6, 2), 1)
    variables = model.init(jax.random.key(0), x)
    grads = jax.grad(lambda v: jnp.sum(model.apply(v, x) ** 2))(variables)
    kernel = variables["params"]["Conv_0"]["kernel"]
    close(grads["params"]["Conv_0"]["kernel"],
          _tied_gradient_reference(kernel, x, dict(strides=2, padding=1)), 1e-4)


@pytest.mark.skipif(not HAS_EQUINOX, reason="the equinox extra is not installed")
def test_equinox_tied_model_gradient_is_the_sum_of_both_uses():
    import equinox as eqx

    class AutoEncoder(eqx.Module):
        conv: eqx.nn.Conv

        def __call__(self, x):          # one example (C, H, W)
            return adjoint(self.conv)(jax.nn.relu(self.conv(x)), output_shape=x.shape[1:])

    model = AutoEncoder(eqx.nn.Conv(2, 2, 3, 3, stride=2, padding=1, use_bias=False,
                                    key=jax.random.key(0)))
    x = np_normal((2, 7, 6, 2), 1)

    @eqx.filter_jit
    @eqx.filter_grad
    def grad(model, x):
        return jnp.sum(jax.vmap(model)(x) ** 2)

    g = grad(model, cf(x))
    kernel_cl = jnp.transpose(model.conv.weight, (2, 3, 1, 0))   # (O, I, kH, kW) -> (kH, kW, I, O)
    expected = _tied_gradient_reference(kernel_cl, x, dict(strides=2, padding=1))
    close(jnp.transpose(g.conv.weight, (2, 3, 1, 0)), expected, 1e-4)


# ----------------------------------------------------------------------------
# What has no adjoint here says why.


def _nnx_conv(**kw):
    kw.setdefault("kernel_init", np_init(0))
    return nnx.Conv(2, 2, kw.pop("k", (3,)), rngs=nnx.Rngs(0), **kw)


@pytest.mark.parametrize("kw,match", [
    (dict(padding="CAUSAL", k=(3, 3)), r"adjoint: flax Conv has padding='CAUSAL', which flax "
                                       r"defines for 1-D convolutions only"),
    (dict(input_dilation=2), r"adjoint: flax Conv has input_dilation=2: a convolution with "
                             r"input dilation is itself a transposed convolution"),
    (dict(mask=jnp.ones((3, 2, 2))), r"adjoint: flax Conv has a mask"),
    (dict(conv_general_dilated=lambda *a, **k: None), r"adjoint: flax Conv runs a custom "
                                                       r"conv_general_dilated"),
    (dict(preferred_element_type=jnp.float32), r"adjoint: flax Conv sets "
                                               r"preferred_element_type"),
    (dict(padding=((1, -1),)), r"adjoint: flax Conv has negative padding \(\(1, -1\),\) \(lax "
                               r"crops the input\)"),
])
def test_nnx_conv_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        adjoint(_nnx_conv(**kw))


def test_other_layer_errors():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match=r"adjoint: flax ConvTranspose computes "
                                         r"lax.conv_transpose.*interop.from_flax\(layer, "
                                         r"api='nnx'\)"):
        adjoint(nnx.ConvTranspose(2, 2, (3,), kernel_init=np_init(0), rngs=rngs))
    with pytest.raises(ValueError, match=r"adjoint: jax_tconv ResizeConv is a resize or a "
                                         r"depth-to-space composed with a convolution"):
        adjoint(tnnx.ResizeConv(2, 2, (3,), kernel_init=np_init(0), rngs=rngs))
    with pytest.raises(ValueError, match=r"adjoint: jax_tconv SubPixelConv is a resize"):
        adjoint(tnnx.SubPixelConv(2, 2, (3,), kernel_init=np_init(0), rngs=rngs))
    with pytest.raises(TypeError, match=r"adjoint: expected an nnx convolution layer "
                                        r"\(flax.nnx.Conv or jax_tconv.nn.nnx.ConvTranspose\), "
                                        r"got Linear"):
        adjoint(nnx.Linear(2, 2, kernel_init=np_init(0), rngs=rngs))
    with pytest.raises(TypeError, match=r"adjoint: expected a convolution layer .*got ndarray"):
        adjoint(np.ones((3, 3, 1, 1)))
    with pytest.raises(TypeError, match=r"adjoint: use_bias must be a bool, got 1"):
        adjoint(_nnx_conv(), use_bias=1)


def test_padding_modes_flax_cannot_express():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match=r"adjoint: jax_tconv ConvTranspose has padding=\(\(1, "
                                         r"1\),\) with padding_mode='replicate', and flax's Conv "
                                         r"has no 'replicate' padding; take the adjoint of an "
                                         r"Equinox ConvTranspose"):
        adjoint(tnnx.ConvTranspose(2, 2, (3,), padding=1, padding_mode="replicate",
                                   kernel_init=np_init(0), rngs=rngs))
    with pytest.raises(ValueError, match=r"flax's Conv pads with 'circular' values only as "
                                         r"padding='CIRCULAR', whose padding here is "
                                         r"\(\(1, 1\),\)"):
        adjoint(tnnx.ConvTranspose(2, 2, (3,), padding=((2, 0),), padding_mode="circular",
                                   kernel_init=np_init(0), rngs=rngs))


@pytest.mark.skipif(not HAS_EQUINOX, reason="the equinox extra is not installed")
@pytest.mark.parametrize("mode", ["replicate", "reflect"])
def test_equinox_adjoint_keeps_any_padding_mode(mode):
    """Equinox pads with every mode and any padding, both ways."""
    import equinox as eqx

    from jax_tconv.nn import equinox as teqx
    w = np_init(5)(None, (3, 2, 3, 4))
    conv = teqx.with_arrays(lambda: eqx.nn.Conv(2, 2, 3, (3, 4), stride=2, padding=((2, 1), (1, 3)),
                                                padding_mode=mode.upper(), use_bias=False,
                                                key=jax.random.key(0)), w, None)
    up = adjoint(conv)
    assert isinstance(up, teqx.ConvTranspose) and up.weight is conv.weight
    down = adjoint(up)
    assert down.padding_mode == mode.upper() and down.weight is conv.weight
    x = np_normal((2, 9, 10), 1)
    y, pullback = jax.vjp(conv, x)
    g = np_normal(y.shape, 2)
    z = up(g, output_shape=x.shape[1:])
    close(jnp.vdot(y, g), jnp.vdot(x, z), 1e-4)
    close(z, pullback(g)[0])
    close(down(x), y)


def test_linen_errors():
    with pytest.raises(ValueError, match=r"adjoint: linen Conv is not bound, so it holds no "
                                         r"kernel yet: call adjoint\(self.conv\) inside"):
        adjoint(nn.Conv(2, (3,)))

    class Early(nn.Module):
        @nn.compact
        def __call__(self, x):
            conv = nn.Conv(2, (3,))
            return adjoint(conv)(x)

    with pytest.raises(ValueError, match=r"adjoint: linen Conv has no kernel yet: call the "
                                         r"layer once"):
        Early().init(jax.random.key(0), jnp.ones((1, 4, 2)))
    conv = nn.Conv(2, (3,)).bind({"params": {"kernel": jnp.ones((3, 2, 2)),
                                             "bias": jnp.zeros(2)}})
    assert isinstance(adjoint(conv), tlinen.ConvTranspose)
    with pytest.raises(ValueError, match=r"adjoint: linen Conv gets an adjoint bound to its own "
                                         r"variables, which can own no new parameter"):
        adjoint(conv, use_bias=True)
    theirs = nn.ConvTranspose(2, (3,)).bind({"params": {"kernel": jnp.ones((3, 2, 2))}})
    with pytest.raises(ValueError, match=r"adjoint: flax ConvTranspose computes "
                                         r"lax.conv_transpose"):
        adjoint(theirs)
    with pytest.raises(TypeError, match=r"adjoint: expected a linen convolution layer"):
        adjoint(nn.Dense(2))


@pytest.mark.skipif(not HAS_EQUINOX, reason="the equinox extra is not installed")
def test_equinox_errors():
    import equinox as eqx

    from jax_tconv.nn import equinox as teqx
    key = jax.random.key(0)
    shaped = eqx.filter_eval_shape      # adjoint reads the layers' configuration: no draws
    with pytest.raises(ValueError, match=r"adjoint: equinox Conv has padding='SAME_LOWER' \(the "
                                         r"odd padding at the start\)"):
        adjoint(shaped(eqx.nn.Conv, 1, 2, 2, 3, padding="SAME_LOWER", key=key))
    with pytest.raises(ValueError, match=r"adjoint: equinox Conv has negative padding"):
        adjoint(shaped(eqx.nn.Conv, 1, 2, 2, 3, padding=-1, key=key))
    with pytest.raises(ValueError, match=r"adjoint: equinox ConvTranspose correlates the "
                                         r"stride-dilated input with its weight unflipped.*"
                                         r"interop.from_equinox"):
        adjoint(shaped(eqx.nn.ConvTranspose, 1, 2, 2, 3, key=key))
    with pytest.raises(ValueError, match=r"adjoint: jax_tconv ResizeConv is a resize"):
        adjoint(shaped(teqx.ResizeConv, 1, 2, 2, 3, key=key))
    with pytest.raises(TypeError, match=r"adjoint: expected an Equinox convolution layer "
                                        r"\(equinox.nn.Conv or jax_tconv.nn.equinox."
                                        r"ConvTranspose\), got Linear"):
        adjoint(shaped(eqx.nn.Linear, 2, 2, key=key))
    # A bias of its own, on request.
    up = adjoint(shaped(eqx.nn.Conv, 1, 2, 3, 3, key=key), use_bias=True)
    assert up.bias.shape == (2, 1) and float(jnp.abs(up.bias).max()) == 0
