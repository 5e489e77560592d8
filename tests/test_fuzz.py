"""Differential fuzzing: random Programs on the golden model and the gateware backends (sw/fuzz.py).

The budget CI runs every time: ``TRIDSA_FUZZ_N`` Programs on Verilator (default 60, each running up to 8
instructions of every op), a few on Icarus and Amaranth. A failing Program is shrunk and saved to
``$TRIDSA_FUZZ_OUT`` (default: pytest's tmp dir) for ``tridsa run FILE --backend B --check``. The seed is
printed; ``TRIDSA_SEED=<n>`` replays a run. Longer campaigns: docs/reliability.md.
"""
import os

import numpy as np
import pytest

from conftest import SMALL, accelerator
from tridsa.sw import fuzz, fuzz_cli
from tridsa.spec import isa
from tridsa.sw.golden import execute
from tridsa.sw.program import Program, RunResult


def _programs(seed, n, **kwargs):
    return [fuzz.random_program(SMALL, fuzz.program_rng(seed, i), **kwargs) for i in range(n)]


# ---- the generator -------------------------------------------------------------------------------------
def test_generator_is_deterministic_and_well_defined(seed):
    first, again = _programs(seed, 5), _programs(seed, 5)
    for a, b in zip(first, again):
        assert a.instructions == b.instructions and np.array_equal(a.memory, b.memory)
        assert fuzz.undefined_reason(a) is None
        assert isa.decode(a.instructions[-1])[0].name == "HALT"


def test_generator_covers_every_op_and_error(seed):
    """Every op of isa.OPS runs (or is rejected) somewhere, and the common error codes all occur."""
    want_ops = {op.name for op in isa.OPS if op.name != "HALT"} | {"illegal"}
    want_errors = {"OK", "ILLEGAL_OPCODE", "ADDR_RANGE", "BAD_SHAPE", "BAD_MODE", "INDEX_RANGE", "BAD_OFFSETS"}
    ops, errors, aliased = set(), set(), 0
    for index in range(1000):                   # usually done after ~200 Programs
        if ops >= want_ops and errors >= want_errors and aliased:
            break
        program = fuzz.random_program(SMALL, fuzz.program_rng(seed, index))
        result = execute(program)
        errors.add(isa.ERROR_NAMES[result.error])
        for word in program.instructions[:result.counters["retired"] + (1 if result.error else 0)]:
            op, _ = isa.decode(word)
            ops.add(op.name if op else "illegal")
        regions = sorted((r.addr, r.words) for r in program.outputs.values())
        aliased += any(a[0] + a[1] > b[0] for a, b in zip(regions, regions[1:]))
    assert ops >= want_ops
    assert errors >= want_errors
    assert aliased > 0          # some outputs overwrite earlier regions


def test_undefined_self_aliasing_is_rejected():
    """A legal instruction writing over its own input is outside the architecture: never generated."""
    from tridsa.sw.builder import ProgramBuilder
    builder = ProgramBuilder(SMALL)
    builder.memory[:64] = 1
    builder.emit("RNG", n=4, out_addr=0, key0=1, key1=2, ctr0=0, ctr1=0, ctr2=0, ctr3=0)
    builder.emit("SKETCH", m=4, K=4, k=8, a_addr=1, y_addr=0, p_addr=20, dist=0, a_signed=1)
    reason = fuzz.undefined_reason(builder.build())
    assert reason is not None and "SKETCH" in reason


@pytest.mark.parametrize("dtype", ["int8", "int32"])
@pytest.mark.parametrize("mode", ["sum", "mean", "max", "copy"])
def test_gather_region_model_is_exact(mode, dtype, seed):
    """The fuzzer's GATHER output region is exactly the words golden writes, for every mode and table
    type (mode copy writes table rows: an int8 row is a quarter of an int32 output row), so an output
    that ends where the lowest input begins is legal and one word more is self-aliasing."""
    from tridsa.sw.builder import ProgramBuilder
    from tridsa.sw.gather_golden import execute_gather
    from tridsa.sw.gather_ops import emit_gather
    rng = np.random.default_rng(seed)
    lo, hi = (-128, 128) if dtype == "int8" else (-2 ** 31, 2 ** 31)
    table = rng.integers(lo, hi, (9, 5)).astype(dtype)             # one GATHER; a row of 1 or 2 words
    builder = ProgramBuilder(SMALL)
    builder.alloc(64)                                                # room below the inputs
    emit_gather(builder, table, rng.integers(0, 9, 11), [0, 3, 3, 8], mode, name="g", cache_hints=False)
    fields = isa.decode(builder.instructions[-1])[1]
    inputs, (output,), _ = fuzz.REGIONS["GATHER"](fields, builder.memory, SMALL)
    assert output[1] == 4 * (1 if (mode, dtype) == ("copy", "int8") else 2)      # 4 bags
    before = builder.memory.copy()
    before[output[0]:output[0] + output[1]] = 0xA5                  # golden writes every word, padding too
    memory = before.copy()
    assert execute_gather(memory, fields, SMALL) == 0
    written = np.flatnonzero(np.any(memory != before, axis=1))
    assert written.tolist() == list(range(output[0], output[0] + output[1]))
    below = min(addr for addr, _ in inputs) - output[1]
    for out_addr, aliased in ((below, False), (below + 1, True)):
        program = builder.build()
        program.instructions[-2] = isa.encode("GATHER", **dict(fields, out_addr=out_addr))
        reason = fuzz.undefined_reason(program)
        assert (reason is not None and "GATHER" in reason) == aliased, reason


# ---- the differential runner and the shrinker, on deliberately broken backends -------------------
class _Mutant:
    """A golden backend with one injected bug (to show the runner and the shrinker catch it)."""
    name = "mutant"

    def __init__(self, bug):
        self.bug = bug

    def run(self, program):
        result = execute(program)
        return self.bug(program, result) or result


def _flip_after_gemm(program, result):
    if any(isa.decode(w)[0] is not None and isa.decode(w)[0].name == "GEMM"
           for w in program.instructions[:result.counters["retired"]]):
        memory = result.memory.copy()
        memory[-1, 0] ^= 1                 # a stray write far from every output region
        return RunResult(memory, result.error, result.error_pc, result.counters)


def _wrong_pc(program, result):
    if result.error:
        return RunResult(result.memory, result.error, result.error_pc + 1, result.counters)


@pytest.mark.parametrize("bug, kind", [(_flip_after_gemm, "memory"), (_wrong_pc, "status")])
def test_runner_catches_and_shrinks_a_bug(tmp_path, bug, kind):
    backend = _Mutant(bug)
    report = fuzz.fuzz(SMALL, "mutant", n=40, seed=1, out=tmp_path, backend_obj=backend, shrink_budget=80)
    assert report.failures, "the injected bug was not found"
    index, mismatch, (original, small) = report.failures[0]
    assert mismatch.kind == kind
    big, tiny = Program.load(original), Program.load(small)
    assert fuzz.compare(tiny, backend) is not None
    assert len(tiny.instructions) <= min(3, len(big.instructions))
    assert np.count_nonzero(tiny.memory.any(axis=1)) <= np.count_nonzero(big.memory.any(axis=1))
    assert (tmp_path / f"fail-seed1-{index}.txt").read_text().count("tridsa run") == 1


class _HangsOnGatherError(_Mutant):
    """A backend with a cycle limit that hangs on a GATHER ending in an error (the bug of seed 11,
    Program 263), the way the gateware backends report it."""

    def __init__(self):
        super().__init__(lambda program, result: None)
        self.max_cycles, self.limits = 123, []

    def run(self, program):
        self.limits.append(self.max_cycles)
        result = execute(program)
        op = isa.decode(program.instructions[result.error_pc])[0] if result.error else None
        if op is not None and op.name == "GATHER":
            raise RuntimeError(f"cocotb test(s) failed: run_program\n...\nAssertionError: no halt within "
                               f"{self.max_cycles} cycles")
        return result


def test_a_hang_fails_at_the_programs_cycle_limit(tmp_path):
    backend = _HangsOnGatherError()
    report = fuzz.fuzz(SMALL, "mutant", n=60, seed=11, out=tmp_path, backend_obj=backend, shrink_budget=20)
    assert report.failures, "no Program ended in a GATHER error"
    index, mismatch, (original, small) = report.failures[0]
    program = Program.load(original)
    assert mismatch.kind == "hang" and mismatch.detail == f"no halt within {fuzz.cycle_limit(program)} cycles"
    assert backend.max_cycles == 123 and len(set(backend.limits)) > 2      # per Program, then restored
    assert "no halt within" in (tmp_path / f"fail-seed11-{index}.txt").read_text()
    assert fuzz.compare(Program.load(small), backend).kind == "hang"


def test_saved_failure_replays_with_tridsa_run(tmp_path, capsys):
    from tridsa.sw.cli import main as cli_main
    report = fuzz.fuzz(SMALL, "mutant", n=40, seed=1, out=tmp_path, backend_obj=_Mutant(_flip_after_gemm))
    small = report.failures[0][2][1]
    assert cli_main(["run", str(small), "--backend", "golden"]) in (0, 1)
    assert "status:" in capsys.readouterr().out


def test_main_runs_and_summarizes(capsys):
    code = fuzz_cli.main(["--backend", "golden", "--n", "4", "--seed", "5", "--rows", "4", "--cols", "4",
                      "--mem-width", "16", "--mem-depth", "2048"])
    captured = capsys.readouterr()
    assert code == 0
    assert "4 Programs" in captured.out and "0 failing" in captured.out
    assert "fuzz [" in captured.err and "4/4" in captured.err      # the progress bar
    assert fuzz_cli.main(["--n", "-1", "--backend", "golden"]) == 2


# ---- the CI budget on the gateware ---------------------------------------------------------------------
_BUDGET = {"verilator": int(os.environ.get("TRIDSA_FUZZ_N", 60)), "icarus": 6, "amaranth": 2}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["verilator", "icarus", "amaranth"])
def test_fuzz_gateware_matches_golden(backend, seed, tmp_path):
    out = os.environ.get("TRIDSA_FUZZ_OUT", tmp_path)
    runner = accelerator(backend).backend if backend != "amaranth" else fuzz.make_backend("amaranth", SMALL, 200_000)
    report = fuzz.fuzz(SMALL, backend, n=_BUDGET[backend], seed=seed, out=out, backend_obj=runner,
                       instructions=8 if backend != "amaranth" else 3,
                       max_cost=fuzz.MAX_COST if backend != "amaranth" else 2_000)
    print(report.summary())
    assert report.programs == _BUDGET[backend]
    assert not report.failures, report.summary()


# ---- reset in the middle of a command ------------------------------------------------------------------
def _idempotent_program(rng):
    """GEMM, GATHER, RNG and SKETCH on fresh regions: no instruction writes what any instruction reads."""
    from tridsa.sw.builder import ProgramBuilder
    from tridsa.sw.gather_ops import emit_gather
    from tridsa.sw.gemm_ops import emit_gemm
    from tridsa.sw.requant import Requant
    from tridsa.sw.sketch_ops import emit_rng, emit_sketch
    builder = ProgramBuilder(SMALL)
    emit_gemm(builder, rng.integers(-128, 128, (13, 24)), rng.integers(-128, 128, (24, 11)),
              requant=Requant(multiplier=1 << 30, shift=38, zero_point=3), relu=True, name="gemm")
    emit_gather(builder, rng.integers(-100, 100, (20, 5)).astype(np.int32), rng.integers(0, 20, 12), [0, 3, 3, 9],
                name="emb")
    emit_rng(builder, (1, 2), (0xFFFFFFFF, 0, 0, 0), 37, name="rng")
    emit_sketch(builder, rng.integers(-128, 128, (9, 17)), 10, (3, 4), name="sketch")
    return builder.build()


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["cocotb-verilator", "icarus"])
def test_reset_in_the_middle_then_correct_run(simulator, seed, tmp_path):
    import json
    import sys
    from pathlib import Path
    from tridsa.sim.cocotb_run import run_test
    from tridsa.sim.cocotb_sim import TOPLEVEL
    from tridsa.sim.memimage import read_hex, write_hex
    rng = np.random.default_rng(seed)
    program = _idempotent_program(rng)
    backend = accelerator(simulator).backend
    want = execute(program)
    plain = backend.run(program)                     # also measures the Program's length in cycles
    assert fuzz.compare(program, backend) is None
    cycles = plain.counters["cycles"]
    reset_at = int(rng.integers(1, cycles - len(program.instructions) - 2))
    print(f"reset after {reset_at} of {cycles} cycles")
    runner, build_dir, counter_spec = backend._build()
    write_hex(program.memory, tmp_path / "mem_in.hex")
    (tmp_path / "reset.json").write_text(json.dumps(
        {"instructions": [hex(w) for w in program.instructions], "reset_at": reset_at, "max_cycles": 10 * cycles,
         "counters": counter_spec}))
    tests_dir = str(Path(__file__).parent)
    run_test(runner, build_dir, TOPLEVEL, "reset_tb", test_dir=tmp_path,
             extra_env={"TRIDSA_RUN_DIR": str(tmp_path), "PYTHONPATH": __import__("os").pathsep.join(
                 [tests_dir] + [p for p in sys.path if p])},
             plusargs=[f"+mem_in={tmp_path / 'mem_in.hex'}", f"+mem_out={tmp_path / 'mem_out.hex'}"])
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["mid_run"], "the reset came after the Program had finished"
    assert (status["error"], status["error_pc"]) == (want.error, want.error_pc) == (0, 0)
    assert status["counters"]["retired"] == want.counters["retired"] == 4
    assert status["counters"]["cycles"] == cycles        # the rerun is cycle-identical to a fresh run
    memory = read_hex(tmp_path / "mem_out.hex", SMALL.mem_depth, SMALL.mem_width)
    assert np.array_equal(memory, want.memory)
