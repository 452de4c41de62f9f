"""`operator_norm` against the largest singular value of the explicit matrix `conv_matrix`.

Real kernels here; complex ones (power iteration on ``CᴴC``) in test_hermitian.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_tconv

#: The stated accuracy: relative error of the estimate with the default tol (1e-6) on
#: random kernels, whose top two singular values differ by a few percent or more.
RTOL = 1e-4

# (name, input shape, kernel shape, kwargs of conv)
CASES = [
    ("1d_s2_p1", (1, 9, 2), (3, 2, 3), dict(strides=2, padding=1)),
    ("2d_dil2_g2_same", (1, 6, 7, 4), (3, 2, 2, 6), dict(strides=(2, 1), padding="SAME",
                                                        dilation=(1, 2), groups=2)),
    ("2d_nchw_pairs", (3, 2, 5, 6), (4, 2, 3, 3),
     dict(strides=2, padding=((1, 0), (0, 2)), dimension_numbers=("NCHW", "OIHW", "NCHW"))),
    ("3d_depthwise", (1, 4, 3, 4, 2), (2, 2, 2, 1, 2), dict(strides=(1, 2, 1), groups=2)),
]


def sigma(w, input_shape, **kw):
    """Singular values of the explicit matrix C, in float64."""
    one = list(input_shape)
    one[kw.get("dimension_numbers", "N")[0].index("N")] = 1
    c = np.asarray(jax_tconv.conv_matrix(w, tuple(one), **kw), np.float64)
    return np.linalg.svd(c, compute_uv=False)


@pytest.mark.parametrize("name,input_shape,w_shape,kw", CASES, ids=[c[0] for c in CASES])
def test_matches_the_svd(name, input_shape, w_shape, kw):
    w = jnp.asarray(np.random.default_rng(len(name)).standard_normal(w_shape), jnp.float32)
    s = sigma(w, input_shape, **kw)
    r = jax_tconv.operator_norm(w, input_shape, **kw)
    assert bool(r.converged) and 1 <= int(r.iterations) <= 500
    np.testing.assert_allclose(float(r.value), s[0], rtol=RTOL)
    assert float(r.value) <= s[0] * (1 + 1e-5)    # a lower bound, up to float32 rounding


def test_jit_grad_and_the_iteration_cap():
    kw = dict(strides=2, padding=1)
    w = jnp.asarray(np.random.default_rng(0).standard_normal((3, 3, 2, 3)), jnp.float32)
    shape = (1, 6, 6, 2)
    norm = jax.jit(lambda w: jax_tconv.operator_norm(w, shape, **kw))
    c = np.asarray(jax_tconv.conv_matrix(w, shape, **kw), np.float64)
    u, s, vt = np.linalg.svd(c)
    np.testing.assert_allclose(float(norm(w).value), s[0], rtol=RTOL)
    # d sigma_1 / dw = d/dw <u_1, C(w) v_1>, the top singular vectors held fixed.
    grad = jax.grad(lambda w: jax_tconv.operator_norm(w, shape, **kw).value)(w)
    v1 = jnp.asarray(vt[0].reshape(shape), jnp.float32)
    _, pullback = jax.vjp(lambda w: jax_tconv.conv(v1, w, **kw), w)
    expected = pullback(jnp.asarray(u[:, 0].reshape(3, 3, 3)[None], jnp.float32))[0]
    np.testing.assert_allclose(grad, expected, rtol=1e-3,
                               atol=1e-3 * float(jnp.abs(expected).max()))
    # Two steps do not converge; the estimate is still a lower bound.
    capped = jax_tconv.operator_norm(w, shape, max_iter=2, **kw)
    assert not bool(capped.converged) and int(capped.iterations) == 2
    assert float(capped.value) < s[0] * (1 + 1e-6)
    # A zero kernel: norm 0, converged at once (the same compiled program).
    zero = norm(jnp.zeros_like(w))
    assert float(zero.value) == 0 and bool(zero.converged) and int(zero.iterations) == 1


def test_errors():
    w = jnp.ones((3, 3, 1, 1))
    with pytest.raises(ValueError, match=r"operator_norm: input_shape must be the full shape of "
                                         r"the forward conv's input \(batch, channels and 2 "
                                         r"spatial sizes, as w has rank 4\), got \(8, 8\)"):
        jax_tconv.operator_norm(w, (8, 8))
    with pytest.raises(ValueError, match=r"operator_norm: tol must be a float in \(0, 1\), "
                                         r"got 0"):
        jax_tconv.operator_norm(w, (1, 8, 8, 1), tol=0)
    with pytest.raises(ValueError, match=r"operator_norm: max_iter must be >= 1, got 0"):
        jax_tconv.operator_norm(w, (1, 8, 8, 1), max_iter=0)
    with pytest.raises(ValueError, match=r"operator_norm: x has 2 input channels"):
        jax_tconv.operator_norm(w, (1, 8, 8, 2))
    with pytest.raises(ValueError, match=r"operator_norm: padding must be >= 0 \(Cᵀ is "
                                         r"conv_transpose, .*got -1\."):
        jax_tconv.operator_norm(w, (1, 8, 8, 1), padding=-1)
    with pytest.raises(ValueError, match=r"operator_norm: input_shape sizes must be >= 1"):
        jax_tconv.operator_norm(w, (1, 0, 8, 1))
