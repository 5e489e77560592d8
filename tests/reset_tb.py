"""cocotb test module: reset asserted in the middle of a command, then a correct run (tests/test_fuzz.py).

Drives ``tridsa_top`` like :mod:`tridsa.sim.cocotb_top_tb` (memory loaded by ``+mem_in``, dumped by
``+mem_out``). Reads ``$TRIDSA_RUN_DIR/reset.json`` (``instructions``, ``reset_at``, ``max_cycles``, ``counters``):

1. push an illegal opcode, wait for ``halted`` with ILLEGAL_OPCODE, pulse reset: status must clear;
2. push the Program, wait ``reset_at`` cycles (the Program is still running), pulse reset for 3 cycles
   with ``cmd`` idle: ``halted``, ``error`` and the counters must be 0 afterwards;
3. push the Program again and let it finish; write ``status.json`` and dump the memory.

The Program must be idempotent (no instruction writes what any instruction reads), so the final memory
equals the golden model's result although step 2 left partial outputs behind.
"""
import json
import os
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge

from tridsa.sim.cocotb_top_tb import counters, dump, push, start, status, wait_halted


async def _reset(dut, cycles):
    await FallingEdge(dut.clk)
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def reset_in_the_middle(dut):
    run_dir = Path(os.environ["TRIDSA_RUN_DIR"])
    spec = json.loads((run_dir / "reset.json").read_text())
    program = [int(w, 16) for w in spec["instructions"]]
    await start(dut)

    # 1. an error status is cleared by reset
    await push(dut, [0xFF])
    await wait_halted(dut, 1000)
    assert int(dut.error.value) == 1, f"illegal opcode gave error {int(dut.error.value)}"
    await _reset(dut, 2)
    assert not dut.halted.value and int(dut.error.value) == 0

    # 2. reset in the middle of the Program
    await push(dut, program)
    await ClockCycles(dut.clk, spec["reset_at"])
    await FallingEdge(dut.clk)
    mid_run = not dut.halted.value
    before = counters(dut, spec["counters"])
    await _reset(dut, 3)
    await ClockCycles(dut.clk, 5)                 # idle after reset: nothing may start by itself
    await FallingEdge(dut.clk)
    after = counters(dut, spec["counters"])
    assert not dut.halted.value and int(dut.error.value) == 0, "status survived reset"
    assert not any(after.values()), f"counters survived reset: {after}"

    # 3. a correct run
    await push(dut, program)
    await wait_halted(dut, spec["max_cycles"])
    result = dict(status(dut, spec["counters"]), mid_run=mid_run, retired_before_reset=before["retired"])
    await dump(dut)
    (run_dir / "status.json").write_text(json.dumps(result))
