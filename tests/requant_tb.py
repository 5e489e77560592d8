"""cocotb testbench for :class:`tridsa.hw.requant.RequantUnit` (run from tests/test_requant.py).

Environment: ``TRIDSA_LANES`` (lanes of the built design), ``TRIDSA_SEED`` (replayable seed),
optional ``TRIDSA_ROWS`` (rows per command). Every command (rounding x format x relu, plus the
disabled pass-through) streams random rows with random valid gaps and ready backpressure
(:func:`tridsa.sim.cocotb_streams.exchange`, which also checks that ``o`` holds valid and payload while
stalled); every output is compared with :func:`tridsa.sw.requant.requantize_raw`.

The vector generators :func:`random_rows` and :func:`random_commands` are shared with the Amaranth
simulation test.
"""
from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from tridsa.hw.requant import RequantUnit
from tridsa.sim.cocotb_streams import Stream, exchange
from tridsa.spec.requant import INT32_MAX, INT32_MIN, OUT_FORMATS, OUT_RANGES, ROUNDING, SHIFT_MAX, ZERO_POINT_BITS
from tridsa.sw.requant import requantize_raw

EDGE_X = [INT32_MIN, INT32_MIN + 1, -(1 << 30), -(1 << 16) - 1, -1, 0, 1, (1 << 16) + 1, 1 << 30, INT32_MAX]
EDGE_M = [0, 1, 2, 3, 1 << 30, (1 << 30) + 1, (1 << 31) - 1]
EDGE_S = [0, 1, 2, 30, 31, 32, 33, 61, SHIFT_MAX]


def _mix(rng, shape, choices):
    """Pick, per element, one of the arrays in ``choices`` uniformly."""
    kind = rng.integers(0, len(choices), shape)
    out = np.zeros(shape, np.int64)
    for k, values in enumerate(choices):
        out = np.where(kind == k, values, out)
    return out


def random_rows(rng: np.random.Generator, n: int, lanes: int) -> dict:
    """``n`` rows of random unit inputs: edge values, exact ties, realistic scales (``m ~ 2**30``,
    ``s`` in 31..55) and full-range values; every lane differs."""
    shape = (n, lanes)
    x = _mix(rng, shape, [rng.choice(EDGE_X, shape), rng.integers(-64, 64, shape),
                          rng.integers(-(1 << 20), 1 << 20, shape), rng.integers(INT32_MIN, INT32_MAX + 1, shape)])
    bias = _mix(rng, shape, [np.zeros(shape, np.int64), rng.choice(EDGE_X, shape), rng.integers(-64, 64, shape),
                             rng.integers(INT32_MIN, INT32_MAX + 1, shape)])
    mult = _mix(rng, shape, [rng.choice(EDGE_M, shape), np.int64(1) << rng.integers(0, 4, shape),
                             rng.integers(1 << 30, 1 << 31, shape), rng.integers(0, 1 << 31, shape)])
    shift = _mix(rng, shape, [rng.choice(EDGE_S, shape), rng.integers(0, 5, shape),
                              rng.integers(31, 56, shape), rng.integers(0, SHIFT_MAX + 1, shape)])
    # a fifth of the elements sit on or next to exact ties: m = 2**k, s = k + j, small v
    tie = rng.random(shape) < 0.2
    k, j = rng.integers(0, 4, shape), rng.integers(1, 3, shape)
    x = np.where(tie, rng.integers(-40, 40, shape), x)
    bias = np.where(tie, 0, bias)
    mult = np.where(tie, np.int64(1) << k, mult)
    shift = np.where(tie, k + j, shift)
    return {"x": x, "bias": bias, "multiplier": mult, "shift": shift}


def random_commands(rng: np.random.Generator) -> list[dict]:
    """Every (rounding, out_format, relu) command with a random zero point of the format (edges and
    odd values included), plus disabled pass-through commands; shuffled."""
    zp_lo, zp_hi = -(1 << (ZERO_POINT_BITS - 1)), (1 << (ZERO_POINT_BITS - 1)) - 1
    cmds = []
    for rounding in ROUNDING.values():
        for name, fmt in OUT_FORMATS.items():
            lo, hi = max(OUT_RANGES[name][0], zp_lo), min(OUT_RANGES[name][1], zp_hi)
            for relu in (0, 1):
                zp = int(rng.choice([0, lo, hi, 1, -1 if lo < 0 else 3, int(rng.integers(lo, hi + 1))]))
                cmds.append(dict(enable=1, rounding=rounding, out_format=fmt, relu=relu, zero_point=zp))
    for relu in (0, 1):
        cmds.append(dict(enable=0, rounding=int(rng.integers(0, 3)), out_format=OUT_FORMATS["int32"], relu=relu,
                         zero_point=int(rng.integers(zp_lo, zp_hi + 1))))
    cmds.append(dict(enable=0, rounding=0, out_format=OUT_FORMATS["int8"], relu=0, zero_point=5))
    order = rng.permutation(len(cmds))
    return [cmds[k] for k in order]


def expected_rows(rows: dict, cmd: dict) -> np.ndarray:
    return requantize_raw(rows["x"], rows["bias"], rows["multiplier"], rows["shift"],
                          enable=bool(cmd["enable"]), rounding=cmd["rounding"], zero_point=cmd["zero_point"],
                          out_format=cmd["out_format"], relu=bool(cmd["relu"]))


def pack_row(layout, rows: dict, k: int) -> int:
    """Bits of input row ``k`` in the unit's payload layout."""
    return layout.const({name: [int(v) for v in rows[name][k]] for name in rows}).as_bits()


def unpack_row(bits: int, lanes: int) -> list[int]:
    out = []
    for lane in range(lanes):
        word = (bits >> (32 * lane)) & 0xFFFFFFFF
        out.append(word - (1 << 32) if word >> 31 else word)
    return out


@cocotb.test()
async def requant_stream(dut):
    lanes = int(os.environ["TRIDSA_LANES"])
    seed = int(os.environ["TRIDSA_SEED"])
    rows_per_cmd = int(os.environ.get("TRIDSA_ROWS", "12"))
    interval = int(os.environ.get("TRIDSA_INTERVAL", "1"))     # cycles per row of the unit
    dut._log.info(f"TRIDSA_SEED={seed} lanes={lanes}")
    rng = np.random.default_rng(seed)
    layout = RequantUnit.input_layout(lanes)

    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0

    total = 0
    for cmd in random_commands(rng):
        rows = random_rows(rng, rows_per_cmd, lanes)
        expected = expected_rows(rows, cmd)
        p_valid = float(rng.choice([0.3, 0.7, 1.0]))
        p_ready = float(rng.choice([0.3, 0.7, 1.0]))
        await FallingEdge(dut.clk)  # pipeline is empty: change the command constants
        dut.enable.value = cmd["enable"]
        dut.rounding.value = cmd["rounding"]
        dut.zero_point.value = cmd["zero_point"] & ((1 << ZERO_POINT_BITS) - 1)
        dut.out_format.value = cmd["out_format"]
        dut.relu.value = cmd["relu"]
        await FallingEdge(dut.clk)  # the unit registers its command constants
        got = await exchange(dut, Stream(dut, "i"), Stream(dut, "o"), range(rows_per_cmd),
                             lambda k: pack_row(layout, rows, k), lambda bits: unpack_row(bits, lanes), rows_per_cmd,
                             rng=rng, p_valid=p_valid, p_ready=p_ready, max_cycles=rows_per_cmd * (40 + interval) + 100)
        for received, row in enumerate(got):
            want = [int(v) for v in expected[received]]
            assert row == want, (f"row {received} of cmd {cmd}: got {row}, expected {want}; inputs "
                                 f"{ {k: rows[k][received].tolist() for k in rows} } (seed {seed})")
        await FallingEdge(dut.clk)
        assert not int(dut.o__valid.value), f"extra output row after cmd {cmd} (seed {seed})"
        total += len(got)
    dut._log.info(f"{total} rows checked")
