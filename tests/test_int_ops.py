"""I-BERT integer operations and integer sigmoid/tanh: hand-computed cases, exact properties, error bounds."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tridsa.sw.int_ops import (i_erf, i_exp, i_gelu, i_layernorm, i_poly, i_sigmoid, i_softmax, i_sqrt,
                               i_tanh)

_erf = np.vectorize(math.erf)
S10 = 2.0 ** -10


def test_i_poly_hand_computed():
    # a (x + b)**2 + c with S = 1/16: q_b = floor(1.353*16) = 21, q_c = floor(0.344*256/0.3585) = 245
    q, s = i_poly(np.array([-9, 0]), 1 / 16, 0.3585, 1.353, 0.344)
    assert q.tolist() == [(-9 + 21) ** 2 + 245, 21 ** 2 + 245]
    assert s == pytest.approx(0.3585 / 256)


def test_i_exp_hand_computed():
    # S = 1/16: q_ln2 = floor(ln2 * 16) = 11; q = -20 -> z = 1, q_p = -9, i-poly 389, >> 1 = 194
    q, s = i_exp(np.array([-20, 0, -11]), 1 / 16)
    assert q.tolist() == [194, 21 ** 2 + 245, (0 + 21) ** 2 + 245 >> 1]
    assert 194 * s == pytest.approx(math.exp(-1.25), abs=0.02)


def test_i_exp_error_bound():
    q = np.arange(-20 * 1024, 1)
    e, s = i_exp(q, S10)
    assert np.max(np.abs(e * s - np.exp(q * S10))) < 2.5e-3
    assert np.all(np.diff(e) >= 0)                    # monotone


def test_i_softmax_properties():
    rng = np.random.default_rng(0)
    q = rng.integers(-4000, 4000, (64, 8))
    p, s = i_softmax(q, 1e-3)
    assert s == 2.0 ** -8 and p.min() >= 0 and p.max() <= 255
    ref = np.exp(q * 1e-3)
    ref /= ref.sum(-1, keepdims=True)
    assert np.max(np.abs(p * s - ref)) < 6e-3
    assert np.all(p.sum(-1) <= 256) and np.all(p.sum(-1) >= 256 - 8)
    p2, _ = i_softmax(q + 12345, 1e-3)               # shift invariance is exact
    assert np.array_equal(p, p2)


def test_i_softmax_saturates_one_hot():
    p, _ = i_softmax(np.array([[0, -10 ** 6, -10 ** 6]]), 1e-3)
    assert p.tolist() == [[255, 0, 0]]


def test_i_gelu_and_erf_error_bounds():
    q = np.arange(-8 * 1024, 8 * 1024 + 1)
    x = q * S10
    g, sg = i_gelu(q, S10)
    assert np.max(np.abs(g * sg - x / 2 * (1 + _erf(x / math.sqrt(2))))) < 0.02
    f, sf = i_erf(q, S10)
    err = np.abs(f * sf - _erf(x))
    # the paper's polynomial is exact at 0 and saturates to 1 beyond 1.769; its worst error is near 0+
    assert f[q == 0] == 0 and np.max(err) < 0.1 and np.max(err[np.abs(x) > 1]) < 0.02
    assert sg > 0 and sf > 0


def test_i_gelu_hand_computed():
    # S = 1/4: i-erf at S/sqrt2; q = 0 -> 0; large q -> x (erf saturates at c = 1)
    g, s = i_gelu(np.array([0, 40]), 0.25)
    assert g[0] == 0
    assert g[1] * s == pytest.approx(10.0, rel=0.01)


@given(st.integers(min_value=0, max_value=2 ** 62))
@settings(max_examples=300, deadline=None)
def test_i_sqrt_is_floor_sqrt(n):
    assert int(i_sqrt(np.array([n]))[0]) == math.isqrt(n)


def test_i_sqrt_hand_computed():
    # n = 10: x0 = 2**ceil(4/2) = 4, x1 = (4 + 2) // 2 = 3, x2 = (3 + 3) // 2 = 3 -> stop, 3
    assert i_sqrt(np.array([10, 0, 1, 15, 16, 17])).tolist() == [3, 0, 1, 3, 4, 4]


def test_i_layernorm():
    rng = np.random.default_rng(1)
    q = rng.integers(-30000, 30000, (32, 32))
    y, s = i_layernorm(q)
    xf = q.astype(float)
    ref = (xf - xf.mean(-1, keepdims=True)) / xf.std(-1, keepdims=True)
    assert np.max(np.abs(y * s - ref)) < 1e-3
    assert np.max(np.abs(y)) <= 2 ** 30
    y2, _ = i_layernorm(q + 777)                     # translation invariance is exact
    assert np.array_equal(y, y2)


def test_i_layernorm_hand_computed():
    # [1, 3]: mean 2, y = [-1, 1], std = isqrt(2) = 1, factor = 2**31 -> out = -+2**30
    y, s = i_layernorm(np.array([[1, 3]]))
    assert y.tolist() == [[-(2 ** 30), 2 ** 30]] and s == pytest.approx(math.sqrt(2) / 2 ** 30)


def test_i_sigmoid_tanh():
    q = np.arange(-12 * 1024, 12 * 1024 + 1)
    x = q * S10
    sg, s = i_sigmoid(q, S10)
    assert s == 2.0 ** -15
    assert np.max(np.abs(sg * s - 1 / (1 + np.exp(-x)))) < 1e-3
    assert np.array_equal(sg + sg[::-1], np.full(q.shape, 2 ** 15))     # sigma(-x) = 1 - sigma(x) exactly
    th, s = i_tanh(q, S10)
    assert np.max(np.abs(th * s - np.tanh(x))) < 2e-3
    assert np.array_equal(th, -th[::-1]) and th[q == 0] == 0           # odd exactly
    assert np.all(np.diff(sg) >= 0) and np.all(np.diff(th) >= 0)


def test_i_sigmoid_hand_computed():
    assert i_sigmoid(np.array([0]), S10)[0].tolist() == [2 ** 14]
    assert i_tanh(np.array([0]), S10)[0].tolist() == [0]


@pytest.mark.parametrize("call, exc", [
    (lambda: i_exp(np.array([1]), S10), ValueError),
    (lambda: i_exp(np.array([-1.0]), S10), TypeError),
    (lambda: i_exp(np.array([-1]), 0.0), ValueError),
    (lambda: i_exp(np.array([-1]), 1.0), ValueError),
    (lambda: i_sqrt(np.array([-1])), ValueError),
    (lambda: i_softmax(np.array([[1, 2]]), S10, out_bits=0), ValueError),
    (lambda: i_softmax(np.array([[1, 2]]), 1e-12), ValueError),
    (lambda: i_layernorm(np.array([[0, 2 ** 40]])), ValueError),
])
def test_bad_input(call, exc):
    with pytest.raises(exc):
        call()
