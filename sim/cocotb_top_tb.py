"""cocotb test module run inside the HDL simulator by the verilator/icarus backends, and the driver
routines other testbenches of ``tridsa_top`` reuse (:func:`start`, :func:`push`, :func:`wait_halted`,
:func:`counters`, :func:`dump`).

:func:`run_program` reads ``$TRIDSA_RUN_DIR/program.json``, pushes the instructions into ``cmd``, waits
for ``halted`` (bounded by ``max_cycles``: a hang fails the run instead of blocking), dumps the memory
(``+mem_out``) and writes ``status.json`` (error, error_pc, counters).
"""
import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge, Timer

PERIOD_NS = 10


async def start(dut):
    """Start the clock (driven by the simulator: no Python per cycle), idle every input and hold reset for
    two cycles."""
    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    dut.cmd__valid.value = 0
    dut.cmd__payload.value = 0
    dut.dump.value = 0
    dut.host__req__valid.value = 0
    dut.host__req__payload.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def push(dut, words):
    """Push instruction ``words`` into ``cmd``, one per handshake (inputs change after a rising edge)."""
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


async def wait_halted(dut, max_cycles):
    """Wait for ``halted`` without per-cycle Python; fail after ``max_cycles``."""
    if not dut.halted.value:
        timeout = Timer(max_cycles * PERIOD_NS, unit="ns")
        fired = await First(RisingEdge(dut.halted), timeout)
        assert fired is not timeout, f"no halt within {max_cycles} cycles"
    await FallingEdge(dut.clk)


def counters(dut, layout):
    """The flat ``counters`` port split into named fields; ``layout`` is ``{"names": [...], "bits": n}``
    (recorded with the build, see :mod:`tridsa.sim.cocotb_sim`)."""
    packed, bits = int(dut.counters.value), layout["bits"]
    return {name: (packed >> (i * bits)) & ((1 << bits) - 1) for i, name in enumerate(layout["names"])}


def status(dut, layout):
    """Error code, failing instruction and counters, as the backend's ``status.json`` holds them."""
    return {"error": int(dut.error.value), "error_pc": int(dut.error_pc.value), "counters": counters(dut, layout)}


async def dump(dut):
    """Make the memory model write ``+mem_out``."""
    dut.dump.value = 1
    await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.dump.value = 0


@cocotb.test()
async def run_program(dut):
    run_dir = Path(os.environ["TRIDSA_RUN_DIR"])
    spec = json.loads((run_dir / "program.json").read_text())
    await start(dut)
    await push(dut, [int(word, 16) for word in spec["instructions"]])
    await wait_halted(dut, spec["max_cycles"])
    result = status(dut, spec["counters"])
    await dump(dut)
    (run_dir / "status.json").write_text(json.dumps(result))
