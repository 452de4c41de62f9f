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
    interop.to_torch_module, nn.adjoint, nn.input_scale, nn.quantize_conv_transpose,
]
CLASSES = ["ConvTranspose", "ResizeConv", "SubPixelConv", "PixelShuffle"]
FLAX_ONLY = ["QuantizedConvTranspose"]     # the Flax front ends' int8 layer


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_optional_arguments_are_keyword_only(fn):
    for p in inspect.signature(fn).parameters.values():
        if p.default is not inspect.Parameter.empty:
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, (fn.__name__, p.name)


@pytest.mark.parametrize("cls", CLASSES + FLAX_ONLY)
def test_nnx_constructor_optional_arguments_are_keyword_only(cls):
    for p in inspect.signature(getattr(nnx, cls).__init__).parameters.values():
        if p.default is not inspect.Parameter.empty or p.name == "rngs":
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, (cls, p.name)


def test_every_api_has_every_layer_and_docstrings():
    assert sorted(nn.__all__) == ["adjoint", "equinox", "input_scale", "linen", "nnx",
                                  "pixel_shuffle", "pixel_unshuffle", "quantize_conv_transpose"]
    apis = {linen: CLASSES + FLAX_ONLY, nnx: CLASSES + FLAX_ONLY}
    if importlib.util.find_spec("equinox") is not None:   # an optional extra
        apis[nn.equinox] = CLASSES
    for api, classes in apis.items():
        assert sorted(api.__all__) == sorted(classes), api.__name__
        for cls in classes:
            assert getattr(api, cls).__doc__, (api.__name__, cls)
    for fn in FUNCTIONS:
        assert "Example" in fn.__doc__ or fn is interop.to_torch or ">>>" in fn.__doc__


def test_from_flax_params_rules():
    with pytest.raises(ValueError, match=r"from_flax: a linen module needs its "
                                         r"variables\['params'\]"):
        interop.from_flax(fnn.ConvTranspose(2, (3,)))
