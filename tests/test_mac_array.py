# amaranth: UnusedElaboratable=no
"""The systolic array and its PEs: Amaranth simulation and cocotb (Verilator, Icarus), random valid gaps."""
import os

import numpy as np
import pytest

from mac_array_model import MODES, pack, schedule, tile_result
from tridsa.hw.mac_array import MacArray, ProcessingElement


def run_amaranth(rows, cols, seed, **options):
    from amaranth.sim import Simulator
    dut = MacArray(rows, cols, **options)
    rng = np.random.default_rng(seed)
    got, expected = [], []

    async def tb(ctx):
        await ctx.tick()                # the array takes k-steps from the second cycle after a reset
        for mode in MODES if dut.int4 else [m for m in MODES if not m[0]]:
            cycles, exp = schedule(rng, rows, cols, dut.min_tile_cycles, 4, mode)
            expected.extend(exp)
            ctx.set(dut.mode.as_value(), pack(mode, 1))
            await ctx.tick()            # the mode holds from the cycle before a tile's first k-step
            for valid, first, last, a, b in cycles + [(0, 0, 0, [0] * rows, [0] * cols)] * (2 * rows + cols + 6):
                ctx.set(dut.ctrl.as_value(), valid | (first << 1) | (last << 2))
                ctx.set(dut.a.as_value(), pack(a, 8))
                ctx.set(dut.b.as_value(), pack(b, 8))
                await ctx.tick()
                if ctx.get(dut.out_valid):
                    got.append([ctx.get(dut.out_row[j]) for j in range(cols)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got, expected


@pytest.mark.parametrize("rows, cols, options", [
    (1, 1, {}), (2, 4, {}), (4, 2, {}), (3, 3, {}),
    (3, 3, {"hard_multipliers": 4}),                      # hard PEs then LUT PEs (an FPGA's DSP budget)
    (2, 2, {"hard_multipliers": 0, "int4": False}), (2, 2, {"int4": False}),
    # iCE40: pairs of a row share an SB_MAC16 (behavioural model); lone DSP PEs and LUT PEs beside them
    (2, 4, {"family": "ice40", "int4": False}), (1, 1, {"family": "ice40", "int4": False}),
    (4, 4, {"family": "ice40", "int4": False, "hard_multipliers": 7}),
    (2, 2, {"family": "ecp5"}),
    (10, 2, {}),                                          # more than READOUT_GROUP rows: a two-stage readout
    (5, 2, {"row_group": 2}), (10, 3, {"row_group": 3, "family": "ecp5"}),      # registered links between row groups
    (3, 2, {"row_group": 1, "hard_multipliers": 3})])
def test_array_amaranth(rows, cols, options, seed):
    got, expected = run_amaranth(rows, cols, seed, **options)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert list(g) == list(e)


@pytest.mark.parametrize("kind", ["mult18", "lut"])
def test_pe_two_int4_macs_per_cycle(kind):
    """One PE in INT4 mode adds both nibble products each cycle; registers pass operands on."""
    from amaranth.sim import Simulator
    pe = ProcessingElement(kind)

    async def tb(ctx):
        ctx.set(pe.mode.as_value(), pack((1, 1, 1), 1))
        for step, (a, b) in enumerate([(0x7F, 0x8F), (0x12, 0xF3)]):
            ctx.set(pe.a_in, a)
            ctx.set(pe.b_in, b)
            ctx.set(pe.ctrl_in.as_value(), 1 | ((step == 0) << 1) | ((step == 1) << 2))
            await ctx.tick()
            assert ctx.get(pe.a_out) == a and ctx.get(pe.b_out) == b
        ctx.set(pe.ctrl_in.as_value(), 0)
        await ctx.tick().repeat(pe.latency - 1)
        # (-1*-1 + 7*-8) + (2*3 + 1*-1) = -55 + 5
        assert ctx.get(pe.result) == -50

    sim = Simulator(pe)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
@pytest.mark.parametrize("rows, cols, options", [
    (4, 2, {}),
    # the DSP primitives as instantiated on the boards, simulated with their Verilog models (yosys'
    # SB_MAC16 from ice40/cells_sim.v; sim/mult18x18d_sim.v): the same results as the behavioural PEs
    (2, 4, {"family": "ice40", "int4": False, "hard_multipliers": 7}),
    (2, 2, {"family": "ecp5"})])
def test_array_cocotb(simulator, rows, cols, options, seed):
    from tridsa.sim.cocotb_run import build_design, run_test
    from tridsa.sim.dsp_models import dsp_model_sources
    family = options.get("family")
    if family:
        options = {**options, "primitives": True}
    key = f"{rows}x{cols}-" + "-".join(f"{k}={v}" for k, v in sorted(options.items()))
    runner, build_dir = build_design(lambda: MacArray(rows, cols, **options), "mac_array_top", key, simulator,
                                     extra_sources=dsp_model_sources(family) if family else ())
    here = os.path.dirname(__file__)
    run_test(runner, build_dir, "mac_array_top", "mac_array_tb",
             extra_env={"PYTHONPATH": here + os.pathsep + os.environ.get("PYTHONPATH", ""), "TRIDSA_SEED": str(seed),
                        "ARRAY_ROWS": str(rows), "ARRAY_COLS": str(cols), "ARRAY_INT4": str(int(options.get("int4", True))),
                        "ARRAY_MIN_TILE": str(MacArray(rows, cols).min_tile_cycles)})


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_mult18x18_clock_enable_cocotb(simulator, seed):
    """The instantiated MULT18X18D (its Verilog model) holds its input and output registers while ``ce`` is
    low, as the requant unit's stalled pipeline needs (the behavioural model runs in the other tests)."""
    from tridsa.hw.dsp import Mult18x18
    from tridsa.sim.cocotb_run import build_design, run_test
    from tridsa.sim.dsp_models import dsp_model_sources
    runner, build_dir = build_design(lambda: Mult18x18(primitive=True), "mult18_top", "mult18-primitive", simulator,
                                     extra_sources=dsp_model_sources("ecp5"))
    here = os.path.dirname(__file__)
    run_test(runner, build_dir, "mult18_top", "mult18_tb",
             extra_env={"PYTHONPATH": here + os.pathsep + os.environ.get("PYTHONPATH", ""), "TRIDSA_SEED": str(seed)})


def test_pe_packed_int4_product_edges(seed):
    """The hard PE's packed INT4 multiply (two products from one 18x18 multiplier) on every nibble edge
    pair and random bytes, in every signedness: one-step tiles, so ``result`` is each dot product."""
    from amaranth.sim import Simulator
    pe = ProcessingElement("mult18")
    rng = np.random.default_rng(seed)
    edges = [n | (h << 4) for n in (0, 1, 7, 8, 15) for h in (0, 1, 7, 8, 15)]
    pairs = [(a, b) for a in edges for b in edges] + [tuple(p) for p in rng.integers(0, 256, (1500, 2))]

    async def tb(ctx):
        for mode in [m for m in MODES if m[0]] + [(1, 0, 1), (1, 1, 0)]:
            ctx.set(pe.mode.as_value(), pack(mode, 1))
            ctx.set(pe.ctrl_in.as_value(), 0b111)
            want = []
            for step, (a, b) in enumerate(pairs + [(0, 0)] * pe.latency):
                ctx.set(pe.a_in, int(a))
                ctx.set(pe.b_in, int(b))
                await ctx.tick()
                if step >= pe.latency - 1:              # read after the latency-th edge since step - 1
                    done = step - (pe.latency - 1)
                    assert ctx.get(pe.result) == want[done], (mode, pairs[done])
                want.append(int(tile_result([[a]], [[b]], mode)[0][0]))

    sim = Simulator(pe)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


def test_sb_mac16_pair_products_edges(seed):
    """Two PEs on one SB_MAC16 (behavioural model): the DSP multiplies the bytes as signed and the PEs correct
    for unsigned operands. One-step tiles: every a byte against edge and random b bytes, in every INT8
    signedness; both halves (the delayed left PE and the right PE) checked."""
    from amaranth.sim import Simulator
    dut = MacArray(1, 2, int4=False, family="ice40", primitives=False)
    rng = np.random.default_rng(seed)
    edges = [0, 1, 2, 127, 128, 129, 254, 255]
    cases = [(a, b0, b1) for a in range(256) for b0, b1 in zip(edges, edges[::-1])]
    cases += [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(500)]
    got = []

    async def tb(ctx):
        await ctx.tick()                # the array takes k-steps from the second cycle after a reset
        for mode in [m for m in MODES if not m[0]]:
            ctx.set(dut.mode.as_value(), pack(mode, 1))
            want = [list(tile_result([[a]], [[b0, b1]], mode)[0]) for a, b0, b1 in cases]
            got.clear()
            for step, (a, b0, b1) in enumerate(cases + [(0, 0, 0)] * 4):
                for idle in range(dut.min_tile_cycles):          # one k-step tiles, min_tile_cycles apart
                    ctx.set(dut.ctrl.as_value(), 0b111 if idle == 0 and step < len(cases) else 0)
                    ctx.set(dut.a.as_value(), a)
                    ctx.set(dut.b.as_value(), pack([b0, b1], 8))
                    await ctx.tick()
                    if ctx.get(dut.out_valid):
                        got.append([ctx.get(dut.out_row[j]) for j in range(2)])
            assert got == want, mode

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
