"""cocotb testbench of the MacArray (and through it, every PE): random tiles, random valid gaps,
every operand mode; each output row is compared with the NumPy model. Seed from TRIDSA_SEED."""
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from mac_array_model import MODES, pack, schedule, unpack_signed


@cocotb.test()
async def random_tiles(dut):
    rows, cols, min_tile = (int(os.environ[k]) for k in ("ARRAY_ROWS", "ARRAY_COLS", "ARRAY_MIN_TILE"))
    seed = int(os.environ["TRIDSA_SEED"])
    dut._log.info(f"TRIDSA_SEED={seed}")
    rng = np.random.default_rng(seed)
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    dut.ctrl.value = 0
    dut.a.value = 0
    dut.b.value = 0
    dut.mode.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 1)       # the array takes k-steps from the second cycle after a reset
    checked = 0
    int4 = os.environ.get("ARRAY_INT4", "1") == "1"
    for mode in [m for m in MODES if int4 or not m[0]]:
        cycles, expected = schedule(rng, rows, cols, min_tile, 6, mode)
        dut.mode.value = pack(mode, 1)
        await ClockCycles(dut.clk, 1)   # the mode holds from the cycle before a tile's first k-step
        got = []
        for valid, first, last, a, b in cycles + [(0, 0, 0, [0] * rows, [0] * cols)] * (rows + cols + 6):
            await FallingEdge(dut.clk)
            if dut.out_valid.value:
                got.append(unpack_signed(int(dut.out_row.value), cols, 32))
            dut.ctrl.value = valid | (first << 1) | (last << 2)
            dut.a.value = pack(a, 8)
            dut.b.value = pack(b, 8)
        assert len(got) == len(expected), f"mode {mode}: {len(got)} rows out, {len(expected)} expected"
        for i, (g, e) in enumerate(zip(got, expected)):
            assert list(g) == list(e), f"mode {mode} row {i}: got {g}, expected {list(e)}"
        checked += len(got)
    dut._log.info(f"checked {checked} rows")
