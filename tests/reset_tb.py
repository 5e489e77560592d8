"""cocotb test module: reset asserted in the middle of a command, then a correct run (tests/test_fuzz.py).

Drives ``tridsa_top`` like :mod:`tridsa.sim.cocotb_top_tb` (memory loaded by ``+mem_in``, dumped by
``+mem_out``). Reads ``$TRIDSA_RUN_DIR/reset.json`` (``instructions``, ``reset_at``, ``max_cycles``):

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
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge, Timer

from tridsa.hw.top import COUNTER_BITS, COUNTERS

PERIOD_NS = 10


def _counters(dut):
    packed = int(dut.counters.value)
    mask = (1 << COUNTER_BITS) - 1
    return {name: (packed >> (i * COUNTER_BITS)) & mask for i, name in enumerate(COUNTERS)}


async def _reset(dut, cycles):
    await FallingEdge(dut.clk)
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def _push(dut, words):
    """Push ``words`` into ``cmd``, one per handshake (values change just after a rising edge)."""
    await RisingEdge(dut.clk)
    for word in words:
        dut.cmd__payload.value = int(word)
        dut.cmd__valid.value = 1
        while True:
            await FallingEdge(dut.clk)
            if dut.cmd__ready.value:
                break
        await RisingEdge(dut.clk)
    dut.cmd__valid.value = 0


async def _wait_halted(dut, max_cycles):
    if not dut.halted.value:
        timeout = Timer(max_cycles * PERIOD_NS, unit="ns")
        fired = await First(RisingEdge(dut.halted), timeout)
        assert fired is not timeout, f"no halt within {max_cycles} cycles"
    await FallingEdge(dut.clk)


@cocotb.test()
async def reset_in_the_middle(dut):
    run_dir = Path(os.environ["TRIDSA_RUN_DIR"])
    spec = json.loads((run_dir / "reset.json").read_text())
    program = [int(w, 16) for w in spec["instructions"]]
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.cmd__valid.value = 0
    dut.dump.value = 0
    dut.host__req__valid.value = 0
    dut.host__req__payload.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    # 1. an error status is cleared by reset
    await _push(dut, [0xFF])
    await _wait_halted(dut, 1000)
    assert int(dut.error.value) == 1, f"illegal opcode gave error {int(dut.error.value)}"
    await _reset(dut, 2)
    assert not dut.halted.value and int(dut.error.value) == 0

    # 2. reset in the middle of the Program
    await _push(dut, program)
    await ClockCycles(dut.clk, spec["reset_at"])
    await FallingEdge(dut.clk)
    mid_run = not dut.halted.value
    before = _counters(dut)
    await _reset(dut, 3)
    await ClockCycles(dut.clk, 5)                 # idle after reset: nothing may start by itself
    await FallingEdge(dut.clk)
    after = _counters(dut)
    assert not dut.halted.value and int(dut.error.value) == 0, "status survived reset"
    assert not any(after.values()), f"counters survived reset: {after}"

    # 3. a correct run
    await _push(dut, program)
    await _wait_halted(dut, spec["max_cycles"])
    status = {"error": int(dut.error.value), "error_pc": int(dut.error_pc.value), "counters": _counters(dut),
              "mid_run": mid_run, "retired_before_reset": before["retired"]}
    dut.dump.value = 1
    await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.dump.value = 0
    (run_dir / "status.json").write_text(json.dumps(status))
