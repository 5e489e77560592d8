"""Integer workloads: weight files, accuracy on held-out data, bit-exactness through the driver, quantize helpers."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tridsa.sw import workloads as wl
from tridsa.sw.quantize import (act_qparams, dyadic, fold_bn, pack_int4, quantize_weights, rescale, round_shift,
                                unpack_int4)
from tridsa.sw.workloads import dlrm

IMAGE_MODELS = ("cnn", "transformer", "lstm")
ALL_MODELS = IMAGE_MODELS + ("dlrm",)
OUT_RANGES = {"int4": (-8, 7), "int8": (-128, 127), "uint8": (0, 255), "int32": (-(2 ** 31), 2 ** 31 - 1)}


class RefAcc:
    """Independent re-computation of the accelerator interface.

    Direct-loop convolution (no im2col), ``floor_divide`` requantization with the single-rounding
    half-up rule, Python loops for bags. Records every call as ``(op, precision)``.
    """

    def __init__(self):
        self.calls = []

    @staticmethod
    def _operand(x, precision):
        x = np.asarray(x)
        lo, hi = (-8, 7) if precision == "int4" else (-128, 255)
        assert x.dtype in (np.int8, np.uint8), x.dtype
        assert x.min() >= lo and x.max() <= hi, (precision, x.min(), x.max())
        return x.astype(np.int64)

    @staticmethod
    def _output(acc, bias, rq, relu, out_dtype):
        """Channels on the last axis."""
        v = acc + (0 if bias is None else np.asarray(bias, dtype=np.int64))
        if rq is None:
            assert out_dtype in (None, "int32")
            return v.astype(np.int32)
        assert rq.rounding == "half_up"
        fmt = out_dtype or "int8"
        n = v.shape[-1]
        m = np.broadcast_to(np.asarray(rq.multiplier, dtype=np.int64), (n,))
        s = np.broadcast_to(np.asarray(rq.shift, dtype=np.int64), (n,))
        half = np.where(s > 0, np.power(2, np.maximum(s - 1, 0), dtype=np.int64), 0)
        y = np.floor_divide(v * m + half, np.power(2, s, dtype=np.int64)) + rq.zero_point
        lo, hi = OUT_RANGES[fmt]
        y = np.clip(y, max(lo, rq.zero_point) if relu else lo, hi)
        return y.astype(np.int32 if fmt == "int32" else np.uint8 if fmt == "uint8" else np.int8)

    def matmul(self, a, b, bias=None, requant=None, relu=False, precision="int8", out_dtype=None):
        self.calls.append(("matmul", precision))
        acc = self._operand(a, precision) @ self._operand(b, precision)
        return self._output(acc, bias, requant, relu, out_dtype)

    def matmul_batch(self, a, b, bias=None, requant=None, relu=False, precision="int8", out_dtype=None):
        """Shared bias and requant only; a Python loop over the problems."""
        self.calls.append(("matmul_batch", precision))
        assert np.ndim(a) == np.ndim(b) == 3 and len(a) == len(b)
        return np.stack([self._output(self._operand(x, precision) @ self._operand(y, precision), bias, requant, relu,
                                      out_dtype) for x, y in zip(a, b)])

    def conv2d(self, x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, requant=None, relu=False,
               precision="int8", out_dtype=None):
        self.calls.append(("conv2d" if groups == 1 else "conv2d_depthwise", precision))
        assert padding == 0 and dilation == 1
        x, w = self._operand(x, precision), self._operand(w, precision)
        n, c, hgt, wid = x.shape
        o, cg, kh, kw = w.shape
        ho, wo = (hgt - kh) // stride + 1, (wid - kw) // stride + 1
        acc = np.zeros((n, o, ho, wo), dtype=np.int64)
        og = o // groups
        for g in range(groups):
            xs = x[:, g * cg:(g + 1) * cg]
            for i in range(kh):
                for j in range(kw):
                    patch = xs[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
                    acc[:, g * og:(g + 1) * og] += np.einsum("bchw,oc->bohw", patch, w[g * og:(g + 1) * og, :, i, j])
        y = self._output(acc.transpose(0, 2, 3, 1), bias, requant, relu, out_dtype)
        return y.transpose(0, 3, 1, 2)

    def embedding_bag(self, table, indices, offsets, mode="sum", per_sample_weights=None):
        self.calls.append(("embedding_bag", str(np.asarray(table).dtype)))
        assert mode == "sum" and per_sample_weights is None
        bounds = list(offsets) + [len(indices)]
        return np.array([[sum(int(table[k][d]) for k in indices[bounds[b]:bounds[b + 1]])
                          for d in range(table.shape[1])] for b in range(len(offsets))], dtype=np.int32)


def load(name, precision):
    return getattr(wl, f"load_{name}")(precision)


@pytest.fixture(scope="module")
def digits():
    return wl.digits_test_set()


@pytest.fixture(scope="module")
def ctr():
    return dlrm.synthetic_ctr(2000, 2)


def run(model, acc, sample):
    return model.forward(acc, *sample) if isinstance(sample, tuple) else model.forward(acc, sample)


def few(name, digits, ctr, n=3):
    if name == "dlrm":
        d, s, _ = dlrm.synthetic_ctr(n, 7)
        return d, s
    return digits[0][:n]


# -- weight files ----------------------------------------------------------------------------------
def test_weight_files_are_small():
    files = list(wl.WEIGHTS_DIR.glob("*.npz"))
    assert len(files) == 3 * len(ALL_MODELS) + 1
    assert sum(f.stat().st_size for f in files) < 400_000


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("precision", ["int8", "mixed"])
def test_weight_files_load(name, precision):
    model = load(name, precision)
    assert model.precision == precision
    layers = model.layers()
    assert layers and all({"name", "op", "precision", "weight_shape"} <= set(d) for d in layers)
    precisions = {d["precision"] for d in layers}
    assert ("int4" in precisions) == (precision == "mixed")
    for layer in model.qlayers.values():
        bound = 7 if layer.precision == "int4" else 127
        assert layer.weight.dtype == np.int8 and np.abs(layer.weight).max() <= bound
        assert layer.bias.dtype == np.int32 and layer.bias.shape == (layer.weight.shape[0 if layer.kind == "conv2d" else 1],)
        assert np.all((layer.multiplier >= 0) & (layer.multiplier < 2 ** 31))
        assert np.all((layer.shift >= 0) & (layer.shift <= 62))
    assert getattr(wl, f"load_{name}_float")().params


def test_save_load_round_trip(tmp_path, digits):
    model = load("cnn", "mixed")
    model.save(tmp_path / "m.npz")
    again = wl.cnn.CNN.load(tmp_path / "m.npz")
    for key, layer in model.qlayers.items():
        assert np.array_equal(layer.weight, again.qlayers[key].weight)
    assert np.array_equal(model.forward(RefAcc(), digits[0][:8]), again.forward(RefAcc(), digits[0][:8]))


# -- accuracy --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_model_accuracy(name, digits):
    x, y = digits
    fl = wl.accuracy(getattr(wl, f"load_{name}_float")().forward, x, y)
    i8 = wl.accuracy(lambda b: load(name, "int8").forward(RefAcc(), b), x, y)
    mixed = wl.accuracy(lambda b: load(name, "mixed").forward(RefAcc(), b), x, y)
    assert fl >= 0.96
    assert i8 >= fl - 0.01
    assert mixed >= fl - 0.02


def test_dlrm_quality(ctr):
    dense, sparse, clicks = ctr
    f = wl.load_dlrm_float().forward(dense, sparse)
    i8 = wl.load_dlrm("int8").forward(RefAcc(), dense, sparse)
    mixed = wl.load_dlrm("mixed").forward(RefAcc(), dense, sparse)
    assert i8.dtype == np.int32 and i8.shape == (len(clicks),)
    fa, ia, ma = (dlrm.auc(v, clicks) for v in (f, i8, mixed))
    assert fa >= 0.85 and ia >= fa - 0.005 and ma >= fa - 0.05
    assert np.mean((i8 > 0) == clicks) >= np.mean((f > 0) == clicks) - 0.01


def test_dlrm_click_probability():
    model = wl.load_dlrm("int8")
    p = model.click_probability(np.array([-10 ** 6, 0, 10 ** 6]))
    assert p.tolist() == [0, 2 ** 14, 2 ** 15]


# -- bit-exactness ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("precision", ["int8", "mixed"])
def test_forward_through_driver_is_bit_exact(name, precision, digits, ctr):
    """The golden driver and the independent re-computation agree bit for bit."""
    from tridsa import Accelerator
    acc = Accelerator(backend="golden")
    if name == "dlrm" and not hasattr(acc, "embedding_bag"):
        pytest.skip("the driver has no embedding_bag yet")
    model = load(name, precision)
    sample = few(name, digits, ctr)
    got = run(model, acc, sample)
    want = run(model, RefAcc(), sample)
    assert got.dtype == want.dtype == np.int32
    assert np.array_equal(got, want)


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("precision", ["int8", "mixed"])
def test_every_gemm_is_offloaded(name, precision, digits, ctr):
    model = load(name, precision)
    acc = RefAcc()
    sample = few(name, digits, ctr, n=2)
    run(model, acc, sample)
    ops = [op for op, _ in acc.calls]
    expected = {
        "cnn": ["conv2d", "conv2d", "conv2d_depthwise", "conv2d", "matmul"],
        "transformer": ["matmul"] * 2 + ["matmul_batch"] * 2 + ["matmul"] * 4,    # every sample and head batched
        "lstm": ["matmul"] * (1 + 8 + 1),
        "dlrm": ["matmul"] * 2 + ["embedding_bag"] + ["matmul"] * 2,     # one table-batched GATHER
    }[name]
    assert ops == expected
    used = {p for op, p in acc.calls if op != "embedding_bag"}
    assert used == {d["precision"] for d in model.layers()}
    assert all(p == "int8" for op, p in acc.calls if op == "embedding_bag")


def test_forward_is_integer_in_integer_out(digits):
    for name in IMAGE_MODELS:
        out = load(name, "int8").forward(RefAcc(), digits[0][:2].reshape(2, 64))
        assert out.dtype == np.int32 and out.shape == (2, 10)


# -- input checks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("x, exc", [
    (np.zeros((2, 8, 8), dtype=np.float32), TypeError),
    (np.zeros((2, 7, 8), dtype=np.int8), ValueError),
    (np.full((2, 8, 8), 17, dtype=np.int16), ValueError),
])
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_bad_pixels(name, x, exc):
    with pytest.raises(exc):
        load(name, "int8").forward(RefAcc(), x)


def test_bad_precision_and_inputs():
    with pytest.raises(ValueError, match="precision"):
        wl.load_cnn("int2")
    d, s, _ = dlrm.synthetic_ctr(3, 0)
    with pytest.raises(ValueError, match="sparse"):
        wl.load_dlrm("int8").forward(RefAcc(), d, s[:2])
    with pytest.raises(ValueError, match="dense"):
        wl.load_dlrm("int8").forward(RefAcc(), d[:, :3], s)
    with pytest.raises(ValueError):
        dlrm.synthetic_ctr(0)


def test_synthetic_ctr_is_deterministic_and_zipf():
    d1, s1, c1 = dlrm.synthetic_ctr(3000, 5)
    d2, s2, c2 = dlrm.synthetic_ctr(3000, 5)
    assert np.array_equal(d1, d2) and np.array_equal(c1, c2)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(s1, s2))
    assert not np.array_equal(c1, dlrm.synthetic_ctr(3000, 6)[2])
    for (idx, off), rows in zip(s1, dlrm.TABLE_ROWS):
        assert idx.min() >= 0 and idx.max() < rows and off[0] == 0 and np.all(np.diff(off) >= 1)
        counts = np.sort(np.bincount(idx, minlength=rows))[::-1]
        assert counts[0] > 4 * np.median(counts)              # a heavy head: Zipf, not uniform
    assert 0.2 < c1.mean() < 0.8 and d1.dtype == np.int8


def test_auc():
    assert dlrm.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert dlrm.auc([1, 1], [0, 1]) == 0.5


# -- quantize helpers ------------------------------------------------------------------------------
@given(st.floats(min_value=1e-9, max_value=1e6))
@settings(max_examples=200, deadline=None)
def test_dyadic_is_close(scale):
    m, s = dyadic(scale)
    assert 2 ** 30 <= m < 2 ** 31 and 0 <= s <= 62
    assert abs(Fraction(int(m), 2 ** int(s)) - Fraction(scale)) <= Fraction(scale) * Fraction(1, 2 ** 30)


def test_dyadic_bad_scale():
    for bad in (0.0, -1.0, float("nan"), 2.0 ** 31):
        with pytest.raises(ValueError):
            dyadic(bad)


@given(st.integers(-(2 ** 40), 2 ** 40), st.integers(0, 40), st.sampled_from(["half_up", "half_even"]))
@settings(max_examples=300, deadline=None)
def test_round_shift_matches_fractions(x, s, rounding):
    q = Fraction(x, 2 ** s)
    fl = q.numerator // q.denominator
    rem = q - fl
    want = fl + (rem > Fraction(1, 2) or (rem == Fraction(1, 2) and (rounding == "half_up" or fl % 2 == 1)))
    assert int(round_shift(np.array([x]), s, rounding)[0]) == want


def test_rescale_saturates_and_relu():
    m, s = dyadic(0.5)
    assert rescale(np.array([1000, -1000, 3]), m, s, 0, "int8").tolist() == [127, -128, 2]
    assert rescale(np.array([-10, 10]), m, s, -8, "int4", relu=True).tolist() == [-8, -3]
    with pytest.raises(ValueError):
        rescale(np.array([2 ** 31]), m, s)


@given(st.lists(st.integers(-8, 7), max_size=33))
def test_int4_pack_round_trip(values):
    packed = pack_int4(values)
    assert packed.dtype == np.uint8 and packed.size == (len(values) + 1) // 2
    assert unpack_int4(packed, len(values)).tolist() == values


def test_quantize_weights_and_act_qparams():
    w = np.array([[1.0, -0.5], [0.25, 0.0], [-2.0, 0.0]])
    q, s = quantize_weights(w, 4, axis=0)
    assert np.allclose(s, [1 / 7, 0.25 / 7, 2 / 7]) and q.tolist() == [[7, -4], [7, 0], [-7, 0]]
    scale, zp = act_qparams(-1.0, 3.0, "int8")
    assert zp == -64 and scale == pytest.approx(4 / 255)        # real 0 is exactly q = zp
    assert act_qparams(0.0, 1.5, "int4") == (pytest.approx(0.1), -8)
    assert act_qparams(-2.0, 1.0, "int8", symmetric=True) == (pytest.approx(2 / 127), 0)
    with pytest.raises(ValueError):
        quantize_weights(w, 3)


def test_fold_bn_matches_bn():
    rng = np.random.default_rng(0)
    w, x = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    gamma, beta, mean, var = rng.normal(size=4), rng.normal(size=4), rng.normal(size=4), rng.uniform(0.5, 2, 4)
    wf, bf = fold_bn(w, None, gamma, beta, mean, var)
    bn = (x @ w.T - mean) / np.sqrt(var + 1e-5) * gamma + beta
    assert np.allclose(x @ wf.T + bf, bn)
