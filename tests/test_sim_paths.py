"""The fast Verilator path, cocotb on Verilator and cocotb on Icarus run the same Programs identically:
memory image, error code, error pc and every counter (cycles included); and the fast path's own
contract: one process for many Programs, cycle limit, crash recovery, Configs side by side, waves."""
import os
import signal

import numpy as np
import pytest

from conftest import SMALL, accelerator
from tridsa import Accelerator, Config
from tridsa.sim.backend_base import CycleLimit
from tridsa.sim.verilator_model import SimulatorCrashed
from tridsa.sw import fuzz
from tridsa.sw.builder import ProgramBuilder
from tridsa.sw.golden import execute

pytestmark = pytest.mark.slow


def _programs(seed, n):
    """``n`` random fuzz Programs (every engine; risky ones end in errors) plus an illegal opcode."""
    rng = np.random.default_rng(seed)
    programs = [fuzz.random_program(SMALL, rng, instructions=5) for _ in range(n)]
    builder = ProgramBuilder(SMALL)
    builder.emit("RNG", n=8, out_addr=builder.alloc(2), key0=1, key1=2, ctr0=0, ctr1=0, ctr2=0, ctr3=0)
    program = builder.build()
    program.instructions.insert(1, 0xFF)                     # an opcode no engine has
    return programs + [program]


def _signature(result):
    return result.error, result.error_pc, {k: v for k, v in result.counters.items() if k != "wall_seconds"}


def test_fast_path_equals_cocotb_on_verilator_and_icarus(seed):
    """The fast model runs the Programs one after another in one process (reset between them); each
    cocotb run is a fresh simulator. Everything must agree, and agree with the golden model."""
    programs = _programs(seed, 6)
    fast = accelerator("verilator").backend
    errors = 0
    for index, program in enumerate(programs):
        want = execute(program)
        results = {name: accelerator(name).backend.run(program) for name in ("verilator", "cocotb-verilator", "icarus")}
        for name, result in results.items():
            assert (result.error, result.error_pc) == (want.error, want.error_pc), (index, name)
            assert np.array_equal(result.memory, want.memory), (index, name)
            assert _signature(result) == _signature(results["verilator"]), (index, name)
        errors += want.error != 0
    assert errors >= 1, "no Program ended in an error"
    assert fast._harness is not None and fast._harness.proc.poll() is None      # one process ran them all


def test_cycle_limit_names_the_running_instruction():
    backend = Accelerator("verilator", SMALL).backend
    builder = ProgramBuilder(SMALL)
    builder.emit("NOP")
    builder.emit("RNG", n=4096, out_addr=builder.alloc(1024), key0=1, key1=2, ctr0=0, ctr1=0, ctr2=0, ctr3=0)
    program = builder.build()
    backend.max_cycles = 50
    with pytest.raises(CycleLimit, match="no halt within 50 cycles: instruction 1 of the Program"):
        backend.run(program)
    backend.max_cycles = 1 << 32
    assert np.array_equal(backend.run(program).memory, execute(program).memory)     # the same process goes on
    backend.close()


def test_killed_model_raises_and_the_next_run_starts_a_fresh_one():
    backend = Accelerator("verilator", SMALL).backend
    program = _programs(1, 1)[0]
    backend.run(program)
    os.kill(backend._harness.proc.pid, signal.SIGKILL)
    with pytest.raises(SimulatorCrashed, match="killed by SIGKILL"):
        backend.run(program)
    assert np.array_equal(backend.run(program).memory, execute(program).memory)
    backend.close()


def test_two_configs_in_one_process_do_not_disturb_each_other(seed):
    other = Config(rows=2, cols=2, mem_width=8, mem_depth=1024, mem_latency=1, cache_sets=2, cache_ways=2,
                   cache_row_bytes=16, prefetch_depth=2, rng_lanes=1)
    rng = np.random.default_rng(seed)
    small, tiny = accelerator("verilator"), Accelerator("verilator", other)
    for _ in range(2):
        for acc in (small, tiny, small):
            a = rng.integers(-128, 128, (5, 7), dtype=np.int8)
            b = rng.integers(-128, 128, (7, 3), dtype=np.int8)
            assert np.array_equal(acc.matmul(a, b), a.astype(np.int32) @ b.astype(np.int32))
    tiny.backend.close()


@pytest.mark.parametrize("backend", ["verilator", "icarus", "amaranth"])
def test_waves_on_demand(backend, tmp_path):
    suffix = ".vcd" if backend == "amaranth" else ".fst"
    acc = Accelerator(backend, SMALL, waves=tmp_path / f"run{suffix}")
    a = np.arange(12, dtype=np.int8).reshape(3, 4)
    acc.matmul(a, a.T)
    acc.matmul(a, a.T)
    first, second = tmp_path / f"run{suffix}", tmp_path / f"run-1{suffix}"
    assert first.stat().st_size > 1000 and second.stat().st_size > 1000
    if suffix == ".vcd":
        assert "cmd__valid" in first.read_text(errors="replace")
    acc.backend.close()


def test_backends_without_waves_say_so():
    with pytest.raises(ValueError, match="does not write waveforms"):
        Accelerator("golden", SMALL, waves="x.vcd")
    with pytest.raises(ValueError, match=r"writes \.fst files"):
        Accelerator("verilator", SMALL, waves="x.vcd")


def test_memory_of_2_pow_24_words_on_the_fast_path(seed):
    """A Config with 2^24 memory words: operands placed at the top of the memory, results read back; no
    text image of the memory is written or parsed (the harness maps a sparse file)."""
    import dataclasses
    big = dataclasses.replace(SMALL, mem_depth=1 << 24)
    rng = np.random.default_rng(seed)
    builder = ProgramBuilder(big)
    builder.alloc(big.mem_depth - 4096)                            # push the operands to the top words
    builder.emit("RNG", n=64, out_addr=builder.alloc(16, "rng"), key0=1, key1=2, ctr0=0, ctr1=0, ctr2=0, ctr3=0)
    builder.memory[5] = rng.integers(0, 256, big.mem_width)        # a word the Program does not touch
    program = builder.build()
    acc = Accelerator("verilator", big)
    result = acc.backend.run(program)
    want = execute(program)
    assert result.error == 0 and np.array_equal(result.memory, want.memory)
    acc.backend.close()
