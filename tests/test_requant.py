# amaranth: UnusedElaboratable=no
"""Tests of integer requantization: golden model (tridsa.sw.requant) and gateware (tridsa.hw.requant).

The golden model is checked against an independent scalar reference written with Python ints and
``fractions.Fraction``, against TFLite's QuantizeMultiplier re-implemented here, and against ONNX's
reference QLinearMatMul. The gateware is checked against the golden model in the Amaranth simulator
and (slow) in cocotb on Verilator and Icarus. Random tests print their seed; set ``TRIDSA_SEED`` to
replay one.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import os
import random
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tridsa.hw.requant import RequantUnit
from tridsa.spec.config import REQUANT_REGISTERED, REQUANT_SERIAL_CYCLES
from tridsa.spec.requant import INT32_MAX, INT32_MIN, OUT_FORMATS, OUT_RANGES, ROUNDING
from tridsa.sw.requant import Requant, requantize, requantize_raw, round_shift, wrap_int32

import requant_tb
from requant_spec import _tflite_multiply, ref_requant
from requant_tb import EDGE_M, EDGE_S, EDGE_X, random_commands, random_rows

TESTS_DIR = Path(__file__).resolve().parent


def _seed() -> int:
    seed = int(os.environ.get("TRIDSA_SEED") or random.randrange(1 << 32))
    print(f"TRIDSA_SEED={seed}")
    return seed


def _check_against_ref(x, b, m, s, rounding, zp, fmt, relu, enable=True):
    got = requantize_raw(x, b, m, s, enable=enable, rounding=rounding, zero_point=zp, out_format=fmt, relu=relu)
    x, b, m, s = np.broadcast_arrays(*(np.asarray(a, np.int64) for a in (x, b, m, s)))
    want = np.array([ref_requant(int(xi), int(bi), int(mi), int(si), rounding, zp, fmt, relu, enable)
                     for xi, bi, mi, si in zip(x.ravel(), b.ravel(), m.ravel(), s.ravel())], np.int64)
    bad = np.flatnonzero(got.ravel() != want)
    if bad.size:
        k = bad[0]
        raise AssertionError(f"{rounding} {fmt} relu={relu} zp={zp}: x={x.ravel()[k]} b={b.ravel()[k]} "
                             f"m={m.ravel()[k]} s={s.ravel()[k]}: got {got.ravel()[k]}, want {want[k]}")


# -- golden model vs reference -------------------------------------------------------------------------
def test_encodings():
    assert ROUNDING == {"tflite": 0, "half_up": 1, "half_even": 2}
    assert OUT_FORMATS == {"int32": 0, "int8": 1, "uint8": 2, "int4": 3}


@pytest.mark.parametrize("rounding", list(ROUNDING))
def test_edge_grid(rounding):
    """Every combination of edge accumulators, multipliers and shifts (incl. s=0, s=62, m=0, left shifts)."""
    x, m, s = (np.array(a, np.int64) for a in zip(*itertools.product(EDGE_X, EDGE_M, EDGE_S)))
    for fmt, relu, zp in [("int32", False, 0), ("int32", True, -7), ("int8", False, 3), ("int8", True, -128),
                          ("uint8", False, 255), ("uint8", True, 128), ("int4", True, 1), ("int4", False, -8)]:
        _check_against_ref(x, 0, m, s, rounding, zp, fmt, relu)
    _check_against_ref(x, INT32_MAX, m, s, rounding, 0, "int32", False)


@pytest.mark.parametrize("rounding", list(ROUNDING))
def test_random_rows(rounding):
    rng = np.random.default_rng(_seed())
    for fmt in OUT_FORMATS:
        rows = random_rows(rng, 64, 4)
        lo, hi = OUT_RANGES[fmt]
        zp = int(rng.integers(max(lo, -(1 << 15)), min(hi, (1 << 15) - 1) + 1))
        _check_against_ref(rows["x"], rows["bias"], rows["multiplier"], rows["shift"], rounding, zp, fmt,
                           bool(rng.integers(2)))


def test_disabled_passthrough():
    x = np.array([INT32_MAX, INT32_MIN, -5, 7])
    b = np.array([1, -1, 0, -7])
    assert requantize_raw(x, b, 123, 4, enable=False, zero_point=99, out_format="int32").tolist() == \
        [INT32_MIN, INT32_MAX, -5, 0]
    assert requantize_raw(x, b, 123, 4, enable=False, zero_point=99, relu=True).tolist() == [0, INT32_MAX, 0, 0]
    _check_against_ref(x, b, 0, 0, "tflite", 0, "int8", True, enable=False)


def test_ties_and_known_values():
    v = np.array([1, 3, 5, -1, -3, -5])
    assert round_shift(v, 1, 1, "half_even").tolist() == [0, 2, 2, 0, -2, -2]
    # the tie goes to the value that is even after adding the zero point (ONNX adds it before rint)
    assert round_shift(v, 1, 1, "half_even", zero_point=1).tolist() == [1, 1, 3, -1, -1, -3]
    assert round_shift(v, 1, 1, "half_up").tolist() == [1, 2, 3, 0, -1, -2]
    # gemmlowp: SRDHM sends ties toward +inf, RoundingDivideByPOT away from zero
    assert round_shift([1, 3, -1, -3], 1 << 30, 31, "tflite").tolist() == [1, 2, 0, -1]
    assert round_shift([2, -2, 6, -6], 1 << 30, 32, "tflite").tolist() == [1, -1, 2, -2]
    # left-shift path (s < 31) and s = 0
    assert round_shift([3, -3], 1 << 30, 30, "tflite").tolist() == [3, -3]
    assert round_shift([INT32_MAX], (1 << 31) - 1, 0, "half_up").tolist() == [INT32_MAX * INT32_MAX]
    assert round_shift([1], (1 << 31) - 1, 0, "tflite").tolist() == [_tflite_multiply(1, (1 << 31) - 1, 31)]
    # s = 62 with the largest product
    assert round_shift([INT32_MIN], (1 << 31) - 1, 62, "half_even").tolist() == [-1]
    assert round_shift([INT32_MIN], (1 << 31) - 1, 62, "half_up").tolist() == [-1]
    assert round_shift([INT32_MIN, 5], 0, 7, "tflite").tolist() == [0, 0]
    assert wrap_int32([1 << 31, -(1 << 31) - 1, 1 << 40]).tolist() == [INT32_MIN, INT32_MAX, 0]


@settings(max_examples=300, deadline=None)
@given(v=st.integers(INT32_MIN, INT32_MAX), m=st.integers(0, (1 << 31) - 1), s=st.integers(0, 62),
       zp=st.integers(-(1 << 15), (1 << 15) - 1), rounding=st.sampled_from(list(ROUNDING)))
def test_hypothesis_matches_reference(v, m, s, zp, rounding):
    got = int(round_shift(v, m, s, rounding, zp))
    if rounding == "tflite":
        assert got == _tflite_multiply(v, m, 31 - s)
    else:
        exact = Fraction(v * m, 1 << s)
        assert abs(got - exact) <= Fraction(1, 2)
        if abs(got - exact) == Fraction(1, 2):  # a tie
            assert got == (exact + Fraction(1, 2) if rounding == "half_up" else got)
            if rounding == "half_even":
                assert (got + zp) % 2 == 0


_i32 = st.integers(INT32_MIN, INT32_MAX)


@settings(max_examples=300, deadline=None)
@given(x=_i32, b=_i32, m=st.integers(0, (1 << 31) - 1), s=st.integers(0, 62), zp=st.integers(-(1 << 15), (1 << 15) - 1),
       rounding=st.sampled_from(list(ROUNDING)), fmt=st.sampled_from(list(OUT_FORMATS)), relu=st.booleans(),
       enable=st.booleans())
def test_hypothesis_full_output_stage(x, b, m, s, zp, rounding, fmt, relu, enable):
    """Wrap, rounding, int32 saturation, zero point, clamp and ReLU against the scalar reference."""
    got = requantize_raw(x, b, m, s, enable=enable, rounding=rounding, zero_point=zp, out_format=fmt, relu=relu)
    assert int(got) == ref_requant(x, b, m, s, rounding, zp, fmt, relu, enable)


@settings(max_examples=200, deadline=None)
@given(v=st.integers(INT32_MIN, INT32_MAX), m=st.integers(0, (1 << 31) - 1), s=st.integers(31, 62))
def test_hypothesis_tflite_error_bound(v, m, s):
    """Without the left shift TFLite rounds twice: the error is at most one unit."""
    assert abs(int(round_shift(v, m, s, "tflite")) - Fraction(v * m, 1 << s)) <= 1


@settings(max_examples=100, deadline=None)
@given(v=st.lists(st.integers(INT32_MIN, INT32_MAX), min_size=2, max_size=2), m=st.integers(0, (1 << 31) - 1),
       s=st.integers(0, 62), rounding=st.sampled_from(["half_up", "half_even"]))
def test_hypothesis_monotonic(v, m, s, rounding):
    lo, hi = sorted(v)
    assert round_shift(lo, m, s, rounding) <= round_shift(hi, m, s, rounding)


# -- requantize() and Requant ---------------------------------------------------------------------------
def test_requantize_per_channel_and_dtypes():
    rng = np.random.default_rng(_seed())
    acc = rng.integers(-(1 << 20), 1 << 20, (5, 3))
    bias = rng.integers(-1000, 1000, 3)
    rq = Requant(multiplier=[1 << 30, 3 << 28, (1 << 31) - 1], shift=[38, 40, 45], zero_point=-3, rounding="half_up")
    assert rq.per_channel and rq.channels == 3
    y = requantize(acc, bias, rq, relu=True)
    assert y.dtype == np.int8
    want = [[ref_requant(int(acc[i, j]), int(bias[j]), int(rq.multiplier[j]), int(rq.shift[j]), "half_up", -3,
                         "int8", True) for j in range(3)] for i in range(5)]
    assert y.tolist() == want
    assert requantize(acc, bias, Requant(1 << 30, 40, 2), out_dtype="uint8").dtype == np.uint8
    y4 = requantize(acc, None, Requant(1 << 30, 31), out_dtype="int4")
    assert y4.dtype == np.int8 and y4.min() >= -8 and y4.max() <= 7 and (y4 == -8).any() and (y4 == 7).any()
    assert requantize(acc, None, Requant(1 << 30, 31), out_dtype=np.int32).dtype == np.int32
    y32 = requantize(acc, bias)
    assert y32.dtype == np.int32 and (y32 == acc + bias).all()
    assert (requantize(acc, bias, relu=True) == np.maximum(acc + bias, 0)).all()
    # per-tensor equals per-channel with repeated values
    m, s = Requant(12345678, 40).channel_arrays(3)
    assert (requantize(acc, None, Requant(12345678, 40)) == requantize(acc, None, Requant(m, s))).all()


def test_requant_object():
    a = Requant([1, 2], 5, 0, "tflite")
    b = Requant(np.array([1, 2]), 5, 0, "tflite")
    assert a == b and hash(a) == hash(b) and a != Requant([1, 3], 5, 0, "tflite")
    assert a.channel_arrays(2)[1].tolist() == [5, 5]
    assert not Requant(1, 2).per_channel and Requant(1, 2).channel_arrays(4)[0].tolist() == [1] * 4
    with pytest.raises(ValueError, match="2 channels"):
        a.channel_arrays(3)
    with pytest.raises(ValueError):
        a.multiplier[0] = 5  # read-only


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(multiplier=1 << 31, shift=0), ValueError, "multiplier"),
    (dict(multiplier=-1, shift=0), ValueError, "multiplier"),
    (dict(multiplier=1, shift=63), ValueError, "shift"),
    (dict(multiplier=1, shift=-1), ValueError, "shift"),
    (dict(multiplier=[1, 2], shift=[1, 2, 3]), ValueError, "lengths"),
    (dict(multiplier=[[1, 2]], shift=1), ValueError, "1-D"),
    (dict(multiplier=[], shift=1), ValueError, "1-D"),
    (dict(multiplier=[1.5], shift=1), TypeError, "integer"),
    (dict(multiplier=1.0, shift=1), TypeError, "int"),
    (dict(multiplier=1, shift=1, zero_point=1 << 15), ValueError, "zero_point"),
    (dict(multiplier=1, shift=1, zero_point=1.0), ValueError, "zero_point"),
    (dict(multiplier=1, shift=1, rounding="nearest"), ValueError, "rounding"),
])
def test_requant_rejects(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Requant(**kwargs)


def test_requantize_rejects():
    acc = np.zeros((2, 3), np.int64)
    with pytest.raises(ValueError, match="out_dtype"):
        requantize(acc, requant=Requant(1, 1), out_dtype="int16")
    with pytest.raises(ValueError, match="needs a requant"):
        requantize(acc, out_dtype="int8")
    with pytest.raises(ValueError, match="zero_point"):
        requantize(acc, requant=Requant(1, 1, zero_point=-1), out_dtype="uint8")
    with pytest.raises(ValueError, match="acc"):
        requantize(acc + (1 << 31), requant=Requant(1, 1))
    with pytest.raises(TypeError, match="acc"):
        requantize(acc.astype(float), requant=Requant(1, 1))
    with pytest.raises(ValueError, match="channels"):
        requantize(acc, requant=Requant([1, 2], 1))
    with pytest.raises(ValueError, match="bias"):
        requantize(acc, bias=[1, 2], requant=Requant(1, 1))
    with pytest.raises(TypeError, match="requant"):
        requantize(acc, requant=(1, 1))
    with pytest.raises(ValueError, match="rounding"):
        round_shift(1, 1, 1, "bankers")
    with pytest.raises(ValueError, match="out_format"):
        requantize_raw(1, 0, 1, 1, out_format=7)


# -- from_scale ------------------------------------------------------------------------------------------
def _tflite_quantize_multiplier(d: float):
    """TFLite QuantizeMultiplier, independently: std::frexp, std::round (half away from zero)."""
    q, exp = math.frexp(d)
    q_fixed = math.floor(Fraction(q) * (1 << 31) + Fraction(1, 2))
    assert q_fixed <= 1 << 31
    if q_fixed == 1 << 31:
        q_fixed //= 2
        exp += 1
    if exp < -31:
        exp, q_fixed = 0, 0
    return q_fixed, exp


def test_from_scale_tflite():
    rng = np.random.default_rng(_seed())
    scales = list(np.exp2(rng.uniform(-31, 30.9, 2000)))
    scales += [1.0, 0.5, 2.0 ** -31, 2.0 ** -32, 2.0 ** -40, 2.0 ** 30, 1.5 * 2.0 ** 30,
               (2 ** 30 + 0.5) / 2 ** 31,        # exact tie: std::round goes up (half-even would not)
               (2 ** 30 + 1.5) / 2 ** 31,
               1 - 2.0 ** -33,                   # rounds to 2**31: renormalized
               float(np.nextafter(1.0, 0.0)), 0.1, 1 / 3, 0.0078125 * 0.02 / 0.1]
    for scale in scales:
        q, exp = _tflite_quantize_multiplier(float(scale))
        rq = Requant.from_scale(float(scale), rounding="tflite")
        assert (rq.multiplier, rq.shift) == (q, 31 - exp), scale
    assert Requant.from_scale((2 ** 30 + 0.5) / 2 ** 31, rounding="tflite").multiplier == 2 ** 30 + 1
    assert (Requant.from_scale(1 - 2.0 ** -33, rounding="tflite").multiplier,
            Requant.from_scale(1 - 2.0 ** -33, rounding="tflite").shift) == (1 << 30, 30)
    per = Requant.from_scale(np.array([0.25, 0.1]), zero_point=4, rounding="tflite")
    assert per.per_channel and per.zero_point == 4 and per.shift.tolist() == [32, 34]


@pytest.mark.parametrize("rounding", ["half_up", "half_even"])
def test_from_scale_exact_float32(rounding):
    rng = np.random.default_rng(_seed())
    scales = np.exp2(rng.uniform(-31, 30.9, 2000)).astype(np.float32)
    for scale in scales:
        rq = Requant.from_scale(float(scale), rounding=rounding)
        assert (1 << 30) <= rq.multiplier < (1 << 31)
        assert Fraction(rq.multiplier, 1 << rq.shift) == Fraction(float(scale))
    # a float64 scale is rounded to float32 first
    rq = Requant.from_scale(0.1, rounding=rounding)
    assert Fraction(rq.multiplier, 1 << rq.shift) == Fraction(float(np.float32(0.1)))


@pytest.mark.parametrize("scale, rounding", [
    (0.0, "tflite"), (-1.0, "half_even"), (float("nan"), "half_up"), (float("inf"), "tflite"),
    (2.0 ** 31, "tflite"), (2.0 ** 31, "half_even"), (2.0 ** -40, "half_even"), (1e-45, "half_up"),
    (np.ones((2, 2)), "tflite"), ([], "tflite"), (0.5, "round"), ("0.5", "tflite"),
])
def test_from_scale_rejects(scale, rounding):
    with pytest.raises(ValueError):
        Requant.from_scale(scale, rounding=rounding)


# -- ONNX --------------------------------------------------------------------------------------------------
def test_half_even_matches_onnx_qlinearmatmul():
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx) so the ONNX oracle is skipped")
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(_seed())
    for trial in range(40):
        a_type, y_type = (np.uint8, np.int8)[trial % 2], (np.uint8, np.int8)[(trial // 2) % 2]
        b_type = (np.int8, np.uint8)[(trial // 4) % 2]
        tp = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}
        M, K, N = rng.integers(1, 6), rng.integers(1, 40), rng.integers(1, 6)
        info = lambda t: (np.iinfo(t).min, np.iinfo(t).max + 1)  # noqa: E731
        a = rng.integers(*info(a_type), (M, K)).astype(a_type)
        b = rng.integers(*info(b_type), (K, N)).astype(b_type)
        a_zp, b_zp, y_zp = (np.array(rng.integers(*info(t)), t) for t in (a_type, b_type, y_type))
        if trial % 3 == 0:  # many exact ties, inside the output range: power-of-two scale, small values
            a = np.clip(int(a_zp) + rng.integers(-6, 7, (M, K)), *np.array(info(a_type)) - [0, 1]).astype(a_type)
            b = np.clip(int(b_zp) + rng.integers(-6, 7, (K, N)), *np.array(info(b_type)) - [0, 1]).astype(b_type)
            a_scale = np.float32(2.0 ** -int(rng.integers(0, 3)))
            b_scale, y_scale = np.float32(1.0), np.float32(2.0 ** int(rng.integers(1, 4)))
        else:
            a_scale, b_scale = (np.float32(rng.uniform(0.001, 0.1)) for _ in range(2))
            y_scale = np.float32(rng.uniform(0.001, 0.5)) * a_scale * b_scale * K * 64
        node = helper.make_node("QLinearMatMul", ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"],
                                ["y"])
        graph = helper.make_graph(
            [node], "g",
            [helper.make_tensor_value_info("a", tp[a_type], [int(M), int(K)]),
             helper.make_tensor_value_info("a_scale", TensorProto.FLOAT, []),
             helper.make_tensor_value_info("a_zp", tp[a_type], []),
             helper.make_tensor_value_info("b", tp[b_type], [int(K), int(N)]),
             helper.make_tensor_value_info("b_scale", TensorProto.FLOAT, []),
             helper.make_tensor_value_info("b_zp", tp[b_type], []),
             helper.make_tensor_value_info("y_scale", TensorProto.FLOAT, []),
             helper.make_tensor_value_info("y_zp", tp[y_type], [])],
            [helper.make_tensor_value_info("y", tp[y_type], [int(M), int(N)])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
        feeds = {"a": a, "a_scale": np.array(a_scale, np.float32), "a_zp": a_zp, "b": b,
                 "b_scale": np.array(b_scale, np.float32), "b_zp": b_zp,
                 "y_scale": np.array(y_scale, np.float32), "y_zp": y_zp}
        (want,) = ReferenceEvaluator(model).run(None, feeds)

        acc = (a.astype(np.int64) - int(a_zp)) @ (b.astype(np.int64) - int(b_zp))
        scale = np.array(a_scale, np.float32) * np.array(b_scale, np.float32) / np.array(y_scale, np.float32)
        assert scale.dtype == np.float32 and np.abs(acc).max() < 1 << 29 and (y_zp == 0 or scale >= 2.0 ** -19)
        rq = Requant.from_scale(float(scale), zero_point=int(y_zp), rounding="half_even")
        got = requantize(acc, None, rq, out_dtype=np.dtype(y_type).name)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}, scale {scale}, zp {y_zp}")


# -- gateware ------------------------------------------------------------------------------------------------
def test_unit_rejects_bad_lanes():
    with pytest.raises(ValueError, match="lanes"):
        RequantUnit(0)
    with pytest.raises(TypeError, match="lanes"):
        RequantUnit(2.0)
    with pytest.raises(ValueError, match="per_cycle"):
        RequantUnit(4, per_cycle=3)
    with pytest.raises(ValueError, match="stages"):
        RequantUnit(4, stages=7)


def _amaranth_run(dut, seed, commands, rows_per_cmd, latency_check=False):
    from amaranth.sim import Simulator

    lanes = dut.lanes
    layout = RequantUnit.input_layout(lanes)
    rng = np.random.default_rng(seed)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    checked = []

    async def bench(ctx):
        for cmd in commands:
            rows = random_rows(rng, rows_per_cmd, lanes)
            expected = requant_tb.expected_rows(rows, cmd)
            p_valid, p_ready = float(rng.choice([0.4, 1.0])), float(rng.choice([0.4, 1.0]))
            for name in ("enable", "rounding", "zero_point", "out_format", "relu"):
                ctx.set(getattr(dut, name), cmd[name])
            await ctx.tick()                     # the unit registers its command constants
            sent = received = 0
            holding = False
            stalled = None
            for _ in range(rows_per_cmd * (40 + dut.chunks * dut.interval) + 50):
                if received == rows_per_cmd:
                    break
                if not holding and sent < rows_per_cmd and rng.random() < p_valid:
                    ctx.set(dut.i.payload.as_value(), requant_tb.pack_row(layout, rows, sent))
                    holding = True
                ctx.set(dut.i.valid, holding)
                ready = rng.random() < p_ready
                ctx.set(dut.o.ready, ready)
                fire_in = holding and ctx.get(dut.i.ready)
                o_valid = ctx.get(dut.o.valid)
                bits = ctx.get(dut.o.payload.as_value()) if o_valid else None
                if stalled is not None:
                    assert o_valid and bits == stalled, f"o dropped a stalled row (seed {seed})"
                stalled = bits if o_valid and not ready else None
                if o_valid and ready:
                    got = requant_tb.unpack_row(bits, lanes)
                    assert got == expected[received].tolist(), f"cmd {cmd} row {received} (seed {seed})"
                    received += 1
                if fire_in:
                    sent += 1
                    holding = False
                await ctx.tick()
            assert received == rows_per_cmd, f"timeout in cmd {cmd} (seed {seed})"
            ctx.set(dut.i.valid, 0)
            checked.append(received)
        if latency_check:  # one row into an idle, never-stalled pipeline
            ctx.set(dut.o.ready, 1)
            ctx.set(dut.i.valid, 1)
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            for cycle in range(1, dut.latency + 5):
                if ctx.get(dut.o.valid):
                    break
                await ctx.tick()
            assert cycle == dut.latency

    sim.add_testbench(bench)
    sim.run()
    return sum(checked)


@pytest.mark.parametrize("stages", [0, *sorted(REQUANT_REGISTERED)])
def test_unit_amaranth_sim(stages):
    """Pipelines of every depth, and the serial unit (stages=0), bit-exact under random stalls."""
    seed = _seed()
    dut = RequantUnit(2, stages=stages)
    assert dut.latency == (stages or REQUANT_SERIAL_CYCLES)
    commands = random_commands(np.random.default_rng(seed))
    rows = 8 if stages else 3
    assert _amaranth_run(dut, seed, commands, rows_per_cmd=rows, latency_check=True) == rows * len(commands)


@pytest.mark.parametrize("lanes, per_cycle, stages", [(4, 1, 12), (4, 2, 12), (4, 2, 5), (4, 2, 0)])
def test_unit_chunked_amaranth_sim(lanes, per_cycle, stages):
    """A row split into chunks through a narrower pipeline gives the same rows, in order, under stalls."""
    seed = _seed()
    dut = RequantUnit(lanes, per_cycle=per_cycle, stages=stages)
    assert dut.chunks == lanes // per_cycle and dut.latency == (stages or REQUANT_SERIAL_CYCLES) + 1
    commands = random_commands(np.random.default_rng(seed))
    assert _amaranth_run(dut, seed, commands, rows_per_cmd=6) == 6 * len(commands)


def _design_key(lanes: int, stages: int) -> str:
    """Build cache key: the parameters and the sources the Verilog is generated from."""
    digest = hashlib.sha256()
    for module in ("tridsa.hw.requant", "tridsa.spec.requant", "tridsa.spec.config"):
        digest.update(Path(sys.modules[module].__file__).read_bytes())
    return f"lanes={lanes}:stages={stages}:{digest.hexdigest()[:16]}"


@pytest.mark.slow
@pytest.mark.parametrize("simulator, stages", [("verilator", 12), ("icarus", 12), ("verilator", 5), ("verilator", 0),
                                                 ("icarus", 0)])
def test_unit_cocotb(simulator, stages, tmp_path):
    from tridsa.sim.cocotb_run import build_design, run_test

    lanes = 3
    seed = _seed()
    runner, build_dir = build_design(lambda: RequantUnit(lanes, stages=stages), "requant_top",
                                     _design_key(lanes, stages), simulator)
    pythonpath = os.pathsep.join([str(TESTS_DIR), *(p for p in sys.path if p)])
    run_test(runner, build_dir, "requant_top", "requant_tb", test_dir=tmp_path,
             extra_env={"PYTHONPATH": pythonpath, "TRIDSA_SEED": str(seed), "TRIDSA_LANES": str(lanes),
                        "TRIDSA_INTERVAL": str(1 if stages else REQUANT_SERIAL_CYCLES),
                        "TRIDSA_ROWS": "12" if stages else "3"})


def test_serial_unit_saturates_at_the_rounding_carry():
    """The serial unit registers whether a value leaves int32 from ``hi`` and the rounding's carry: values
    that round across INT32_MAX (65535 * 65537 / 2, half up), onto INT32_MIN (-641 * 6700417 / 2) or from -1
    to 0 (-1 / 2), and their neighbours, against the reference."""
    from amaranth.sim import Simulator
    dut = RequantUnit(1, stages=0)
    cases = [(65535, 65537, 1), (65535, 65535, 1), (-641, 6700417, 1), (-641, 6700415, 1), (-65535, 65537, 1),
             (1 << 30, 4, 0), (-(1 << 30), 3, 0), (-1, 1, 1), (-3, 1, 1)]
    rows = {"x": np.array([[x] for x, _, _ in cases]), "bias": np.zeros((len(cases), 1), np.int64),
            "multiplier": np.array([[m] for _, m, _ in cases]), "shift": np.array([[s] for _, _, s in cases])}
    cmd = dict(enable=1, rounding=ROUNDING["half_up"], out_format=OUT_FORMATS["int32"], relu=0, zero_point=0)
    expected = requant_tb.expected_rows(rows, cmd)
    assert {int(v) for v in expected.ravel()} >= {INT32_MAX, INT32_MIN}
    layout = RequantUnit.input_layout(1)
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def bench(ctx):
        for name, value in cmd.items():
            ctx.set(getattr(dut, name), value)
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        for k in range(len(cases)):
            ctx.set(dut.i.payload.as_value(), requant_tb.pack_row(layout, rows, k))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            await ctx.tick().until(dut.o.valid)
            got.append(requant_tb.unpack_row(ctx.get(dut.o.payload.as_value()), 1)[0])

    sim.add_testbench(bench)
    sim.run()
    assert got == expected.ravel().tolist()
