"""overlap_map against an explicit count of (input element, kernel tap) pairs."""

import itertools

import numpy as np
import pytest
from nn_helpers import pairs, per_dim

from jax_tconv.checkerboard import overlap_map


def count_transpose(k, s, d, pads, op, i):
    """Outputs o with o == p*s - lo + d*t, counted pair by pair over all p and t."""
    o = [(ij - 1) * sj - lo - hi + dj * (kj - 1) + 1 + opj
         for ij, kj, sj, dj, (lo, hi), opj in zip(i, k, s, d, pads, op)]
    counts = np.zeros(o, np.int64)
    for p in itertools.product(*map(range, i)):
        for t in itertools.product(*map(range, k)):
            at = tuple(pj * sj - lo + dj * tj for pj, tj, sj, dj, (lo, _)
                       in zip(p, t, s, d, pads))
            if all(0 <= a < oj for a, oj in zip(at, o)):
                counts[at] += 1
    return counts


def count_resize(k, s, d, o, i):
    """Taps of the conv on the i*s resized input (padding t//2 before) inside that input."""
    counts = np.zeros(o, np.int64)
    lo = [(oj - ij * sj + dj * (kj - 1)) // 2 for oj, ij, sj, dj, kj in zip(o, i, s, d, k)]
    for at in itertools.product(*map(range, o)):
        for t in itertools.product(*map(range, k)):
            q = [a - lj + dj * tj for a, lj, dj, tj in zip(at, lo, d, t)]
            counts[at] += all(0 <= qj < ij * sj for qj, ij, sj in zip(q, i, s))
    return counts


GRID = [
    ((3,), 2, 1, 1, 1, (5,)),
    ((4,), 2, 1, 1, 0, (4,)),
    ((5,), 3, 2, ((2, 1),), 2, (3,)),
    ((3, 4), (2, 2), 1, 1, (1, 0), (3, 3)),
    ((3, 2), (3, 1), (1, 2), 0, 0, (2, 4)),
    ((2, 3, 3), (2, 1, 2), 1, (0, 1, 1), 0, (2, 2, 3)),
]


@pytest.mark.parametrize("k,s,d,padding,op,i", GRID)
def test_overlap_map_matches_explicit_count(k, s, d, padding, op, i):
    n = len(k)
    got = overlap_map(k, s, dilation=d, padding=padding, output_padding=op, input_shape=i)
    expected = count_transpose(k, per_dim(s, n), per_dim(d, n), pairs(padding, n),
                               per_dim(op, n), i)
    np.testing.assert_array_equal(got, expected)
    resize = overlap_map(k, s, dilation=d, padding=padding, output_padding=op, input_shape=i,
                         kind="resize")
    np.testing.assert_array_equal(resize, count_resize(k, per_dim(s, n), per_dim(d, n),
                                                       got.shape, i))


def test_known_cases():
    # k=3, s=2: uneven, 1 and 2 alternate; in 2-D 1, 2, 4.
    np.testing.assert_array_equal(
        overlap_map((3,), 2, padding=1, output_padding=1, input_shape=(4,)),
        [1, 2, 1, 2, 1, 2, 1, 1])
    m = overlap_map((3, 3), 2, padding=1, output_padding=1, input_shape=(4, 4))
    np.testing.assert_array_equal(m[2:4, 2:4], [[1, 2], [2, 4]])
    # k=4, s=2: even in the interior (2 per dimension), 1 at the border.
    np.testing.assert_array_equal(overlap_map((4,), 2, padding=1, input_shape=(4,)),
                                  [1, 2, 2, 2, 2, 2, 2, 1])
    m = overlap_map((4, 4), 2, padding=1, input_shape=(4, 4))
    assert (m[1:-1, 1:-1] == 4).all() and m[0, 0] == 1
    # ResizeConv with k=3, s=2: every interior output gets all 9 taps.
    m = overlap_map((3, 3), 2, padding=1, output_padding=1, input_shape=(4, 4), kind="resize")
    assert m.shape == (8, 8)
    assert (m[1:-1, 1:-1] == 9).all() and m[0, 0] == 4


def test_overlap_map_errors():
    with pytest.raises(ValueError, match=r"overlap_map: kind must be one of \('transpose', "
                                         r"'resize'\), got 'deconv'"):
        overlap_map((3,), 2, input_shape=(4,), kind="deconv")
    with pytest.raises(ValueError, match=r"overlap_map: input_shape must hold 2 spatial sizes"):
        overlap_map((3, 3), 2, input_shape=(4,))
    with pytest.raises(ValueError, match=r"overlap_map: output_padding must be smaller than "
                                         r"max\(stride, dilation\)"):
        overlap_map((3,), 2, output_padding=2, input_shape=(4,))
