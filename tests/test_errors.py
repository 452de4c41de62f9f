"""Bad input raises a ValueError/TypeError naming the function, the argument and the values."""

import inspect

import jax.numpy as jnp
import numpy as np
import pytest

import jax_tconv

X = jnp.ones((2, 4, 4, 6))      # NHWC, C_in = 6
W = jnp.ones((3, 3, 2, 6))      # HWIO: I = C_out // groups = 2, O = C_in = 6


def call(**kwargs):
    x = kwargs.pop("x", X)
    w = kwargs.pop("w", W)
    return jax_tconv.conv_transpose(x, w, **kwargs)


BAD = [
    # (kwargs, exception, message pattern)
    (dict(x=jnp.ones((4, 6))), ValueError, r"conv_transpose: x must have w's rank .* or one axis fewer \(no batch axis.*x.ndim=2 and w.ndim=4"),
    (dict(x=jnp.ones((1, 2, 4, 4, 6))), ValueError, r"conv_transpose: x must have w's rank.*x.ndim=5 and w.ndim=4"),
    (dict(x=jnp.ones((4, 6)), w=jnp.ones((3, 6))), ValueError, r"rank >= 3.*x\[None\]"),
    (dict(w=jnp.ones((3, 3, 2, 5))), ValueError, r"x has 6 channels \(axis 3 of x.shape=\(2, 4, 4, 6\)\) but w's 'O' axis \(axis 3 of w.shape=\(3, 3, 2, 5\).*has size 5"),
    (dict(groups=4), ValueError, r"groups=4 must divide the input channels, but 6 is not divisible by 4"),
    (dict(groups=0), ValueError, r"groups must be >= 1, got 0"),
    (dict(strides=0), ValueError, r"strides must be >= 1 in every dimension, got 0"),
    (dict(strides=(2, -1)), ValueError, r"strides must be >= 1 in every dimension, got \(2, -1\)"),
    (dict(strides=(2, 2, 2)), ValueError, r"strides must be an int or a sequence of 2 ints.*length 3"),
    (dict(strides=1.5), TypeError, r"strides must be an int, got 1.5 of type float"),
    (dict(strides=True), TypeError, r"strides must be an int, got the bool True"),
    (dict(dilation=0), ValueError, r"dilation must be >= 1 in every dimension, got 0"),
    (dict(padding=5), ValueError, r"padding \(5, 5\) is too large in spatial dimension 0.*= \(4 - 1\)\*1 - 5 - 5 \+ 1\*\(3 - 1\) \+ 1 would be -4; reduce padding"),
    (dict(padding=-1), ValueError, r"padding must be >= 0, got -1"),
    (dict(padding="FULL"), ValueError, r"padding string must be 'SAME' or 'VALID' \(any case, as in lax\), got 'FULL'"),
    (dict(padding=((1, 2, 3), 0)), ValueError, r"each padding pair must be \(lo, hi\)"),
    (dict(padding=(1, 1, 1)), ValueError, r"padding must be an int, 'SAME', 'VALID', or a sequence of 2"),
    (dict(strides=2, output_padding=2), ValueError, r"output_padding must be smaller than max\(stride, dilation\).*output_padding=2 with stride=2 and dilation=1"),
    (dict(output_padding=-1), ValueError, r"output_padding must be >= 0"),
    (dict(strides=2, output_shape=(12, 9)), ValueError, r"output_shape is unreachable in spatial dimension 0: got 12.*reach only sizes 9 to 10"),
    (dict(strides=2, output_shape=(9,)), ValueError, r"output_shape must be a sequence of 2 spatial sizes or the full 4-dim"),
    (dict(strides=2, output_shape=(2, 9, 9, 5)), ValueError, r"full output_shape \(2, 9, 9, 5\) disagrees"),
    (dict(strides=2, output_padding=1, output_shape=(10, 10)), ValueError, r"give output_padding or output_shape, not both"),
    (dict(strides=2, padding="SAME", output_padding=1), ValueError, r"padding='SAME' fixes the output size.*pass output_shape"),
    (dict(strides=2, padding="SAME", output_shape=(6, 8)), ValueError, r"with padding='SAME'.*7 <= o <= 8; got output_shape 6"),
    (dict(dimension_numbers=("NHWC", "HWIO")), TypeError, r"dimension_numbers must be None.*tuple of three strings"),
    (dict(dimension_numbers=("NHWC", "HWOO", "NHWC")), ValueError, r"malformed dimension_numbers \('NHWC', 'HWOO', 'NHWC'\)"),
    (dict(dimension_numbers=("NCH", "OIH", "NCH")), ValueError, r"malformed dimension_numbers.*rank-4"),
    # Integers are accepted (tests/test_integer.py); bools, mixed kinds and a float accumulator are not.
    (dict(x=jnp.ones((2, 4, 4, 6), bool), w=jnp.ones((3, 3, 2, 6), bool)), TypeError, r"conv_transpose: x and w must be floating point, complex or integer, got x.dtype=bool and w.dtype=bool; cast a bool array to an integer or float dtype"),
    (dict(x=jnp.ones((2, 4, 4, 6), jnp.int8), w=jnp.ones((3, 3, 2, 6), jnp.uint8)), TypeError, r"same dtype, got x.dtype=int8 and w.dtype=uint8; cast both to one, e.g. x.astype\(jnp.int16\) and w.astype\(jnp.int16\)"),
    (dict(x=jnp.ones((2, 4, 4, 6), jnp.int8), w=jnp.ones((3, 3, 2, 6), jnp.int8), preferred_element_type=jnp.float32), TypeError, r"conv_transpose: with integer operands \(int8\) preferred_element_type must be an integer dtype of at least 32 bits.*got <class 'jax.numpy.float32'>; leave it None for int32, and convert the integer result"),
    (dict(x=jnp.ones((2, 4, 4, 6), jnp.int8), w=jnp.ones((3, 3, 2, 6), jnp.int8), preferred_element_type=jnp.int16), TypeError, r"integer dtype of at least 32 bits"),
    (dict(preferred_element_type=jnp.int32), TypeError, r"preferred_element_type must be a floating dtype at least as wide as x's float32"),
    (dict(w=jnp.ones((3, 3, 2, 6), jnp.bfloat16)), TypeError, r"same dtype, got x.dtype=float32 and w.dtype=bfloat16; cast both to one, e.g. x.astype\(jnp.float32\) and w.astype\(jnp.float32\)"),
    (dict(x=jnp.ones((2, 0, 4, 6))), ValueError, r"spatial sizes must be >= 1"),
    # An integer x beside a float w: the advice is a float cast of the integer one (or quantizing).
    (dict(x=jnp.ones((2, 4, 4, 6), jnp.int32)), TypeError, r"x and w must both be floating point \(or complex\) or both integers, got x.dtype=int32 and w.dtype=float32; cast the integer one to a float dtype, e.g. x.astype\(jnp.float32\), or quantize the float one"),
    (dict(w=jnp.ones((3, 3, 2, 6), jnp.int8)), TypeError, r"got x.dtype=float32 and w.dtype=int8; cast the integer one to a float dtype, e.g. w.astype\(jnp.float32\)"),
    (dict(padding="Full"), ValueError, r"any case"),
    # Padding modes: PyTorch's names and F.pad's rules, against the output size o.
    (dict(padding_mode="wrap"), ValueError,
     r"conv_transpose: unknown padding_mode 'wrap'; choose one of 'zeros', 'circular', "
     r"'reflect', 'replicate' \(PyTorch's names\) \('wrap' is 'circular' here\)"),
    (dict(padding_mode="CIRCULAR"), ValueError,
     r"unknown padding_mode 'CIRCULAR'.*\('CIRCULAR' is 'circular' here\)"),
    (dict(padding_mode="symmetric"), ValueError, r"unknown padding_mode 'symmetric'.*NumPy's "
     r"'symmetric', which repeats the edge element, has no equivalent"),
    (dict(padding_mode=None), TypeError,
     r"conv_transpose: padding_mode must be a string, one of 'zeros', 'circular', 'reflect', "
     r"'replicate', got None of type NoneType"),
    (dict(padding_mode=0), TypeError, r"padding_mode must be a string.*got 0 of type int"),
    (dict(padding=2, padding_mode="reflect"), ValueError,
     r"conv_transpose: padding_mode='reflect' needs each padding < the size it pads, as "
     r"PyTorch's F.pad; got padding \(2, 2\) in spatial dimension 0, where the output \(the "
     r"forward conv's input\) has size 2. Reduce the padding, or use "
     r"padding_mode='replicate' \(any padding\)"),
    (dict(padding=((3, 1), 0), padding_mode="circular"), ValueError,
     r"conv_transpose: padding_mode='circular' needs each padding <= the size it pads \(one "
     r"wrap-around\), as PyTorch's F.pad; got padding \(3, 1\) in spatial dimension 0, where "
     r"the output \(the forward conv's input\) has size 2"),
    (dict(x=jnp.ones((2, 4, 1, 6)), padding="SAME", padding_mode="reflect"), ValueError,
     r"padding_mode='reflect' needs each padding < the size it pads.*got padding \(1, 1\) in "
     r"spatial dimension 1, where the output \(the forward conv's input\) has size 1"),
]


@pytest.mark.parametrize("kwargs,exc,match", BAD, ids=[m[:40] for _, _, m in BAD])
@pytest.mark.parametrize("method", ["auto", "vjp"])
def test_bad_input(kwargs, exc, match, method):
    with pytest.raises(exc, match=match):
        call(method=method, **kwargs)


@pytest.mark.parametrize("method", ["fft", None, "VJP"])
def test_unknown_method(method):
    with pytest.raises(ValueError, match=rf"conv_transpose: unknown method {method!r}; choose "
                                         r"'auto', 'tune' or one of 'vjp', 'matmul', 'dilated', "
                                         r"'phase'"):
        call(method=method)


# The first mistakes of a PyTorch user: NCHW input and a PyTorch weight with the default
# (channels-last) layout. Each error names both fixes.
TORCH_X = jnp.ones((2, 6, 4, 4))        # NCHW, C_in = 6
TORCH_W = jnp.ones((6, 2, 3, 3))        # ConvTranspose2d.weight (C_in, C_out // groups, kH, kW)


@pytest.mark.parametrize("x,w", [(TORCH_X, TORCH_W), (X, TORCH_W)], ids=["nchw", "torch_weight"])
def test_layout_mistakes_name_the_fix(x, w):
    with pytest.raises(ValueError, match=r"default layout \('NHWC', 'HWIO', 'NHWC'\).*"
                                         r"pass dimension_numbers=\('NCHW', 'OIHW', 'NCHW'\);.*"
                                         r"jax_tconv.interop.from_torch\(weight, bias\)\['kernel'\]"):
        jax_tconv.conv_transpose(x, w, strides=2)
    # ... and the fixes it names work.
    y = jax_tconv.conv_transpose(TORCH_X, TORCH_W, strides=2,
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    kernel = jax_tconv.interop.from_torch(np.asarray(TORCH_W), None)["kernel"]
    y_last = jax_tconv.conv_transpose(jnp.moveaxis(TORCH_X, 1, -1), kernel, strides=2)
    np.testing.assert_allclose(jnp.moveaxis(y_last, -1, 1), y, rtol=1e-6)


def test_conv_layout_mistake_names_the_fix():
    # PyTorch's Conv2d: NCHW input, weight (C_out, C_in // groups, kH, kW).
    with pytest.raises(ValueError, match=r"x has 8 input channels \(axis 3 of x.shape=\(2, 6, 8, 8\)\) but w expects 3 per "
                                         r"group.*"
                                         r"pass dimension_numbers=\('NCHW', 'OIHW', 'NCHW'\)"):
        jax_tconv.conv(jnp.ones((2, 6, 8, 8)), jnp.ones((4, 6, 3, 3)))


def test_padding_strings_are_case_insensitive():
    for p in ("same", "Same", "valid"):
        np.testing.assert_array_equal(call(strides=2, padding=p),
                                      call(strides=2, padding=p.upper()))


def test_errors_name_the_formulation_function():
    with pytest.raises(ValueError, match=r"^conv_transpose_dilated: groups=4 must divide"):
        jax_tconv.conv_transpose_dilated(X, W, groups=4)


@pytest.mark.parametrize("fn", [jax_tconv.conv_transpose_phase, jax_tconv.conv_transpose_matmul,
                                jax_tconv.auto_method, jax_tconv.tune_choice],
                         ids=lambda f: f.__name__)
def test_padding_mode_errors_name_the_function(fn):
    with pytest.raises(ValueError, match=rf"^{fn.__name__}: unknown padding_mode 'edge'.*"
                                         r"\('edge' is 'replicate' here\)"):
        fn(X, W, padding_mode="edge")
    with pytest.raises(ValueError, match=rf"^{fn.__name__}: padding_mode='reflect' needs each "
                                         r"padding < the size it pads"):
        fn(X, W, padding=2, padding_mode="reflect")


def test_padding_mode_errors_of_conv_matrix():
    with pytest.raises(TypeError, match=r"^conv_matrix: padding_mode must be a string"):
        jax_tconv.conv_matrix(W, (1, 6, 6, 6), padding_mode=True)
    with pytest.raises(ValueError, match=r"^conv_matrix: padding_mode='circular' needs each "
                                         r"padding <= the size it pads.*the input has size 6"):
        jax_tconv.conv_matrix(W, (1, 6, 6, 2), padding=7, padding_mode="circular")


def test_padding_mode_limits_are_pytorchs():
    """reflect: padding < o; circular: <= o; replicate: any; zeros: as before."""
    o = lambda p: call(padding=p, padding_mode="replicate").shape[1]   # noqa: E731
    assert o(((3, 1), 0)) == 2                              # replicate: 3 beyond a size of 2
    assert call(padding=((2, 0), 0), padding_mode="circular").shape[1] == 4 - 0 + 0
    assert call(padding=((1, 1), 0), padding_mode="reflect").shape[1] == 4   # 1 < 4


def test_matmul_refuses_before_allocating(monkeypatch):
    monkeypatch.setattr(jax_tconv._matmul, "MATMUL_MAX_BYTES", 1000)
    with pytest.raises(ValueError, match=r"dense convolution matrix would be 96 x 72 = 27,648 "
                                         r"bytes.*use method='vjp' or method='dilated'"):
        call(method="matmul")


def test_matmul_default_bound_on_a_large_layer():
    x = jnp.ones((1, 64, 64, 128))
    w = jnp.ones((4, 4, 64, 128))
    with pytest.raises(ValueError, match=r"over MATMUL_MAX_BYTES = 268,435,456"):
        jax_tconv.conv_transpose(x, w, strides=2, padding=1, method="matmul")


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(x=jnp.ones((1, 4, 4, 3))), ValueError, r"conv: x has 3 input channels \(axis 3 of x.shape=\(1, 4, 4, 3\)\) but w expects 2 per group .* x groups=1"),
    (dict(groups=4), ValueError, r"conv: groups=4 must divide the kernel's output channels \(O\), but 6"),
    (dict(padding=(-3, 0)), ValueError, r"conv: in spatial dimension 0 the padded input \(4 \+ -3 \+ -3\)"),
    (dict(padding=4, padding_mode="reflect"), ValueError,
     r"conv: padding_mode='reflect' needs each padding < the size it pads.*\(4, 4\) in "
     r"spatial dimension 0, where the input has size 4"),
    (dict(padding=(0, 5), padding_mode="circular"), ValueError,
     r"conv: padding_mode='circular' needs each padding <= the size it pads.*\(5, 5\) in "
     r"spatial dimension 1"),
    (dict(padding_mode="Reflect"), ValueError,
     r"conv: unknown padding_mode 'Reflect'.*\('Reflect' is 'reflect' here\)"),
])
def test_conv_bad_input(kwargs, exc, match):
    x = kwargs.pop("x", jnp.ones((1, 4, 4, 2)))
    with pytest.raises(exc, match=match):
        jax_tconv.conv(x, W, **kwargs)


PUBLIC_FUNCTIONS = [getattr(jax_tconv, n) for n in jax_tconv.__all__
                    if inspect.isfunction(getattr(jax_tconv, n))]


@pytest.mark.parametrize("fn", PUBLIC_FUNCTIONS, ids=lambda f: f.__name__)
def test_optional_arguments_are_keyword_only(fn):
    for p in inspect.signature(fn).parameters.values():
        if p.default is not inspect.Parameter.empty:
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, (fn.__name__, p.name)


def test_methods_are_stable_and_have_functions():
    assert jax_tconv.METHODS == ("vjp", "matmul", "dilated", "phase", "products")
    for m in jax_tconv.METHODS:
        fn = getattr(jax_tconv, f"conv_transpose_{m}")
        params = inspect.signature(fn).parameters
        assert "method" not in params
        assert list(params) == [p for p in inspect.signature(jax_tconv.conv_transpose).parameters
                                if p != "method"]


def test_numpy_inputs_and_python_ints_work():
    y = jax_tconv.conv_transpose(np.ones((1, 2, 2, 1), np.float32), np.ones((3, 3, 1, 1), np.float32),
                                 strides=np.int64(1), padding=[np.int32(0), 0])
    assert y.shape == (1, 4, 4, 1)
