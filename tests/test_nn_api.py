"""The public face of the layer modules: names, and keyword-only optional arguments."""

import importlib.util
import inspect

import flax.linen as fnn
import pytest

from jax_tconv import checkerboard, initializers, interop, nn
from jax_tconv.nn import linen, nnx

FUNCTIONS = [
    nn.pixel_shuffle, nn.pixel_unshuffle, initializers.bilinear, initializers.icnr,
    checkerboard.overlap_map, interop.from_torch, interop.to_torch, interop.load_params,
    interop.from_flax, interop.from_equinox, interop.from_torch_module,
    interop.to_torch_module, nn.adjoint,
]
CLASSES = ["ConvTranspose", "ResizeConv", "SubPixelConv", "PixelShuffle"]


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_optional_arguments_are_keyword_only(fn):
    for p in inspect.signature(fn).parameters.values():
        if p.default is not inspect.Parameter.empty:
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, (fn.__name__, p.name)


@pytest.mark.parametrize("cls", CLASSES)
def test_nnx_constructor_optional_arguments_are_keyword_only(cls):
    for p in inspect.signature(getattr(nnx, cls).__init__).parameters.values():
        if p.default is not inspect.Parameter.empty or p.name == "rngs":
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, (cls, p.name)


def test_every_api_has_every_layer_and_docstrings():
    assert sorted(nn.__all__) == ["adjoint", "equinox", "linen", "nnx", "pixel_shuffle",
                                  "pixel_unshuffle"]
    apis = [linen, nnx]
    if importlib.util.find_spec("equinox") is not None:   # an optional extra
        apis.append(nn.equinox)
    for cls in CLASSES:
        for api in apis:
            assert getattr(api, cls).__doc__, (api.__name__, cls)
            assert sorted(api.__all__) == sorted(CLASSES), api.__name__
    for fn in FUNCTIONS:
        assert "Example" in fn.__doc__ or fn is interop.to_torch or ">>>" in fn.__doc__


def test_from_flax_params_rules():
    with pytest.raises(ValueError, match=r"from_flax: a linen module needs its "
                                         r"variables\['params'\]"):
        interop.from_flax(fnn.ConvTranspose(2, (3,)))
