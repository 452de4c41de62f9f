"""Weights from PyTorch (golden fixtures, and live when torch is installed) and from Flax."""

import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nn_helpers import APIS, np_init, np_normal

from jax_tconv import interop
from jax_tconv.nn import linen as tlinen
from jax_tconv.nn import nnx as tnnx

FIXTURES = sorted((pathlib.Path(__file__).parent / "fixtures").glob("torch_*.npz"))


def close(a, b, tol=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


def _ours(api, config, params):
    """Our ConvTranspose with PyTorch's constructor arguments, loaded with `params`."""
    kw = dict(kernel_size=tuple(config["kernel_size"]), strides=tuple(config["stride"]),
              padding=tuple(config["padding"]), output_padding=tuple(config["output_padding"]),
              dilation=tuple(config["dilation"]), groups=config["groups"],
              use_bias=config["bias"])
    if api == "linen":
        module = tlinen.ConvTranspose(config["out_channels"], **kw)
        return lambda x: module.apply({"params": params}, x)
    layer = tnnx.ConvTranspose(config["in_channels"], config["out_channels"],
                               kernel_init=np_init(), rngs=nnx.Rngs(0), **kw)
    interop.load_params(layer, params)
    return layer


def _last(a):
    return np.moveaxis(np.asarray(a), 1, -1)


def _first(a):
    return np.moveaxis(np.asarray(a), -1, 1)


def test_fixtures_exist_and_are_small():
    assert len(FIXTURES) >= 6
    assert sum(f.stat().st_size for f in FIXTURES) < 1_000_000


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_torch_golden_outputs(api, path):
    data = np.load(path)
    config = json.loads(str(data["config"]))
    bias = data["bias"] if "bias" in data else None
    params = interop.from_torch(data["weight"], bias)
    n = data["weight"].ndim - 2
    assert params["kernel"].shape == (*config["kernel_size"],
                                      config["out_channels"] // config["groups"],
                                      config["in_channels"])
    close(_ours(api, config, params)(_last(data["x"])), _last(data["y"]))
    back = interop.to_torch(params)
    np.testing.assert_array_equal(back["weight"], data["weight"])
    if bias is not None:
        np.testing.assert_array_equal(back["bias"], bias)
    assert back["weight"].shape[2:] == tuple(config["kernel_size"]) and n == len(back["weight"]
                                                                                 .shape[2:])


def test_torch_errors():
    with pytest.raises(ValueError, match=r"from_torch: weight must be a ConvTranspose weight "
                                         r"\(C_in, C_out // groups, \*k\) with at least one "
                                         r"spatial axis, got shape \(4, 3\)"):
        interop.from_torch(np.zeros((4, 3)), None)
    with pytest.raises(ValueError, match=r"from_torch: bias must be \(C_out,\) with C_out a "
                                         r"multiple of weight.shape\[1\] = C_out // groups = 3, "
                                         r"got bias shape \(4,\)"):
        interop.from_torch(np.zeros((4, 3, 2)), np.zeros(4))
    with pytest.raises(ValueError, match=r"to_torch: params must hold 'kernel'.*got keys "
                                         r"\['params'\]"):
        interop.to_torch({"params": {}})
    layer = tnnx.ConvTranspose(4, 3, (2,), kernel_init=np_init(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"load_params: ConvTranspose.kernel has shape "
                                         r"\(2, 3, 4\), the given kernel \(3, 3, 4\)"):
        interop.load_params(layer, interop.from_torch(np.zeros((4, 3, 3)), np.zeros(3)))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_torch_live_both_directions(n):
    torch = pytest.importorskip("torch")
    cls = [torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d][n - 1]
    size = [(6,), (4, 5), (3, 2, 3)][n - 1]
    kw = dict(kernel_size=3, stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    torch.manual_seed(n)
    module = cls(4, 6, **kw)
    x = np_normal((2, 4, *size), n)
    with torch.no_grad():
        y_torch = module(torch.from_numpy(np.array(x))).numpy()
    params = interop.from_torch(module.weight.detach().numpy(), module.bias.detach().numpy())
    config = dict(in_channels=4, out_channels=6, kernel_size=[3] * n, stride=[2] * n,
                  padding=[1] * n, output_padding=[1] * n, dilation=[1] * n, groups=2, bias=True)
    close(_ours("linen", config, params)(_last(x)), _last(y_torch))
    # Export: our freshly initialised layer, run by PyTorch.
    layer = tnnx.ConvTranspose(4, 6, (3,) * n, strides=2, padding=1, output_padding=1,
                               groups=2, bias_init=np_init(3), rngs=nnx.Rngs(n))
    state = {k: torch.from_numpy(np.array(v)) for k, v in interop.to_torch(layer).items()}
    module.load_state_dict(state)
    with torch.no_grad():
        y_torch = module(torch.from_numpy(np.array(x))).numpy()
    close(layer(_last(x)), _last(y_torch))


# ----------------------------------------------------------------------------
# Flax's ConvTranspose

FLAX_CASES = [
    ("same_k3_s2", (3, 3), dict(strides=(2, 2), padding="SAME")),
    ("same_k4_s2_dil2", (4, 2), dict(strides=(2, 3), padding="SAME", kernel_dilation=(2, 1))),
    ("valid_k2_s3", (2, 3), dict(strides=(3, 2), padding="VALID")),
    ("int_pad", (3, 3), dict(strides=(2, 2), padding=1)),
    ("pairs_negative", (4, 3), dict(strides=(2, 1), padding=((-1, 2), (0, 2)))),
    ("1d_int_kernel_mask", 3, dict(strides=2, padding=((2, 3),), use_bias=False)),
]


@pytest.mark.parametrize("transpose_kernel", [False, True])
@pytest.mark.parametrize("name,k,kw", FLAX_CASES, ids=[c[0] for c in FLAX_CASES])
def test_from_flax_linen(name, k, kw, transpose_kernel):
    n = 1 if isinstance(k, int) else len(k)
    x = np_normal((2, *(5, 4)[:n], 3), 4)
    if name.endswith("mask"):
        kshape = (k, 4, 3) if transpose_kernel else (k, 3, 4)
        kw = dict(kw, mask=jnp.asarray(np.random.default_rng(0).random(kshape) > 0.3,
                                       jnp.float32))
    theirs = nn.ConvTranspose(4, k, transpose_kernel=transpose_kernel, kernel_init=np_init(),
                              bias_init=np_init(1), **kw)
    variables = theirs.init(jax.random.key(0), x)
    kwargs, params = interop.from_flax(theirs, params=variables["params"])
    ours = tlinen.ConvTranspose(**kwargs)
    close(ours.apply({"params": params}, x), theirs.apply(variables, x))


def test_from_flax_nnx_module_to_nnx_layer():
    x = np_normal((2, 5, 4, 3), 4)
    theirs = nnx.ConvTranspose(3, 4, (3, 3), strides=(2, 2), padding="SAME",
                               kernel_init=np_init(), bias_init=np_init(1), rngs=nnx.Rngs(0))
    kwargs, params = interop.from_flax(theirs, api="nnx")
    ours = tnnx.ConvTranspose(**kwargs, kernel_init=np_init(), rngs=nnx.Rngs(0))
    interop.load_params(ours, params)
    close(ours(x), theirs(x))


@pytest.mark.parametrize("k,kw,match", [
    ((3, 3), dict(padding=3),
     r"from_flax: padding 3 gives lax.conv_transpose padding \(3, 3\) in spatial dimension 0; "
     r"jax_tconv reaches \(a, b\) only for a <= d\*\(k - 1\) = 2"),
    ((3,), dict(strides=(2,), padding=((0, 5),)),
     r"from_flax: .*padding \(0, 5\) in spatial dimension 0.*b - 2 < max\(stride, dilation\) "
     r"= 2"),
    ((3, 3), dict(preferred_element_type=jnp.float32),
     r"from_flax: preferred_element_type has no jax_tconv layer equivalent"),
    ((3, 3), dict(padding="same"),
     r"from_flax: padding 'same' is not one Flax's ConvTranspose runs"),
], ids=["low_pad_too_big", "high_pad_too_big", "preferred_element_type", "lowercase"])
def test_from_flax_inexpressible(k, kw, match):
    theirs = nn.ConvTranspose(2, k, kernel_init=np_init(), **kw)
    x = np_normal((1, *(4,) * len(k), 2))
    variables = {"params": {"kernel": np_normal((*k, 2, 2)), "bias": np_normal((2,))}}
    if kw.get("padding") != "same":  # Flax itself cannot run that one
        variables = theirs.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=match):
        interop.from_flax(theirs, params=variables["params"])
    with pytest.raises(ValueError, match=r"from_flax: api must be 'linen' or 'nnx', got 'jax'"):
        interop.from_flax(theirs, params=variables["params"], api="jax")
