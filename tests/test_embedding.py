"""Golden embedding_bag model: hand-worked cases, integer semantics, errors, and bit-exactness vs torch/FBGEMM."""
from fractions import Fraction

import numpy as np
import pytest

from tridsa.sw import embedding as emb
from tridsa.sw.embedding import (
    MODES, dequantize_rowwise, embedding_bag, embedding_bag_rowwise, quantize_rowwise,
    rowwise_row_bytes, unpack_rowwise,
)

TORCH_REASON = "torch is the oracle for bit-exactness (pip install torch==2.13.0)"


def bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint32), b.view(np.uint32))


# -- hand-worked ---------------------------------------------------------------------------------

TABLE = np.array([[1, 2], [3, 0], [1, 5], [-4, 7]], np.float32)


def test_hand_worked_modes_and_empty_bag():
    idx, off = [0, 1, 2, 1], [0, 2, 2]
    assert embedding_bag(TABLE, idx, off, "sum").tolist() == [[4, 2], [0, 0], [4, 5]]
    assert embedding_bag(TABLE, idx, off, "mean").tolist() == [[2, 1], [0, 0], [2, 2.5]]
    assert embedding_bag(TABLE, idx, off, "max").tolist() == [[3, 2], [0, 0], [3, 5]]
    w = np.array([1, 2, 3, 4], np.float32)
    assert embedding_bag(TABLE, idx, off, "sum", per_sample_weights=w).tolist() == [[7, 2], [0, 0], [15, 15]]


def test_include_last_offset_and_2d_indices():
    idx = [0, 1, 2, 3, 3]
    out = embedding_bag(TABLE, idx, [0, 2, 4], include_last_offset=True)
    assert out.tolist() == [[4, 2], [-3, 12]]          # the last index lies outside every bag
    fixed = embedding_bag(TABLE, np.array([[0, 1], [2, 3]]), None, "sum")
    assert fixed.tolist() == embedding_bag(TABLE, [0, 1, 2, 3], [0, 2]).tolist()
    assert embedding_bag(TABLE, [], [], "max").shape == (0, 2)


def test_padding_idx_excluded_from_sum_mean_max():
    idx, off = [1, 0, 1, 1], [0, 2, 3]
    assert embedding_bag(TABLE, idx, off, "sum", padding_idx=1).tolist() == [[1, 2], [0, 0], [0, 0]]
    assert embedding_bag(TABLE, idx, off, "mean", padding_idx=1).tolist() == [[1, 2], [0, 0], [0, 0]]
    assert embedding_bag(TABLE, idx, off, "max", padding_idx=-3).tolist() == [[1, 2], [0, 0], [0, 0]]
    # the count of mean excludes padding: (1 + 1) / 2 and not / 3
    assert embedding_bag(TABLE, [0, 3, 2], [0], "mean", padding_idx=3).tolist() == [[1, 3.5]]


def test_float_max_ties_nan_and_signed_zero_keep_first():
    t = np.array([[np.nan, 2, -0.0], [3, np.nan, 0.0]], np.float32)
    a = embedding_bag(t, [0, 1], [0], "max")[0]
    b = embedding_bag(t, [1, 0], [0], "max")[0]
    assert np.isnan(a[0]) and a[1] == 2 and np.signbit(a[2])
    assert b[0] == 3 and np.isnan(b[1]) and not np.signbit(b[2])


def test_float_sum_order_is_sequential():
    t = np.array([[1e8], [1.0], [-1e8]], np.float32)
    # ((0 + 1e8) + 1) - 1e8 == 0 in float32; a pairwise or reordered sum would give 1
    assert embedding_bag(t, [0, 1, 2], [0])[0, 0] == 0
    assert embedding_bag(t, [0, 2, 1], [0])[0, 0] == 1


def test_weighted_sum_is_fused_without_padding_and_rounded_with_it():
    a = np.float32(1 + 2 ** -12)                           # a * a = 1 + 2**-11 + 2**-24 exactly
    t = np.array([[a], [-(a * a)], [0]], np.float32)       # row 1 = -(1 + 2**-11): a * a rounded
    w = np.array([1, a], np.float32)
    fused = embedding_bag(t, [1, 0], [0], per_sample_weights=w)
    assert fused[0, 0] == np.float32(2 ** -24)             # fma keeps the product's low bits
    unfused = embedding_bag(t, [1, 0], [0], per_sample_weights=w, padding_idx=2)
    assert unfused[0, 0] == 0                              # product rounded first, as torch does


# -- integer tables ------------------------------------------------------------------------------

def test_int_sum_wraps_modulo_2_32():
    t = np.array([[2 ** 31 - 1, -(2 ** 31)], [1, -1]], np.int32)
    out = embedding_bag(t, [0, 1], [0])
    assert out.dtype == np.int32
    assert out.tolist() == [[-(2 ** 31), 2 ** 31 - 1]]
    w = np.array([3, -2])
    assert embedding_bag(t, [0, 1], [0], per_sample_weights=w).tolist() == [[(3 * (2 ** 31 - 1) - 2 + 2 ** 31) % 2 ** 32 - 2 ** 31, (-3 * 2 ** 31 + 2 + 2 ** 31) % 2 ** 32 - 2 ** 31]]


@pytest.mark.parametrize("total,count,expected", [(5, 2, 3), (-5, 2, -3), (7, 4, 2), (-7, 4, -2), (6, 4, 2), (-6, 4, -2), (1, 3, 0), (2, 3, 1), (-2, 3, -1)])
def test_int_mean_rounds_half_away_from_zero(total, count, expected):
    t = np.array([[total], [0]], np.int8 if abs(total) < 128 else np.int32)
    out = embedding_bag(t, [0] + [1] * (count - 1), [0], "mean")
    assert out.dtype == np.int32 and out[0, 0] == expected


def test_int_tables_agree_with_exact_arithmetic():
    rng = np.random.default_rng(7)
    t = rng.integers(-128, 128, (20, 9)).astype(np.int8)
    idx = rng.integers(0, 20, 80)
    off = np.sort(rng.integers(0, 81, 12)); off[0] = 0
    w = rng.integers(-50, 50, 80)
    bounds = np.append(off, 80)
    for b in range(12):
        rows = t[idx[bounds[b]:bounds[b + 1]]].astype(np.int64)
        ws = w[bounds[b]:bounds[b + 1]]
        got_sum = embedding_bag(t, idx, off, "sum")[b]
        got_w = embedding_bag(t, idx, off, "sum", per_sample_weights=w)[b]
        got_max = embedding_bag(t, idx, off, "max")[b]
        got_mean = embedding_bag(t, idx, off, "mean")[b]
        assert got_sum.tolist() == rows.sum(0).tolist()
        assert got_w.tolist() == (rows * ws[:, None]).sum(0).tolist()
        assert got_max.tolist() == (rows.max(0).tolist() if len(rows) else [0] * 9)
        n = max(len(rows), 1)
        expect = [int(np.sign(s)) * int(Fraction(abs(int(s)), n) + Fraction(1, 2)) for s in rows.sum(0)]
        assert got_mean.tolist() == expect


# -- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(offsets=[1, 2]), ValueError, "offsets[0]"),
    (dict(offsets=[0, 3, 2]), ValueError, "offsets[2]=2 < offsets[1]=3"),
    (dict(offsets=[0, 5]), ValueError, "offsets[-1]=5"),
    (dict(indices=[0, 1, 4, 2]), IndexError, "indices[2]=4"),
    (dict(indices=[0, -1, 1, 2]), IndexError, "indices[1]=-1"),
    (dict(indices=[0.0, 1.0, 1.0, 2.0]), TypeError, "indices"),
    (dict(offsets=np.array([0.0, 2.0])), TypeError, "offsets"),
    (dict(mode="avg"), ValueError, "mode='avg'"),
    (dict(mode="mean", per_sample_weights=np.ones(4, np.float32)), ValueError, "per_sample_weights"),
    (dict(per_sample_weights=np.ones(4)), TypeError, "float32"),
    (dict(per_sample_weights=np.ones(3, np.float32)), ValueError, "one weight per index"),
    (dict(padding_idx=4), ValueError, "padding_idx=4"),
    (dict(padding_idx=1.0), TypeError, "padding_idx"),
    (dict(table=TABLE.astype(np.float64)), TypeError, "table dtype"),
    (dict(table=TABLE[0]), ValueError, "2-D"),
    (dict(include_last_offset=True, offsets=[]), ValueError, "include_last_offset"),
    (dict(offsets=None), ValueError, "2-D indices"),
])
def test_bad_arguments_name_the_argument(kwargs, exc, words):
    args = dict(table=TABLE, indices=[0, 1, 3, 2], offsets=[0, 2])
    args.update(kwargs)
    with pytest.raises(exc) as info:
        embedding_bag(**args)
    assert words in str(info.value)


def test_integer_weights_checked():
    t = TABLE.astype(np.int32)
    with pytest.raises(TypeError, match="per_sample_weights"):
        embedding_bag(t, [0, 1], [0], per_sample_weights=np.ones(2, np.float32))
    with pytest.raises(ValueError, match="int32 range"):
        embedding_bag(t, [0, 1], [0], per_sample_weights=[2 ** 31, 0])


# -- fused multiply-add emulation ----------------------------------------------------------------

def _exact_round32(x: Fraction) -> np.float32:
    """float32 nearest to x, ties to even, by bracketing (no double rounding)."""
    guess = np.float32(float(x))
    lo = np.nextafter(guess, np.float32(-np.inf))
    hi = np.nextafter(guess, np.float32(np.inf))
    best = min((lo, guess, hi), key=lambda c: (abs(Fraction(float(c)) - x), int(np.array(c).view(np.uint32)) & 1))
    return best


def test_fma32_is_correctly_rounded():
    rng = np.random.default_rng(3)
    a = (rng.standard_normal(400) * 2.0 ** rng.integers(-20, 20, 400)).astype(np.float32)
    b = (rng.standard_normal(400)).astype(np.float32)
    c = (-(a * b) + (rng.standard_normal(400) * 1e-9).astype(np.float32)).astype(np.float32)  # cancellation
    c[::2] = rng.standard_normal(200).astype(np.float32)
    # hard cases: exact product lies just off a float32 tie, where double rounding would go wrong
    a[:3] = b[:3] = np.float32(1 + 2 ** -12)
    c[:3] = np.float32(2 ** -60), np.float32(-2 ** -60), np.float32(0)
    got = emb._fma32(a, b, c)
    for x, y, z, r in zip(a, b, c, got):
        assert r == _exact_round32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))


# -- rowwise quantization ------------------------------------------------------------------------

def test_rowwise_8bit_layout_by_hand():
    x = np.array([[-1.0, 0.0, 1.0, 0.5]], np.float32)
    q = quantize_rowwise(x, 8)
    assert q.shape == (1, 4 + 8) and q.dtype == np.uint8 and rowwise_row_bytes(4, 8) == 12
    scale = np.float32(2) / np.float32(255)
    assert q[0, :4].tolist() == [0, 128, 255, 191]        # 127.5 -> 128 (half even), 191.25 -> 191
    assert q[0, 4:8].tobytes() == np.array([scale], "<f4").tobytes()
    assert q[0, 8:].tobytes() == np.array([-1.0], "<f4").tobytes()
    ties = quantize_rowwise(np.array([[0, 255, 2.5, 0.5, 3.5, 254.5]], np.float32), 8)
    assert ties[0, :6].tolist() == [0, 255, 2, 0, 4, 254]  # scale 1: ties go to even


def test_rowwise_4bit_layout_by_hand():
    x = np.array([[0.0, 15.0, 3.0, 4.0]], np.float32)
    q = quantize_rowwise(x, 4)
    assert q.shape == (1, 2 + 4) and rowwise_row_bytes(4, 4) == 6
    assert q[0, :2].tolist() == [0xF0, 0x43]               # even column in the low nibble
    assert q[0, 2:].tobytes() == np.array([1.0, 0.0], "<f2").tobytes()
    values, scale, bias = unpack_rowwise(q, 4)
    assert values.tolist() == [[0, 15, 3, 4]] and scale.tolist() == [1.0] and bias.tolist() == [0.0]
    assert dequantize_rowwise(q, 4).tolist() == x.tolist()
    ties = quantize_rowwise(np.array([[0, 15, 2.5, 3.5, 0.5, 14.5]], np.float32), 4)
    assert unpack_rowwise(ties, 4)[0].tolist() == [[0, 15, 2, 4, 0, 14]]


@pytest.mark.parametrize("bits", [8, 4])
def test_rowwise_roundtrip_error_within_half_step(bits):
    rng = np.random.default_rng(bits)
    x = rng.standard_normal((50, 16)).astype(np.float32)
    x[3] = 0.25                                             # constant row
    q = quantize_rowwise(x, bits)
    _, scale, _ = unpack_rowwise(q, bits)
    err = np.abs(dequantize_rowwise(q, bits) - x)
    slack = 0.5 if bits == 8 else 0.5 + 2 ** -10 * 2 ** 4   # fp16 bias rounding in 4 bit
    assert np.all(err <= scale[:, None] * slack + 1e-6)
    assert np.all(err[3] == 0)


def test_rowwise_mean_and_max():
    rng = np.random.default_rng(5)
    q = quantize_rowwise(rng.standard_normal((10, 6)).astype(np.float32), 8)
    idx, off = rng.integers(0, 10, 30), [0, 7, 7, 20]
    s = embedding_bag_rowwise(q, 8, idx, off, "sum")
    m = embedding_bag_rowwise(q, 8, idx, off, "mean")
    lengths = np.array([7, 0, 13, 10], np.float32)
    recip = np.float32(1) / np.maximum(lengths, 1)
    assert bits_equal(m, (s * recip[:, None]).astype(np.float32)) and np.all(m[1] == 0)
    values, scale, bias = unpack_rowwise(q, 8)
    rows = emb._fma32(scale[:, None], values, bias[:, None])
    assert bits_equal(embedding_bag_rowwise(q, 8, idx, off, "max"), embedding_bag(rows, idx, off, "max"))


def test_rowwise_bad_arguments():
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="bits=2"):
        quantize_rowwise(x, 2)
    with pytest.raises(TypeError, match="float32"):
        quantize_rowwise(x.astype(np.float64))
    with pytest.raises(ValueError, match="even"):
        quantize_rowwise(np.zeros((2, 3), np.float32), 4)
    with pytest.raises(ValueError, match="finite"):
        quantize_rowwise(np.full((1, 2), np.inf, np.float32))
    with pytest.raises(ValueError, match="float16 range"):
        quantize_rowwise(np.full((1, 2), 1e6, np.float32), 4)
    q = quantize_rowwise(x)
    with pytest.raises(TypeError, match="qtable"):
        embedding_bag_rowwise(q.astype(np.int8), 8, [0], [0])
    with pytest.raises(IndexError, match=r"indices\[1\]=2"):
        embedding_bag_rowwise(q, 8, [0, 2], [0])
    with pytest.raises(ValueError, match="mode"):
        embedding_bag_rowwise(q, 8, [0, 1], [0], mode="min")


# -- bit-exact against torch ---------------------------------------------------------------------

def _random_case(rng, n_max=60):
    rows, dim = int(rng.integers(1, 20)), int(rng.integers(1, 40))
    n = int(rng.integers(0, n_max))
    idx = rng.integers(0, rows, n)                      # repeated indices are common
    nb = int(rng.integers(1, 10))                       # torch 2.13 crashes on empty offsets in max mode
    off = np.sort(rng.integers(0, n + 1, nb))
    off[0] = 0
    return rows, dim, idx, off


def test_float_embedding_bag_matches_torch_bitwise():
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    fn = torch.nn.functional.embedding_bag
    rng = np.random.default_rng(1)
    checked = set()
    for trial in range(150):
        rows, dim, idx, off = _random_case(rng)
        t = rng.standard_normal((rows, dim)).astype(np.float32)
        if trial % 3 == 0:
            t = np.round(t)                             # many ties for max
        last = bool(rng.integers(0, 2))
        if last:
            off = np.append(off, idx.size)              # torch ignores offsets[-1] with padding_idx
        pad = None if trial % 2 else int(rng.integers(-rows, rows))
        for mode in MODES:
            w = rng.standard_normal(idx.size).astype(np.float32) if mode == "sum" and trial % 4 < 2 else None
            ref = fn(torch.from_numpy(idx), torch.from_numpy(t), torch.from_numpy(off), mode=mode,
                     per_sample_weights=None if w is None else torch.from_numpy(w),
                     include_last_offset=last, padding_idx=pad).numpy()
            got = embedding_bag(t, idx, off, mode, per_sample_weights=w, include_last_offset=last, padding_idx=pad)
            assert bits_equal(got, ref), (trial, mode, pad, last, w is not None)
            checked.add((mode, pad is None, last, w is not None))
    assert len(checked) == 16                           # every combination was exercised


@pytest.mark.parametrize("bits", [8, 4])
def test_rowwise_matches_torch_fbgemm_bitwise(bits):
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    ops = torch.ops.quantized
    prepack, unpack, bag = {
        8: (ops.embedding_bag_byte_prepack, ops.embedding_bag_byte_unpack, ops.embedding_bag_byte_rowwise_offsets),
        4: (ops.embedding_bag_4bit_prepack, ops.embedding_bag_4bit_unpack, ops.embedding_bag_4bit_rowwise_offsets),
    }[bits]
    rng = np.random.default_rng(10 + bits)
    for trial in range(60):
        rows, dim, idx, off = _random_case(rng)
        dim += dim % 2
        t = (rng.standard_normal((rows, dim)) * rng.choice([1e-3, 1.0, 100.0])).astype(np.float32)
        if trial % 5 == 0:
            t[0] = 0.5                                  # constant row: scale corner case
        qt = prepack(torch.from_numpy(t)).numpy()
        assert np.array_equal(quantize_rowwise(t, bits), qt)
        assert bits_equal(dequantize_rowwise(qt, bits), unpack(torch.from_numpy(qt)).numpy())
        w = rng.standard_normal(idx.size).astype(np.float32) if trial % 2 else None
        last = trial % 3 == 0
        offsets = np.append(off, idx.size) if last else off
        ref = bag(torch.from_numpy(qt), torch.from_numpy(idx), torch.from_numpy(offsets), False, 0, False,
                  None if w is None else torch.from_numpy(w), None, last).numpy()
        assert bits_equal(embedding_bag_rowwise(qt, bits, idx, offsets, "sum", w, include_last_offset=last), ref)
