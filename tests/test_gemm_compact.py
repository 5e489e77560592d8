# amaranth: UnusedElaboratable=no
"""The compact GEMM engine (``Config.gemm_engine="compact"``, the icebreaker chip): its broadcast array
against NumPy, the whole chip bit-exact against the golden model with random memory stalls, its cycle
model exact without them, its Config checks."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from conftest import accelerator, backend_params
from tridsa import Accelerator, Config, Requant
from tridsa.hw.broadcast_array import BroadcastArray
from tridsa.hw.fpga_top import BOARDS
from tridsa.spec import isa
from tridsa.sw.builder import ProgramBuilder
from tridsa.sw.gemm_ops import emit_gemm
from tridsa.sw.golden import execute
from tridsa.sw.program import Program

COMPACT = BOARDS["icebreaker"].config
# the same engine with the 5-stage requant pipeline: the array, not the requant unit, sets the pace
PIPELINED = COMPACT.replace(requant_stages=5, mem_depth=256, mem_latency=3)


def test_compact_config_checks():
    assert COMPACT.gemm_engine == "compact" and COMPACT.peak_macs_int8 == 16
    for change, name in ((dict(int4=True), "int4"), (dict(accumulate=True), "accumulate"),
                         (dict(overlap=True), "overlap"), (dict(mem_width=16), "mem_width"),
                         (dict(hard_multipliers=15), "hard_multipliers"), (dict(gemm_engine="wide"), "gemm_engine")):
        with pytest.raises(ValueError, match=f"Config.{name}"):
            COMPACT.replace(**change)


@pytest.mark.parametrize("mem_depth", [16, 64, 1024, 1 << 16])
def test_acc_bits_hold_every_legal_sum(mem_depth):
    """The largest K of a legal GEMM (its A block fills the memory) and the extreme products: the sums fit
    ``acc_bits`` signed bits, and one bit fewer would not hold the largest (or the width is int32's)."""
    config = COMPACT.replace(mem_depth=mem_depth)
    k_max = config.mem_depth * config.mem_width // config.rows
    extremes = np.array([255 * 255, -128 * 255], np.int64) * k_max
    bits = config.acc_bits
    assert bits == 32 or (-(1 << (bits - 1)) <= extremes.min() and extremes.max() < 1 << (bits - 1)
                          and extremes.max() >= 1 << (bits - 2))
    assert COMPACT.acc_bits == 26          # 4 KiB: K <= 512


def _run_array(rows, cols, acc_bits, tiles, gaps):
    """Feed ``tiles`` [(a (k, rows), b (k, cols), a_signed, b_signed)] back to back, a k-step per cycle unless
    ``gaps`` (an iterator of bools) says to wait; return the true sums at each ``done``."""
    dut = BroadcastArray(rows, cols, acc_bits, primitives=False)
    sums = []

    async def feed(ctx):
        for a, b, a_signed, b_signed in tiles:
            ctx.set(dut.mode.a_signed, a_signed)
            ctx.set(dut.mode.b_signed, b_signed)
            for step in range(len(a)):
                while next(gaps):
                    ctx.set(dut.ctrl.valid, 0)
                    await ctx.tick()
                ctx.set(dut.a, [int(v) & 0xFF for v in a[step]])
                ctx.set(dut.b, [int(v) & 0xFF for v in b[step]])
                ctx.set(dut.ctrl, {"valid": 1, "first": step == 0, "last": step == len(a) - 1})
                await ctx.tick()
            ctx.set(dut.ctrl.valid, 0)
            for _ in range(dut.LATENCY + 1):        # a tile's mode holds until its sums are latched
                await ctx.tick()

    async def collect(ctx):
        async for _, _, done, result, col_sum in ctx.tick().sample(dut.done, dut.result, dut.col_sum):
            if done:
                sums.append(np.array([[result[i][j] + 128 * col_sum[j] for j in range(cols)] for i in range(rows)]))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(collect, background=True)
    sim.run_until(1e-6 * (sum(len(t[0]) for t in tiles) * 3 + 20 * len(tiles) + 50))
    return sums


def test_broadcast_array_against_numpy(seed):
    """Signed and unsigned A (B is signed on this array), the extreme products at the largest K that
    ``acc_bits`` holds, random k-steps, random gaps between k-steps (replay with TRIDSA_SEED)."""
    rng = np.random.default_rng(seed)
    rows, cols, acc_bits = 3, 4, 21                        # 21 bits: K <= 16 at the extremes
    k_max = ((1 << (acc_bits - 1)) - 1) // (255 * 255)
    tiles = []
    for a_signed in (0, 1):
        lo_a, hi_a = (-128, 128) if a_signed else (0, 256)
        for a_value, b_value in ((lo_a, -128), (hi_a - 1, -128), (lo_a, 127), (hi_a - 1, 127)):
            tiles.append((np.full((k_max, rows), a_value), np.full((k_max, cols), b_value), a_signed, 1))
        for _ in range(3):
            k = int(rng.integers(1, k_max + 1))
            tiles.append((rng.integers(lo_a, hi_a, (k, rows)), rng.integers(-128, 128, (k, cols)), a_signed, 1))
    gaps = iter(lambda: bool(rng.random() < 0.3), None)
    sums = _run_array(rows, cols, acc_bits, tiles, gaps)
    assert len(sums) == len(tiles)
    for got, (a, b, _, _) in zip(sums, tiles):
        np.testing.assert_array_equal(got, a.T.astype(np.int64) @ b.astype(np.int64), err_msg=f"seed {seed}")


def _random_gemm(rng, config):
    m, n = int(rng.integers(1, 3 * config.rows)), int(rng.integers(1, 3 * config.cols + 1))
    k = int(rng.integers(1, 40))
    ta, lo_a, hi_a = [(np.int8, -128, 128), (np.uint8, 0, 256)][int(rng.integers(2))]
    a = rng.integers(lo_a, hi_a, (m, k)).astype(ta)
    b = rng.integers(-128, 128, (k, n)).astype(np.int8)             # B is signed on this chip
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    out = ["int8", "uint8", "int4", "int32"][int(rng.integers(4))]
    requant = None if out == "int32" else Requant(rng.integers(1 << 28, 1 << 31, n), rng.integers(8, 20, n),
                                                  zero_point=int(rng.integers(-3, 4)),
                                                  rounding=["tflite", "half_up", "half_even"][int(rng.integers(3))])
    return dict(a=a, b=b, bias=bias, requant=requant, relu=bool(rng.integers(2)), out_dtype=out)


@pytest.mark.parametrize("backend", backend_params(("amaranth", "verilator")))
def test_compact_chip_bit_exact(backend, seed):
    """Random GEMMs (shapes, signedness, output formats, requant modes, ReLU) on the icebreaker chip, with
    random memory stalls: the golden model's results; without stalls also its cycles and memory traffic."""
    rng = np.random.default_rng(seed)
    golden = accelerator("golden", COMPACT)
    stalled = Accelerator(backend, COMPACT, mem_stall_seed=seed % (1 << 32) or 1)
    for _ in range(2):
        args = _random_gemm(rng, COMPACT)
        np.testing.assert_array_equal(stalled.matmul(**args), golden.matmul(**args), err_msg=f"seed {seed}")
    args = _random_gemm(rng, COMPACT)
    hardware = accelerator(backend, COMPACT)
    np.testing.assert_array_equal(hardware.matmul(**args), golden.matmul(**args), err_msg=f"seed {seed}")
    for name in ("cycles", "mem_reads", "mem_writes", "retired"):
        assert getattr(hardware.last_run, name) == getattr(golden.last_run, name), (name, f"seed {seed}")
    # a batch: one instruction for both problems
    a, b = rng.integers(0, 256, (2, 9, 21)).astype(np.uint8), rng.integers(-128, 128, (2, 21, 3)).astype(np.int8)
    np.testing.assert_array_equal(hardware.matmul_batch(a, b), golden.matmul_batch(a, b), err_msg=f"seed {seed}")
    assert hardware.last_run.cycles == golden.last_run.cycles, f"seed {seed}"


def test_compact_cycle_model_array_bound(seed):
    """With a pipelined requant unit the A stream, not the requant unit, sets the pace: the cycle model is
    exact there too (several row blocks, long K, mem_latency 3)."""
    rng = np.random.default_rng(seed)
    golden, hardware = accelerator("golden", PIPELINED), accelerator("amaranth", PIPELINED)
    for m, k, n in ((3 * PIPELINED.rows, 60, 3), (5, 150, 2)):
        a, b = rng.integers(-128, 128, (m, k)).astype(np.int8), rng.integers(-128, 128, (k, n)).astype(np.int8)
        np.testing.assert_array_equal(hardware.matmul(a, b), golden.matmul(a, b), err_msg=f"seed {seed}")
        assert hardware.last_run.cycles == golden.last_run.cycles, ((m, k, n), f"seed {seed}")


def test_compact_chip_errors():
    """Illegal GEMMs end with the golden model's error and index, before any memory access: INT4, an unsigned
    B (the driver refuses it), a region beyond memory, a zero size."""
    with pytest.raises(ValueError, match="signed B only"):
        accelerator("golden", COMPACT).matmul(np.ones((3, 5), np.int8), np.ones((5, 2), np.uint8))
    builder = ProgramBuilder(COMPACT)
    emit_gemm(builder, np.ones((3, 5), np.int8), np.ones((5, 2), np.int8), None, None, False, "int8", None)
    legal = builder.build()
    _, fields = isa.decode(legal.instructions[0])
    for change in ({"int4": 1}, {"b_signed": 0}, {"a_addr": COMPACT.mem_depth}, {"k": 0}):
        program = Program(COMPACT, [isa.encode("GEMM", **{**fields, **change}), isa.encode("HALT")],
                          legal.memory.copy(), legal.outputs)
        want = execute(program)
        got = accelerator("amaranth", COMPACT).backend.run(program)
        assert want.error != 0 and (got.error, got.error_pc) == (want.error, want.error_pc), change
        np.testing.assert_array_equal(got.memory, want.memory)


def test_compact_config_without_gemm_engine_writes_through_the_port():
    """The write port belongs to the compact GEMM engine: a chip of the same Config without that engine
    keeps the memory's one read/write port, so the host's image and the engine's outputs are written."""
    config = COMPACT.replace(engines=("sketch",))
    words = Accelerator("amaranth", config).random_uint32(key=(1, 2), counter=(0, 0, 0, 0), n=16)
    np.testing.assert_array_equal(words, accelerator("golden", config).random_uint32(key=(1, 2), counter=(0, 0, 0, 0), n=16))
