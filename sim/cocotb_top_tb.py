"""cocotb test module run inside the HDL simulator by the verilator/icarus backends.

Reads ``$TRIDSA_RUN_DIR/program.json``, pushes the instructions into ``cmd``, waits for ``halted``
(bounded by ``max_cycles``: a hang fails the run instead of blocking), dumps the memory and writes
``status.json`` (error, error_pc, counters).
"""
import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge, Timer

PERIOD_NS = 10


@cocotb.test()
async def run_program(dut):
    run_dir = Path(os.environ["TRIDSA_RUN_DIR"])
    spec = json.loads((run_dir / "program.json").read_text())
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    dut.cmd__valid.value = 0
    dut.dump.value = 0
    dut.host__req__valid.value = 0
    dut.host__req__payload.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    for word in spec["instructions"]:
        dut.cmd__payload.value = int(word, 16)
        dut.cmd__valid.value = 1
        while True:
            await FallingEdge(dut.clk)
            if dut.cmd__ready.value:
                break
        await RisingEdge(dut.clk)
    dut.cmd__valid.value = 0
    if not dut.halted.value:
        timeout = Timer(spec["max_cycles"] * PERIOD_NS, unit="ns")
        fired = await First(RisingEdge(dut.halted), timeout)
        assert fired is not timeout, f"no halt within {spec['max_cycles']} cycles"
    await FallingEdge(dut.clk)
    packed = int(dut.counters.value)           # the counters struct is one flat port
    names, bits = spec["counters"]["names"], spec["counters"]["bits"]
    status = {"error": int(dut.error.value), "error_pc": int(dut.error_pc.value),
              "counters": {name: (packed >> (i * bits)) & ((1 << bits) - 1) for i, name in enumerate(names)}}
    dut.dump.value = 1
    await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.dump.value = 0
    (run_dir / "status.json").write_text(json.dumps(status))
