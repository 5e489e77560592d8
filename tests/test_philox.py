# amaranth: UnusedElaboratable=no
"""Philox4x32-10 golden model, sketch distributions, and their gateware (Amaranth sim and cocotb).

Stream tests draw valid gaps and ready backpressure from a seed: set TRIDSA_SEED to replay a run
(the seed is printed and shown on failure).
"""
import hashlib
import math
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from tridsa.hw.philox import PhiloxCore, PhiloxStream
from tridsa.hw.sketch_dist import SketchDistMap
from tridsa.spec.config import Config
from tridsa.sw.philox import counter_add, counter_range, philox4x32_10, random_uint32
from tridsa.spec.sketch_layout import DISTRIBUTIONS, GAUSSIAN_BOUND, GAUSSIAN_VARIANCE
from tridsa.sw.sketch_dist import (blocks_per_row, dist_params, gaussian, map_words, omega, omega_words, rademacher,
                                   sparse_sign, sparse_threshold, uniform)

# Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter[4], key[2] -> output[4].
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff),
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]

# Counters whose increments carry across 32-bit words (and wrap around 2**128).
EDGE_COUNTERS = [
    (0xFFFFFFFF, 0, 0, 0),
    (0xFFFFFFFE, 0xFFFFFFFF, 7, 0),
    (0xFFFFFFFD, 0xFFFFFFFF, 0xFFFFFFFF, 1),
    (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF),
]


@pytest.fixture
def seed():
    value = int(os.environ.get("TRIDSA_SEED", random.randrange(1 << 32)))
    print(f"TRIDSA_SEED={value}")
    return value


# -- golden model ---------------------------------------------------------------------------------

@pytest.mark.parametrize("counter, key, expected", KAT)
def test_known_answers(counter, key, expected):
    out = philox4x32_10(np.array([counter], dtype=np.uint32), key)
    assert out.dtype == np.uint32
    assert [int(x) for x in out[0]] == list(expected)


def test_known_answers_vectorized():
    # different keys cannot share a call; the same key across many counters must match row by row
    counters = np.array([c for c, _, _ in KAT] * 3, dtype=np.uint32)
    out = philox4x32_10(counters, KAT[0][1])
    for i, row in enumerate(out):
        single = philox4x32_10(counters[i:i + 1], KAT[0][1])[0]
        assert np.array_equal(row, single)
    assert [int(x) for x in out[0]] == list(KAT[0][2])


def test_counter_add_carries_and_wraps():
    assert list(counter_add((0xFFFFFFFF, 0, 0, 0), 1)) == [0, 1, 0, 0]
    assert list(counter_add((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 5), 2)) == [1, 0, 0, 6]
    assert list(counter_add((0xFFFFFFFF,) * 4, 1)) == [0, 0, 0, 0]
    assert list(counter_add((0, 0, 0, 0), -1)) == [0xFFFFFFFF] * 4
    assert list(counter_add((1, 2, 3, 4), (1 << 64) + 3)) == [4, 2, 4, 4]
    assert counter_add((1, 2, 3, 4), 0).dtype == np.uint32


@pytest.mark.parametrize("counter", EDGE_COUNTERS)
def test_counter_range_matches_counter_add(counter):
    rng = counter_range(counter, 0, 6)
    for j in range(6):
        assert list(rng[j]) == list(counter_add(counter, j))


@pytest.mark.parametrize("counter", EDGE_COUNTERS + [(0, 0, 0, 0)])
@pytest.mark.parametrize("n", [1, 3, 4, 5, 18])
def test_random_uint32_is_the_block_stream(counter, n):
    key = (0xDEADBEEF, 0x01234567)
    words = random_uint32(key, counter, n)
    assert words.dtype == np.uint32 and words.shape == (n,)
    expected = []
    for j in range((n + 3) // 4):
        expected += [int(x) for x in philox4x32_10(counter_add(counter, j)[None, :], key)[0]]
    assert [int(x) for x in words] == expected[:n]
    # a prefix of a longer stream
    assert np.array_equal(random_uint32(key, counter, n + 7)[:n], words)


def test_random_uint32_carry_changes_upper_word():
    # c0 = 0xffffffff: the second block is counter (0, 1, 0, 0), not (0, 0, 0, 0)
    words = random_uint32((3, 4), (0xFFFFFFFF, 0, 0, 0), 8)
    assert list(words[4:]) == list(philox4x32_10(np.array([[0, 1, 0, 0]], dtype=np.uint32), (3, 4))[0])
    assert list(words[4:]) != list(philox4x32_10(np.array([[0, 0, 0, 0]], dtype=np.uint32), (3, 4))[0])


@pytest.mark.parametrize("counter", EDGE_COUNTERS + [(0, 0, 0, 0), (0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344)])
@pytest.mark.parametrize("key", [(0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (0x12345678, 0x9ABCDEF0)])
def test_agrees_with_randomgen(counter, key):
    randomgen = pytest.importorskip("randomgen", reason="randomgen not installed (pip install randomgen)")
    c = sum(int(w) << (32 * i) for i, w in enumerate(counter))
    # randomgen increments its counter before each block: start it one below ours (mod 2**128)
    gen = randomgen.Philox(counter=(c - 1) % (1 << 128), key=key[0] | key[1] << 32, number=4, width=32)
    ref = gen.random_raw(23)
    assert [int(x) for x in ref] == [int(x) for x in random_uint32(key, counter, 23)]


@pytest.mark.parametrize("bad", [(1,), (1, 2, 3), (-1, 0), (0, 1 << 32), (0.0, 1), (True, 0), "ab", 5, None])
def test_key_validation(bad):
    with pytest.raises(ValueError, match="key"):
        random_uint32(bad, (0, 0, 0, 0), 4)


@pytest.mark.parametrize("bad", [(0, 0, 0), (0, 0, 0, -1), (0, 0, 0, 1 << 32), (0, 0, 0, 1.5), 7])
def test_counter_validation(bad):
    with pytest.raises(ValueError, match="counter"):
        random_uint32((0, 0), bad, 4)
    with pytest.raises(ValueError, match="counter"):
        counter_add(bad, 1)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "4", None])
def test_n_validation(bad):
    with pytest.raises(ValueError, match="n must be"):
        random_uint32((0, 0), (0, 0, 0, 0), bad)


def test_counters_validation():
    with pytest.raises(ValueError, match="counters"):
        philox4x32_10(np.zeros((2, 3), dtype=np.uint32), (0, 0))
    with pytest.raises(ValueError, match="counters"):
        philox4x32_10(np.array([[0, 0, 0, -1]]), (0, 0))
    with pytest.raises(ValueError, match="counters"):
        philox4x32_10(np.zeros((1, 4)), (0, 0))
    # plain int64 arrays in range are accepted
    assert np.array_equal(philox4x32_10(np.array([KAT[2][0]], dtype=np.int64), KAT[2][1])[0], KAT[2][2])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, (1 << 32) - 1), min_size=4, max_size=4), st.integers(-(1 << 130), 1 << 130))
def test_counter_add_is_modular(counter, i):
    value = sum(w << (32 * j) for j, w in enumerate(counter))
    out = counter_add(counter, i)
    assert sum(int(w) << (32 * j) for j, w in enumerate(out)) == (value + i) % (1 << 128)


# -- sketch distributions -------------------------------------------------------------------------

KEY = (0x8BADF00D, 0x0D15EA5E)


@pytest.mark.parametrize("K, k", [(5, 8), (3, 4), (7, 5), (2, 1), (4, 10)])
def test_omega_words_layout(K, k):
    counter = (0xFFFFFFFE, 0xFFFFFFFF, 2, 3)  # rows cross 32-bit words
    words = omega_words(KEY, counter, K, k)
    B = blocks_per_row(k)
    assert words.shape == (K, k) and words.dtype == np.uint32 and B == math.ceil(k / 4)
    for r in range(K):
        for c in range(k):
            block = philox4x32_10(counter_add(counter, r * B + c // 4)[None, :], KEY)[0]
            assert words[r, c] == block[c % 4]
    if k % 4 == 0:  # then the layout is the plain word stream
        assert np.array_equal(words.reshape(-1), random_uint32(KEY, counter, K * k))


@pytest.mark.parametrize("dist, params", [("rademacher", {}), ("sparse_sign", {"nnz": 3}),
                                          ("uniform", {"lo": -5, "hi": 9}), ("gaussian", {})])
def test_omega_is_elementwise_map_of_words(dist, params):
    K, k = 33, 6
    om = omega(KEY, (1, 2, 3, 4), K, k, dist, **params)
    assert om.dtype == np.int32 and om.shape == (K, k)
    words = omega_words(KEY, (1, 2, 3, 4), K, k)
    assert np.array_equal(om, map_words(words, dist, k, **params))
    for (r, c) in [(0, 0), (5, 3), (K - 1, k - 1)]:
        assert om[r, c] == map_words(words[r:r + 1, c:c + 1], dist, k, **params)[0, 0]
    # deterministic, and a function of key and counter
    assert np.array_equal(om, omega(KEY, (1, 2, 3, 4), K, k, dist, **params))
    assert not np.array_equal(om, omega(KEY, (2, 2, 3, 4), K, k, dist, **params))
    assert not np.array_equal(om, omega((KEY[0] ^ 1, KEY[1]), (1, 2, 3, 4), K, k, dist, **params))


@pytest.mark.parametrize("k", [4, 6])
def test_omega_row_tiles_continue_the_counter(k):
    # rows r0.. of Omega are Omega of a counter advanced by r0 * ceil(k / 4): tiles can be regenerated alone
    counter = (0xFFFFFFF0, 0xFFFFFFFF, 0, 0)
    full = omega(KEY, counter, 30, k, "gaussian")
    tail = omega(KEY, tuple(int(x) for x in counter_add(counter, 11 * blocks_per_row(k))), 19, k, "gaussian")
    assert np.array_equal(full[11:], tail)


def test_elementwise_definitions():
    w = np.array([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x01020304], dtype=np.uint32)
    assert list(rademacher(w)) == [1, 1, 1, -1, -1, 1]
    assert list(sparse_sign(w, 2)) == [1, 1, 0, -1, 0, 0]
    assert list(sparse_sign(w, 1 << 31)) == list(rademacher(w))
    assert list(sparse_sign(w, 0)) == [0] * 6
    assert list(gaussian(w)) == [-510, -509, 255 * 3 + 127 - 510, 128 - 510, 510, 10 - 510]
    assert list(uniform(w, -2, 1)) == [-2, -2, -1, 0, 1, -2]
    assert list(uniform(w, -(1 << 31), (1 << 31) - 1)) == [int(x) - (1 << 31) for x in w]
    assert list(uniform(w, 7, 7)) == [7] * 6
    assert sparse_threshold(1, 4) == 1 << 29 and sparse_threshold(3, 3) == 1 << 31
    assert sparse_threshold(1, 3) == (1 << 31) // 3


def _big_sample(n=1 << 20):
    return random_uint32((0xC0FFEE, 0xFACADE), (0, 0, 0, 0), n)


def test_rademacher_balance():
    x = rademacher(_big_sample())
    n = x.size
    assert set(np.unique(x)) == {-1, 1}
    assert abs(int(x.sum())) < 5 * math.sqrt(n)
    # neighbouring entries uncorrelated
    assert abs(int((x[1:].astype(np.int64) * x[:-1]).sum())) < 5 * math.sqrt(n)


@pytest.mark.parametrize("nnz, k", [(1, 16), (4, 16), (3, 7)])
def test_sparse_sign_statistics(nnz, k):
    K = 40000
    om = omega(KEY, (9, 0, 0, 0), K, k, "sparse_sign", nnz=nnz)
    p = sparse_threshold(nnz, k) / 2 ** 31
    assert abs(p - nnz / k) < 2 ** -30
    per_row = (om != 0).sum(axis=1)
    mean_sd = math.sqrt(k * p * (1 - p) / K)
    assert abs(per_row.mean() - nnz) < 5 * mean_sd
    assert abs(per_row.var() - k * p * (1 - p)) < 0.05 * k * p * (1 - p)
    per_col = (om != 0).sum(axis=0)  # each column: Binomial(K, p)
    assert np.all(np.abs(per_col - K * p) < 5 * math.sqrt(K * p * (1 - p)))
    nz = om[om != 0]
    assert set(np.unique(nz)) <= {-1, 1}
    assert abs(int(nz.sum())) < 5 * math.sqrt(nz.size)


@pytest.mark.parametrize("lo, hi", [(-4, 3), (0, 6), (-100, 100)])
def test_uniform_chi_square(lo, hi):
    x = uniform(_big_sample(), lo, hi)
    assert x.min() == lo and x.max() == hi
    span = hi - lo + 1
    counts = np.bincount(x - lo, minlength=span)
    expected = x.size / span
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = span - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof)  # about 6 sigma of the chi-square distribution


def test_gaussian_moments():
    x = gaussian(_big_sample()).astype(np.int64)
    n = x.size
    assert -GAUSSIAN_BOUND <= x.min() and x.max() <= GAUSSIAN_BOUND
    assert abs(x.mean()) < 5 * math.sqrt(GAUSSIAN_VARIANCE / n)
    assert abs(x.var() / GAUSSIAN_VARIANCE - 1) < 5 * math.sqrt(2 / n)
    kurt = (x.astype(np.float64) ** 4).mean() / x.var() ** 2 - 3
    assert abs(kurt - (-0.3)) < 0.02


def test_gaussian_documented_accuracy():
    # exact distribution of the sum of four uniform bytes, against N(0, 21845)
    p = np.full(256, 1 / 256)
    d = p
    for _ in range(3):
        d = np.convolve(d, p)
    x = np.arange(d.size) - GAUSSIAN_BOUND
    assert (d * x).sum() == pytest.approx(0, abs=1e-9)
    assert (d * x * x).sum() == pytest.approx(GAUSSIAN_VARIANCE)
    sigma = math.sqrt(GAUSSIAN_VARIANCE)
    phi = np.array([0.5 * (1 + math.erf((v + 0.5) / sigma / math.sqrt(2))) for v in x])
    assert np.abs(np.cumsum(d) - phi).max() < 0.0075


@pytest.mark.parametrize("dist, params, match", [
    ("normal", {}, "dist must be one of"),
    ("rademacher", {"nnz": 1}, "takes parameters"),
    ("sparse_sign", {}, "takes parameters"),
    ("sparse_sign", {"nnz": 0}, "nnz must be"),
    ("sparse_sign", {"nnz": 9}, "nnz must be"),
    ("uniform", {"lo": 3, "hi": 2}, "hi must be"),
    ("uniform", {"lo": -(1 << 31) - 1, "hi": 2}, "lo must be"),
    ("uniform", {"lo": 0, "hi": 1 << 31}, "hi must be"),
])
def test_dist_validation(dist, params, match):
    with pytest.raises(ValueError, match=match):
        omega(KEY, (0, 0, 0, 0), 4, 8, dist, **params)


def test_omega_shape_validation():
    with pytest.raises(ValueError, match="K must be"):
        omega(KEY, (0, 0, 0, 0), 0, 8)
    with pytest.raises(ValueError, match="k must be"):
        omega(KEY, (0, 0, 0, 0), 4, 0)
    with pytest.raises(TypeError, match="words"):
        rademacher(np.zeros(3, dtype=np.int64))


# -- gateware: Amaranth simulation ----------------------------------------------------------------

async def _run_stream(ctx, rng, sink, source, items, set_item, get_item, max_cycles):
    """Drive ``items`` into ``sink`` and collect ``source`` beats, with random gaps and backpressure.

    The producer holds valid (and its payload) until the beat is taken; ready is random every cycle.
    Returns the received beats and the cycles spent.
    """
    received = []
    pending = list(items)
    expected = len(items)
    current = None
    for cycle in range(max_cycles):
        if current is None and pending and rng.random() < 0.7:
            current = pending.pop(0)
            set_item(ctx, current)
        ctx.set(sink.valid, current is not None)
        ctx.set(source.ready, rng.random() < 0.7)
        await ctx.delay(0)  # let combinational logic settle before sampling the handshakes
        took_in = ctx.get(sink.valid) and ctx.get(sink.ready)
        if ctx.get(source.valid) and ctx.get(source.ready):
            received.append(get_item(ctx))
        await ctx.tick()
        if took_in:
            current = None
        if len(received) == expected and not pending and current is None:
            return received, cycle
    raise AssertionError(f"timeout: {len(received)} of {expected} beats after {max_cycles} cycles")


def _sim(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if os.environ.get("TRIDSA_VCD"):
        with sim.write_vcd(os.environ["TRIDSA_VCD"]):
            sim.run()
    else:
        sim.run()


def _random_counters(rng, n):
    out = [c for c, _, _ in KAT] + EDGE_COUNTERS
    while len(out) < n:
        out.append(tuple(rng.choice([rng.randrange(1 << 32), 0, 0xFFFFFFFF]) for _ in range(4)))
    return out


@pytest.mark.parametrize("stages", [1, 2])
def test_core_sim_against_golden(stages, seed):
    rng = random.Random(seed)
    dut = PhiloxCore(stages_per_round=stages)
    keys = [k for _, k, _ in KAT] + [(rng.randrange(1 << 32), rng.randrange(1 << 32)) for _ in range(5)]
    items = [(c, rng.choice(keys)) for c in _random_counters(rng, 60)]
    items[:3] = [(c, k) for c, k, _ in KAT]

    def set_item(ctx, item):
        ctx.set(dut.i.payload, {"counter": list(item[0]), "key": list(item[1])})

    def get_item(ctx):
        payload = ctx.get(dut.o.payload)
        return tuple(payload[j] for j in range(4))

    async def tb(ctx):
        got, _ = await _run_stream(ctx, rng, dut.i, dut.o, items, set_item, get_item, 5000)
        for (counter, key), out in zip(items, got):
            assert out == tuple(int(x) for x in philox4x32_10(np.array([counter], dtype=np.uint32), key)[0])
        assert [got[i] for i in range(3)] == [e for _, _, e in KAT]

    _sim(dut, tb)


@pytest.mark.parametrize("stages", [1, 2])
def test_core_sim_throughput_and_latency(stages):
    dut = PhiloxCore(stages_per_round=stages)
    n = 12

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        outputs = []
        for cycle in range(n + dut.latency + 2):
            ctx.set(dut.i.valid, cycle < n)
            ctx.set(dut.i.payload, {"counter": [cycle, 0, 0, 0], "key": [1, 2]})
            await ctx.delay(0)
            assert ctx.get(dut.i.ready)  # never stalls when ready is held
            if ctx.get(dut.o.valid):
                outputs.append((cycle, ctx.get(dut.o.payload)[0]))
            await ctx.tick()
        assert [c for c, _ in outputs] == list(range(dut.latency, dut.latency + n))
        golden = philox4x32_10(np.array([[i, 0, 0, 0] for i in range(n)], dtype=np.uint32), (1, 2))
        assert [w for _, w in outputs] == [int(x) for x in golden[:, 0]]

    assert dut.latency == 10 * stages
    _sim(dut, tb)


@pytest.mark.parametrize("lanes", [Config().rng_lanes, 1, 3])
def test_stream_sim_against_golden(lanes, seed):
    rng = random.Random(seed)
    dut = PhiloxStream(lanes, count_width=16)
    key = (rng.randrange(1 << 32), rng.randrange(1 << 32))
    commands = [((0xFFFFFFFD, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), 7),  # wraps around 2**128
                ((0, 0, 0, 0), 0),  # produces nothing
                ((0xFFFFFFFE, 0, 5, 0), 2 * lanes),
                ((rng.randrange(1 << 32), 0xFFFFFFFF, rng.randrange(1 << 32), 9), 1),
                ((0x12345678, 1, 2, 3), 5)]
    beats = []
    for counter, count in commands:
        nbeats = -(-count // lanes)
        for b in range(nbeats):
            blocks = philox4x32_10(counter_range(counter, b * lanes, lanes), key)
            beats.append(([tuple(int(x) for x in blk) for blk in blocks], b == nbeats - 1))

    def set_item(ctx, item):
        counter, count = item
        ctx.set(dut.cmd.payload, {"key": list(key), "counter": list(counter), "count": count})

    def get_item(ctx):
        payload = ctx.get(dut.o.payload)
        return ([tuple(payload.blocks[lane][j] for j in range(4)) for lane in range(lanes)],
                bool(payload.last))

    async def tb(ctx):
        # each command makes several beats: count beats, not commands
        got = []
        pending = list(commands)
        current = None
        for _ in range(20000):
            if current is None and pending and rng.random() < 0.5:
                current = pending.pop(0)
                set_item(ctx, current)
            ctx.set(dut.cmd.valid, current is not None)
            ctx.set(dut.o.ready, rng.random() < 0.7)
            await ctx.delay(0)
            took = ctx.get(dut.cmd.valid) and ctx.get(dut.cmd.ready)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                got.append(get_item(ctx))
            await ctx.tick()
            if took:
                current = None
            if len(got) >= len(beats) and current is None and not pending:
                break
        for _ in range(3 * dut.latency):  # nothing extra comes out
            ctx.set(dut.o.ready, 1)
            await ctx.delay(0)
            assert not ctx.get(dut.o.valid)
            await ctx.tick()
        assert got == beats

    _sim(dut, tb)


@pytest.mark.parametrize("dist, params", [("rademacher", {}), ("sparse_sign", {"nnz": 3}),
                                          ("uniform", {"lo": -7, "hi": 12}),
                                          ("uniform", {"lo": -(1 << 31), "hi": (1 << 31) - 1}),
                                          ("uniform", {"lo": 5, "hi": 5}), ("gaussian", {})])
def test_dist_map_sim_against_golden(dist, params, seed):
    rng = random.Random(seed)
    n = 4 * Config().rng_lanes
    k = 8
    dut = SketchDistMap(n)
    regs = dist_params(dist, k, **params)
    edge = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, regs["threshold"], max(regs["threshold"] - 1, 0)]
    words = edge + [rng.randrange(1 << 32) for _ in range(40 * n - len(edge))]
    items = [words[i:i + n] for i in range(0, len(words), n)]
    golden = map_words(np.array(words, dtype=np.uint32), dist, k, **params).reshape(-1, n)

    def set_item(ctx, item):
        ctx.set(dut.i.payload, item)

    def get_item(ctx):
        payload = ctx.get(dut.o.payload)
        return [payload[j] for j in range(n)]

    async def tb(ctx):
        ctx.set(dut.code, regs["code"])
        ctx.set(dut.threshold, regs["threshold"])
        ctx.set(dut.lo, regs["lo"])
        ctx.set(dut.span, regs["span"])
        got, _ = await _run_stream(ctx, rng, dut.i, dut.o, items, set_item, get_item, 2000)
        assert got == [[int(x) for x in row] for row in golden]

    _sim(dut, tb)


def test_gateware_parameter_validation():
    with pytest.raises(ValueError, match="stages_per_round"):
        PhiloxCore(stages_per_round=3)
    with pytest.raises(ValueError, match="lanes"):
        PhiloxStream(0)
    with pytest.raises(ValueError, match="lanes"):
        PhiloxStream(True)
    with pytest.raises(ValueError, match="count_width"):
        PhiloxStream(2, count_width=0)
    with pytest.raises(ValueError, match="n must be"):
        SketchDistMap(0)
    assert len(DISTRIBUTIONS) <= 4  # the mapper's code input is 2 bits wide


# -- gateware: cocotb on Verilator and Icarus -----------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
@pytest.mark.parametrize("design", ["core", "stream"])
def test_cocotb(simulator, design, seed):
    from tridsa.sim.cocotb_run import build_design, run_test
    import tridsa.hw.philox
    lanes = Config().rng_lanes
    # the build cache is keyed by name: include the gateware source so an edit rebuilds
    source = hashlib.sha256(Path(tridsa.hw.philox.__file__).read_bytes()).hexdigest()[:12]
    if design == "core":
        factory, top, key = (lambda: PhiloxCore()), "philox_core_top", f"stages1-{source}"
    else:
        factory, top, key = (lambda: PhiloxStream(lanes)), "philox_stream_top", f"lanes{lanes}-{source}"
    runner, build_dir = build_design(factory, top, key, simulator)
    tests_dir = str(Path(__file__).parent)
    env = {"PYTHONPATH": tests_dir + os.pathsep + os.pathsep.join(p for p in sys.path if p),
           "TRIDSA_SEED": str(seed), "TRIDSA_LANES": str(lanes)}
    test_dir = build_dir / f"run-{design}"
    try:
        run_test(runner, build_dir, top, "philox_tb", extra_env=env, testcase=f"test_{design}",
                 test_dir=test_dir)
    except SystemExit as exc:  # cocotb_tools' runner exits on a failed test: show the log instead
        log = test_dir / "sim.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise AssertionError(f"cocotb test_{design} failed on {simulator} (log {log}):\n{tail}") from exc
