"""PyTorch modules in one call: `interop.from_torch_module` and `interop.to_torch_module`.

Every configuration of tests/golden/torch_golden.npz (tests/make_golden.py lists them)
becomes a live ``torch.nn.ConvTranspose{1,2,3}d`` with seeded random weights. The layer
converted from it must compute what PyTorch computes on the same input (PyTorch's NCHW
against the layer's own layout: channels last for linen and nnx, unbatched channels
first for Equinox), and the layer converted back must be the module again: same class,
configuration, dtype and weights, bit for bit.

Each configuration goes through one front end, linen, nnx and Equinox in turn over the
sorted names: every configuration and every front end is covered at one compilation per
configuration. `test_the_crossing_covers_every_front_end` checks that each front end
still sees every rank, groups, depthwise, dilation, output padding and a module without
bias.

Needs torch (CI's Python 3.13 leg has none, and skips this module).
"""

from __future__ import annotations

import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch module conversions need torch")
eqx = pytest.importorskip("equinox", reason="the equinox extra is not installed")

import flax.linen as fnn  # noqa: E402
import test_docs  # noqa: E402  (the docs' output convention, for the no-run torch block)
from flax import nnx  # noqa: E402

from jax_tconv import interop  # noqa: E402
from jax_tconv.nn import equinox as teqx  # noqa: E402
from jax_tconv.nn import linen  # noqa: E402
from jax_tconv.nn import nnx as tnnx  # noqa: E402

GOLDEN = np.load(pathlib.Path(__file__).parent / "golden" / "torch_golden.npz")
NAMES = sorted(k.removeprefix("config/") for k in GOLDEN if k.startswith("config/"))
CONFIGS = {name: json.loads(str(GOLDEN[f"config/{name}"])) for name in NAMES}
APIS = ("linen", "nnx", "equinox")
# (configuration, front end, seed): the front ends in turn; every fourth module has no bias.
CASES = [(name, APIS[j % 3], j) for j, name in enumerate(NAMES)]
TOL = 3e-5  # float32 rounding, as tests/test_golden.py


def has_bias(seed: int) -> bool:
    return seed % 4 != 3


def torch_module(cfg: dict, seed: int, *, bias: bool = True):
    """The ConvTranspose module of a golden configuration, standard normal weights and bias."""
    cls = getattr(torch.nn, f"ConvTranspose{len(cfg['i'])}d")
    module = cls(cfg["cin"], cfg["cout"], cfg["k"], stride=cfg["stride"], padding=cfg["padding"],
                 output_padding=cfg["output_padding"], groups=cfg["groups"], bias=bias,
                 dilation=cfg["dilation"])
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    return module


def normal(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def torch_forward(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def layer_forward(api: str, converted, x: np.ndarray) -> np.ndarray:
    """The converted layer on PyTorch's ``(N, C, *spatial)`` input, as ``(N, C_out, *o)``."""
    if api == "equinox":
        f = jax.vmap(converted)  # one unbatched, channels-first example at a time
    else:
        def f(x):  # channels last
            x = jnp.moveaxis(x, 1, -1)
            y = converted[0].apply(converted[1], x) if api == "linen" else converted(x)
            return jnp.moveaxis(y, -1, 1)
    return np.asarray(jax.jit(f)(x))


def back_to_torch(api: str, converted):
    if api == "linen":
        layer, variables = converted
        return interop.to_torch_module(layer, variables=variables)
    return interop.to_torch_module(converted)


def assert_close(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=TOL, atol=TOL * scale)


CONFIG_ATTRS = ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                "output_padding", "dilation", "groups", "padding_mode")


def assert_same_module(back, module):
    """`back` is `module` again: class, configuration, dtype and weights, exactly."""
    assert type(back) is type(module)
    for attr in CONFIG_ATTRS:
        assert getattr(back, attr) == getattr(module, attr), attr
    assert back.weight.dtype == module.weight.dtype and back.weight.requires_grad
    assert torch.equal(back.weight, module.weight)
    assert (back.bias is None) == (module.bias is None)
    if module.bias is not None:
        assert back.bias.dtype == module.bias.dtype and torch.equal(back.bias, module.bias)


# ----------------------------------------------------------------------------
# Every golden configuration, against PyTorch, and back.


@pytest.mark.parametrize("name, api, seed", CASES, ids=[f"{n}-{a}" for n, a, _ in CASES])
def test_module_converts_matches_torch_and_round_trips(name, api, seed):
    cfg = CONFIGS[name]
    module = torch_module(cfg, seed, bias=has_bias(seed))
    x = normal((cfg["batch"], cfg["cin"], *cfg["i"]), seed)
    expected = torch_forward(module, x)
    converted = interop.from_torch_module(module, api=api)
    assert_close(layer_forward(api, converted, x), expected)

    back = back_to_torch(api, converted)
    assert_same_module(back, module)
    np.testing.assert_array_equal(torch_forward(back, x), expected)


def test_the_crossing_covers_every_front_end():
    assert [name for name, _, _ in CASES] == NAMES and len(NAMES) >= 60
    for api in APIS:
        seen = [(CONFIGS[name], seed) for name, a, seed in CASES if a == api]
        assert {len(c["i"]) for c, _ in seen} == {1, 2, 3}, api
        assert any(c["groups"] > 1 for c, _ in seen), api
        assert any(c["groups"] == c["cin"] > 1 for c, _ in seen), api     # depthwise
        assert any(max(c["dilation"]) > 1 for c, _ in seen), api
        assert any(max(c["output_padding"]) > 0 for c, _ in seen), api
        assert any(max(c["padding"]) > 0 for c, _ in seen), api
        assert {has_bias(seed) for _, seed in seen} == {True, False}, api


# ----------------------------------------------------------------------------
# Layers built in JAX, exported: the paddings PyTorch reaches only through output padding.

# (name, front end, C_in, C_out, kernel_size, the layer's arguments (linen/nnx names),
#  PyTorch's padding and output_padding)
EXPORTS = [
    ("same_even", "linen", 4, 6, (4, 4), dict(strides=2, padding="SAME", groups=2),
     (1, 1), (0, 0)),
    ("same_kernel_below_stride", "nnx", 3, 2, (2,), dict(strides=3, padding="SAME"),
     (0,), (1,)),
    ("valid_output_padding", "equinox", 2, 3, (3, 2),
     dict(strides=(2, 3), padding="VALID", output_padding=(1, 2)), (0, 0), (1, 2)),
    ("pairs_low_above_high", "linen", 3, 3, (3, 3),
     dict(strides=2, padding=((2, 1), (1, 1)), output_padding=(0, 1)), (2, 1), (1, 1)),
    ("pairs_dilation_above_stride", "nnx", 2, 2, (3,), dict(dilation=3, padding=((2, 0),)),
     (2,), (2,)),
    ("pairs_3d_groups", "equinox", 2, 4, (2, 3, 2),
     dict(strides=(2, 1, 2), padding=((1, 0), (1, 1), (0, 0)), groups=2), (1, 1, 0),
     (1, 0, 0)),
]


def build(api: str, c_in: int, c_out: int, k, kwargs: dict, seed: int = 0):
    """A layer of `api` with seeded normal weight and bias (linen: ``(layer, variables)``)."""
    g = kwargs.get("groups", 1)
    kernel = normal((*k, c_out // g, c_in), seed)
    bias = normal((c_out,), seed + 1)
    if api == "linen":
        layer = linen.ConvTranspose(features=c_out, kernel_size=k, **kwargs)
        return layer, {"params": {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}}
    if api == "nnx":
        return tnnx.ConvTranspose(c_in, c_out, k, **kwargs,
                                  kernel_init=lambda *_: jnp.asarray(kernel),
                                  bias_init=lambda *_: jnp.asarray(bias), rngs=nnx.Rngs(0))
    kw = {("stride" if key == "strides" else key): v for key, v in kwargs.items()}
    weight = np.ascontiguousarray(np.moveaxis(kernel, (-1, -2), (0, 1)))  # (C_in, C_out/g, *k)
    return teqx.with_arrays(
        lambda: teqx.ConvTranspose(len(k), c_in, c_out, k, **kw, key=jax.random.key(0)),
        jnp.asarray(weight), jnp.asarray(bias).reshape((c_out, *(1,) * len(k))))


@pytest.mark.parametrize("case", EXPORTS, ids=[c[0] for c in EXPORTS])
def test_layer_exports_to_the_equal_torch_module(case):
    _, api, c_in, c_out, k, kwargs, padding, output_padding = case
    converted = build(api, c_in, c_out, k, kwargs)
    module = back_to_torch(api, converted)
    assert type(module) is getattr(torch.nn, f"ConvTranspose{len(k)}d")
    assert (module.padding, module.output_padding) == (padding, output_padding)
    x = normal((2, c_in, *(3,) * len(k)), 5)
    assert_close(torch_forward(module, x), layer_forward(api, converted, x))
    # ... and PyTorch's module converts to a layer computing the same again.
    again = interop.from_torch_module(module, api=api)
    assert_close(layer_forward(api, again, x), torch_forward(module, x))


# ----------------------------------------------------------------------------
# Dtypes, options, lazy modules, torch's random state.


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("api", APIS)
def test_low_precision_dtypes_round_trip_exactly(api, dtype):
    module = torch_module(CONFIGS["2d_dcgan"], 3).to(getattr(torch, dtype))
    converted = interop.from_torch_module(module, api=api)
    layer = converted[0] if api == "linen" else converted
    weight = (converted[1]["params"]["kernel"] if api == "linen" else
              layer.kernel[...] if api == "nnx" else layer.weight)
    assert weight.dtype == jnp.dtype(dtype)
    assert_same_module(back_to_torch(api, converted), module)


def test_float64_becomes_float32_without_x64():
    module = torch_module(CONFIGS["1d_k3_s1"], 4).double()
    layer = interop.from_torch_module(module, api="nnx")
    assert layer.kernel[...].dtype == jnp.float32        # JAX's rule without jax_enable_x64
    back = interop.to_torch_module(layer)
    assert back.weight.dtype == torch.float32
    assert torch.equal(back.weight, module.weight.float())


@pytest.mark.parametrize("api", APIS)
def test_method_is_passed_on(api):
    module = torch_module(CONFIGS["1d_k4_s2_p1"], 5)
    converted = interop.from_torch_module(module, api=api, method="matmul")
    layer = converted[0] if api == "linen" else converted
    assert (layer.method if api == "linen" else layer.config.method) == "matmul"


def test_lazy_module_converts_once_initialised():
    module = torch.nn.LazyConvTranspose2d(6, 3, stride=2, padding=1, output_padding=1)
    with pytest.raises(ValueError, match=r"^from_torch_module: module is a lazy "
                                         r"LazyConvTranspose2d whose weight is not initialised "
                                         r"yet; call it once on an input \(module\(x\)\)"):
        interop.from_torch_module(module, api="nnx")
    x = normal((1, 4, 5, 5), 6)
    expected = torch_forward(module, x)                  # now a ConvTranspose2d
    layer = interop.from_torch_module(module, api="nnx")
    assert_close(layer_forward("nnx", layer, x), expected)
    assert_same_module(interop.to_torch_module(layer), module)


def test_to_torch_module_leaves_torch_random_state_alone():
    layer = build("nnx", 2, 4, (3, 3), dict(strides=2))
    state = torch.random.get_rng_state()
    interop.to_torch_module(layer)
    assert torch.equal(torch.random.get_rng_state(), state)


# ----------------------------------------------------------------------------
# Errors: the function, the argument, the rule, the value, and the fix where there is one.


def test_from_torch_module_errors():
    with pytest.raises(TypeError, match=r"^from_torch_module: module must be a "
                                        r"torch.nn.ConvTranspose1d, ConvTranspose2d or "
                                        r"ConvTranspose3d, got Conv2d \(a forward convolution"):
        interop.from_torch_module(torch.nn.Conv2d(2, 2, 3), api="linen")
    with pytest.raises(TypeError, match=r"got Sequential \(pass the ConvTranspose submodule "
                                        r"itself"):
        interop.from_torch_module(torch.nn.Sequential(torch.nn.ConvTranspose1d(2, 2, 3)),
                                  api="linen")
    with pytest.raises(TypeError, match=r"^from_torch_module: module must be .*got ndarray\.$"):
        interop.from_torch_module(np.zeros((2, 2, 3)), api="linen")
    module = torch.nn.ConvTranspose1d(2, 2, 3)
    with pytest.raises(ValueError, match=r"^from_torch_module: api must be one of 'linen', "
                                         r"'nnx', 'equinox' \(the front end to build\), got "
                                         r"'haiku'"):
        interop.from_torch_module(module, api="haiku")
    with pytest.raises(ValueError, match=r"^from_torch_module: unknown method 'fast'"):
        interop.from_torch_module(module, api="nnx", method="fast")

    # PyTorch runs padding_mode='zeros' only: it refuses others at construction and, set
    # afterwards, in forward. Neither runs, so neither converts.
    with pytest.raises(ValueError, match=r'Only "zeros" padding mode is supported'):
        torch.nn.ConvTranspose1d(2, 2, 3, padding_mode="circular")
    module.padding_mode = "circular"
    with pytest.raises(ValueError, match=r"Only `zeros` padding mode is supported"):
        torch_forward(module, normal((1, 2, 4), 0))
    with pytest.raises(ValueError, match=r"^from_torch_module: module.padding_mode must be "
                                         r"'zeros', the only mode PyTorch's ConvTranspose1d "
                                         r"runs .*got 'circular'"):
        interop.from_torch_module(module, api="equinox")

    # output_padding must stay below max(stride, dilation): torch checks it in forward only.
    module = torch.nn.ConvTranspose1d(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(RuntimeError, match=r"output padding must be smaller than either stride "
                                           r"or dilation"):
        torch_forward(module, normal((1, 2, 4), 0))
    with pytest.raises(ValueError, match=r"^from_torch_module: the module's configuration has "
                                         r"no jax_tconv layer \(PyTorch's forward refuses it "
                                         r"too\): ConvTranspose: output_padding"):
        interop.from_torch_module(module, api="linen")

    module = torch.nn.ConvTranspose2d(4, 6, 3, groups=2)
    module.weight = torch.nn.Parameter(torch.zeros(4, 6, 3, 3))
    with pytest.raises(ValueError, match=re.escape(
            "from_torch_module: module.weight has shape (4, 6, 3, 3), but in_channels=4, "
            "out_channels=6, groups=2 and kernel_size=(3, 3) make it (in_channels, "
            "out_channels // groups, *kernel_size) = (4, 3, 3, 3).")):
        interop.from_torch_module(module, api="nnx")


def test_to_torch_module_errors():
    circular = tnnx.ConvTranspose(2, 2, (3,), padding=1, padding_mode="circular",
                                  rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"^to_torch_module: the layer has "
                                         r"padding_mode='circular', the adjoint of a "
                                         r"convolution padded that way; PyTorch's "
                                         r"ConvTranspose runs only padding_mode='zeros'"):
        interop.to_torch_module(circular)
    # 'SAME' with an odd total crops one more at the high end: no output padding undoes it.
    same, variables = build("linen", 2, 2, (3,), dict(strides=2, padding="SAME"))
    with pytest.raises(ValueError, match=r"^to_torch_module: the layer's padding 'SAME' crops "
                                         r"\(0, 1\) in spatial dimension 0, with output_padding "
                                         r"0; .*output_padding \+ lo - hi = -1 < max\(stride, "
                                         r"dilation\) = 2\. No torch ConvTranspose module"):
        interop.to_torch_module(same, variables=variables)
    high = build("equinox", 2, 2, (3, 3), dict(padding=((1, 1), (0, 3)), strides=2))
    with pytest.raises(ValueError, match=r"^to_torch_module: the layer's padding .* crops "
                                         r"\(0, 3\) in spatial dimension 1.* = -3 <"):
        interop.to_torch_module(high)

    layer, variables = build("linen", 2, 2, (3,), dict(strides=2))
    with pytest.raises(ValueError, match=r"^to_torch_module: a linen layer holds no "
                                         r"parameters; pass variables= its variables .*got "
                                         r"None"):
        interop.to_torch_module(layer)
    with pytest.raises(ValueError, match=r"got keys \['bias', 'kernel'\]"):
        interop.to_torch_module(layer, variables=variables["params"])
    with pytest.raises(ValueError, match=r"^to_torch_module: the layer has use_bias=False but "
                                         r"variables\['params'\] holds a 'bias'"):
        interop.to_torch_module(layer.clone(use_bias=False), variables=variables)
    nlayer = build("nnx", 2, 2, (3,), dict(strides=2))
    with pytest.raises(ValueError, match=r"^to_torch_module: an nnx layer holds its "
                                         r"parameters; pass variables=None, got dict"):
        interop.to_torch_module(nlayer, variables=variables)

    with pytest.raises(TypeError, match=r"^to_torch_module: layer must be a jax_tconv "
                                        r"ConvTranspose, got nnx ResizeConv"):
        interop.to_torch_module(tnnx.ResizeConv(2, 2, (3,), rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match=r"^to_torch_module: layer must be a jax_tconv.nn.linen, "
                                        r"nnx or equinox ConvTranspose, got "
                                        r"flax.linen.linear.ConvTranspose \(Flax's own: convert "
                                        r"it with jax_tconv.interop.from_flax first\)"):
        interop.to_torch_module(fnn.ConvTranspose(2, (3,)), variables=variables)
    theirs = eqx.filter_eval_shape(eqx.nn.ConvTranspose, 1, 2, 2, 3, key=jax.random.key(0))
    with pytest.raises(TypeError, match=r"\(Equinox's own: convert it with "
                                        r"jax_tconv.interop.from_equinox first\)"):
        interop.to_torch_module(theirs)
    four_d = build("nnx", 1, 1, (1, 1, 1, 1), {})
    with pytest.raises(ValueError, match=r"^to_torch_module: PyTorch has ConvTranspose1d, 2d "
                                         r"and 3d only; the layer has 4 spatial dimensions"):
        interop.to_torch_module(four_d)


# ----------------------------------------------------------------------------
# docs/layers.md's block: `python no-run` there (the docs run where torch is missing too),
# run here with tests/test_docs.py's check of what it prints.


def torch_doc_blocks():
    return [(path, line, code) for path in test_docs.DOCS
            for info, line, code in test_docs.fenced_blocks(path.read_text())
            if info == "python no-run" and re.search(r"^import torch$", code, re.M)]


def test_the_torch_docs_block_runs_and_prints_what_it_says(capsys):
    blocks = torch_doc_blocks()
    assert any("from_torch_module" in code for _, _, code in blocks), blocks
    for path, line, code in blocks:
        expected = test_docs.expected_output(code)
        exec(compile("\n" * (line - 1) + code, str(path), "exec"), {"__name__": "__doc_block__"})
        printed = capsys.readouterr().out.splitlines()
        assert len(printed) == len(expected), (path, line, printed, expected)
        for got, want in zip(printed, expected):
            assert test_docs.matches(got, want), f"{path}:{line}: printed {got!r}, says {want!r}"
