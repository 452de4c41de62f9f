"""Every formulation against the NumPy scatter reference, across the configuration grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CASES, METHODS

import jax_tconv
from jax_tconv._spec import transpose_spec


def assert_close(actual, expected, tol=2e-5):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("method", METHODS)
def test_matches_reference(case, method):
    x, w = case.arrays()
    y = jax_tconv.conv_transpose(x, w, method=method, **case.kwargs())
    assert y.dtype == jnp.float32
    assert_close(y, case.reference(x, w))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_output_size_formula(case):
    """o = (i - 1)*s - lo - hi + d*(k - 1) + 1 + output_padding, per dimension."""
    x, w = case.arrays()
    pads, ops = case.reference_geometry()
    s, d = case._per_dim(case.strides), case._per_dim(case.dilation)
    expected = tuple((i - 1) * sj - lo - hi + dj * (k - 1) + 1 + op
                     for i, k, sj, dj, (lo, hi), op in zip(case.i, case.k, s, d, pads, ops))
    spec = transpose_spec("t", jnp.asarray(x), jnp.asarray(w), precision=None,
                          preferred_element_type=None, **case.kwargs())
    assert spec.out_spatial == expected
    if case.output_shape is not None:
        assert expected == tuple(case.output_shape)


@pytest.mark.parametrize("method", jax_tconv.METHODS)
def test_public_function_per_method(method):
    case = CASES[10]
    x, w = case.arrays()
    fn = getattr(jax_tconv, f"conv_transpose_{method}")
    np.testing.assert_array_equal(fn(x, w, **case.kwargs()),
                                  jax_tconv.conv_transpose(x, w, method=method, **case.kwargs()))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_lax_conv_transpose_agrees(case):
    """lax.conv_transpose(transpose_kernel=True) supports groups=1 with lax padding pairs."""
    if case.groups != 1:
        pytest.skip("lax.conv_transpose has no groups")
    x, w = case.arrays()
    pads, ops = case.reference_geometry()
    s, d = case._per_dim(case.strides), case._per_dim(case.dilation)
    # lax.conv_transpose pads the dilated input: d*(k-1) - lo below, d*(k-1) - hi + op above.
    lax_pads = [(dj * (k - 1) - lo, dj * (k - 1) - hi + op)
                for k, dj, (lo, hi), op in zip(case.k, d, pads, ops)]
    expected = jax.lax.conv_transpose(x, w, s, lax_pads, rhs_dilation=d,
                                      dimension_numbers=case.dimension_numbers,
                                      transpose_kernel=True)
    for method in METHODS:
        y = jax_tconv.conv_transpose(x, w, method=method, **case.kwargs())
        assert_close(y, expected)


def test_textbook_4x16_matrix():
    """4x4 input, 3x3 kernel, stride 1, no padding: C is 4x16, each row the kernel in place."""
    k = np.arange(1.0, 10.0).reshape(3, 3)
    c = np.asarray(jax_tconv.conv_matrix(k.reshape(3, 3, 1, 1).astype(np.float32), (1, 4, 4, 1)))
    expected = np.zeros((4, 16))
    for row, (a, b) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        image = np.zeros((4, 4))
        image[a:a + 3, b:b + 3] = k
        expected[row] = image.reshape(-1)
    np.testing.assert_array_equal(c, expected)
    # C @ vec(x) is the convolution; C.T @ vec(y) is the transposed convolution (one to nine).
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 1)).astype(np.float32)
    w = k.reshape(3, 3, 1, 1).astype(np.float32)
    np.testing.assert_allclose((c @ x.reshape(-1)).reshape(1, 2, 2, 1),
                               jax_tconv.conv(x, w), rtol=1e-6)
    y = np.zeros((1, 2, 2, 1), np.float32)
    y[0, 1, 0, 0] = 1.0  # one input value ...
    out = np.asarray(jax_tconv.conv_transpose(y, w, method="matmul"))
    assert out.shape == (1, 4, 4, 1)
    assert np.count_nonzero(out) == 9  # ... reaches nine outputs
    np.testing.assert_array_equal(out[0, 1:4, 0:3, 0], k)


@pytest.mark.parametrize("case", CASES[::3], ids=lambda c: c.name)
def test_conv_matrix_dense_and_sparse(case):
    """conv_matrix @ vec(y) == vec(conv(y)), dense and BCOO, in any layout."""
    x, w = case.arrays()
    y_shape = jax_tconv.conv_transpose(x, w, **case.kwargs()).shape
    pads, _ = case.reference_geometry()
    kw = dict(strides=case.strides, padding=pads, dilation=case.dilation, groups=case.groups,
              dimension_numbers=case.dimension_numbers)
    y = np.random.default_rng(1).standard_normal(y_shape).astype(np.float32)
    forward = jax_tconv.conv(y, w, **kw)
    dense = jax_tconv.conv_matrix(w, y_shape, **kw)
    sparse = jax_tconv.conv_matrix(w, y_shape, sparse=True, **kw)
    np.testing.assert_array_equal(sparse.todense(), dense)
    # The forward conv may produce more rows than x (when op >= s); C has exactly conv's rows.
    assert dense.shape == (forward.size, y.size)
    assert_close(dense @ y.reshape(-1), np.asarray(forward).reshape(-1))
    # Only structural non-zeros are stored (w is random, so none of them is zero).
    assert sparse.nse == np.count_nonzero(np.asarray(dense))


def test_conv_matches_lax():
    case = CASES[11]
    x, w = case.arrays()
    y = np.random.default_rng(0).standard_normal((2, 7, 9, 3)).astype(np.float32)
    out = jax_tconv.conv(y, w, strides=2, padding=1)
    expected = jax.lax.conv_general_dilated(y, w, (2, 2), [(1, 1), (1, 1)],
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_array_equal(out, expected)
