"""cocotb testbench of Mult18x18 (the instantiated MULT18X18D with its Verilog model): random signed
operands and a random clock enable; ``p`` is the product of the operands of two enabled cycles ago.
Seed from TRIDSA_SEED."""
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge


def _signed(value, bits):
    return value - (1 << bits) if value >> (bits - 1) else value


@cocotb.test()
async def random_products_with_stalls(dut):
    seed = int(os.environ["TRIDSA_SEED"])
    dut._log.info(f"TRIDSA_SEED={seed}")
    rng = random.Random(seed)
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    dut.rst.value, dut.ce.value, dut.a.value, dut.b.value = 1, 1, 0, 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    inputs, product = (0, 0), 0         # the input registers and the output register, as the model sees them
    stalls = 0
    for _ in range(2000):
        await FallingEdge(dut.clk)
        assert _signed(int(dut.p.value), 36) == product, f"seed {seed}"
        a, b, ce = rng.randrange(-1 << 17, 1 << 17), rng.randrange(-1 << 17, 1 << 17), rng.random() < 0.7
        dut.a.value, dut.b.value, dut.ce.value = a & 0x3FFFF, b & 0x3FFFF, int(ce)
        stalls += not ce
        if ce:
            inputs, product = (a, b), inputs[0] * inputs[1]
    assert stalls > 0
