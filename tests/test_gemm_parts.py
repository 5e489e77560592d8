# amaranth: UnusedElaboratable=no
"""Sub-components of the GEMM engine on their own, in Amaranth's simulator: the setup's checks against
the golden model's ``check_gemm``, and the A/B address generators against the tile order of
docs/architecture.md under random backpressure."""
import random

from amaranth.sim import Simulator

from tridsa import Config
from tridsa.hw.gemm import GemmSetup, OperandReads
from tridsa.spec import isa
from tridsa.sw.gemm_golden import check_gemm

CFG = Config(rows=2, cols=4, int4=True, mem_width=16, mem_depth=256, accumulate=True, engines=("gemm",))


def _random_fields(rng, cfg):
    """GEMM fields near the edges: zero and large sizes, batches, addresses near and past the memory end."""
    def addr():
        return rng.choice([rng.randrange(cfg.mem_depth), cfg.mem_depth - rng.randrange(1, 8),
                           rng.randrange(1 << 32), cfg.mem_depth + rng.randrange(4)])

    def size():
        return rng.choice([0, 1, rng.randrange(1, 9), rng.randrange(1, 40), rng.randrange(1 << 16)])
    fields = {"m": size(), "k": size(), "n": size(), "a_addr": addr(), "b_addr": addr(), "c_addr": addr(),
              "p_addr": addr(), "int4": rng.random() < 0.3, "a_signed": rng.randrange(2), "b_signed": rng.randrange(2),
              "requant": rng.randrange(2), "rounding": rng.randrange(4), "out_format": rng.randrange(4),
              "relu": rng.randrange(2), "zero_point": 0, "batch": rng.choice([0, 1, 2, 3, rng.randrange(1 << 16)]),
              "accumulate": rng.random() < 0.2}
    if rng.random() < 0.6:      # mostly legal modes and small shapes, so that the range/overlap checks are reached
        fields.update(rounding=rng.randrange(3), requant=1, m=rng.randrange(1, 9), k=rng.randrange(1, 20),
                      n=rng.randrange(1, 9), batch=rng.randrange(4))
        fields.update({f"{r}_addr": rng.randrange(cfg.mem_depth) for r in "abcp"})
    return {name: int(value) for name, value in fields.items()}


def test_setup_reports_the_golden_error_code(seed):
    rng = random.Random(seed)
    cases = [_random_fields(rng, CFG) for _ in range(60)]
    dut = GemmSetup(CFG)
    got = []

    async def bench(ctx):
        for fields in cases:
            word = isa.encode("GEMM", **fields)
            while not ctx.get(dut.ready):
                await ctx.tick()
            ctx.set(dut.instr.as_value(), word)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for _ in range(rng.randrange(3)):       # a new instruction offered while busy is not taken
                ctx.set(dut.instr.as_value(), rng.randrange(1 << isa.INSTR_BITS))
                await ctx.tick()
            cycles = 0
            while not ctx.get(dut.checked):
                cycles += 1
                assert cycles < 40, f"no check result (seed {seed}, {fields})"
                await ctx.tick()
            got.append(ctx.get(dut.fault))
            for _ in range(rng.randrange(3)):       # the result holds until release
                await ctx.tick()
                assert ctx.get(dut.checked) and ctx.get(dut.fault) == got[-1]
            ctx.set(dut.release, 1)
            await ctx.tick()
            ctx.set(dut.release, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    expected = [check_gemm(fields, CFG) for fields in cases]
    assert got == expected, f"seed {seed}: " + "; ".join(
        f"{fields} -> {g}, expected {e}" for fields, g, e in zip(cases, got, expected) if g != e)
    assert len(set(expected)) >= 4, "the draws should reach most error codes"


def _expected_commands(a_addr, b_addr, mt, nt, a_bw, b_bw, problems):
    """One A and one B read per tile, tiles problem outer, then column block, then row block: A restarts
    at its problem's base for every column block, B advances a block per column block."""
    a_cmds, b_cmds = [], []
    for g in range(problems):
        for jb in range(nt):
            for ib in range(mt):
                a_cmds.append((a_addr + g * mt * a_bw + ib * a_bw, a_bw))
                b_cmds.append((b_addr + (g * nt + jb) * b_bw, b_bw))
    return a_cmds, b_cmds


def test_operand_reads_follow_the_tile_order(seed):
    rng = random.Random(seed)
    dut = OperandReads(CFG)
    runs = []
    for _ in range(6):
        mt, nt, a_bw, b_bw, problems = (rng.randrange(1, 4), rng.randrange(1, 4), rng.randrange(1, 5),
                                        rng.randrange(1, 5), rng.randrange(1, 4))
        a_addr, b_addr = rng.randrange(64), rng.randrange(64)
        runs.append((a_addr, b_addr, mt, nt, a_bw, b_bw, problems))
    got = []

    async def bench(ctx):
        for a_addr, b_addr, mt, nt, a_bw, b_bw, problems in runs:
            a_words = mt * a_bw
            for port, value in (("a_addr", a_addr), ("b_addr", b_addr), ("a_bw", a_bw), ("b_bw", b_bw),
                                ("a_words", a_words), ("mt_last", mt - 1), ("nt_last", nt - 1),
                                ("a_final", a_addr + problems * a_words - a_words),
                                ("b_final", b_addr + problems * nt * b_bw - b_bw)):
                ctx.set(getattr(dut, port), value)
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
            ctx.set(dut.run, 1)
            cmds = {"a": [], "b": []}
            for _ in range(40 * mt * nt * problems):
                for name in "ab":
                    port = getattr(dut, name)
                    ready = rng.random() < 0.6
                    ctx.set(port.ready, ready)
                    if ready and ctx.get(port.valid):
                        cmds[name].append((ctx.get(port.payload.addr), ctx.get(port.payload.count)))
                await ctx.tick()
            ctx.set(dut.run, 0)
            got.append((cmds["a"], cmds["b"]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for run, (a_cmds, b_cmds) in zip(runs, got):
        exp_a, exp_b = _expected_commands(*run)
        assert a_cmds == exp_a, f"seed {seed}, run {run}: A"
        assert b_cmds == exp_b, f"seed {seed}, run {run}: B"
