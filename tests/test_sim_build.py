"""The simulator build cache: its key covers exactly the sources the gateware is generated from; a run's
folder under it is removed however the run ends."""
import numpy as np
import pytest

from conftest import SMALL, accelerator
from tridsa.sim import cocotb_sim
from tridsa.sim.build_cache import gateware_sources, source_digest
from tridsa.sim.cocotb_run import CocotbFailure
from tridsa.sw.builder import ProgramBuilder


def test_gateware_sources_are_hw_and_spec():
    names = {f"{p.parent.name}/{p.name}" for p in gateware_sources()}
    # gateware imports only the spec layer (tests/test_imports.py): a change there must rebuild
    assert {"hw/top.py", "hw/gemm.py", "sim/sim_mem.v", "spec/isa.py", "spec/config.py", "spec/requant.py",
            "spec/gemm_layout.py", "spec/sketch_layout.py", "spec/philox.py"} <= names
    # driver-side modules do not change the Verilog: editing them must not force a rebuild
    assert not names & {"sw/driver.py", "sw/demo.py", "sw/cli.py", "sw/fuzz.py"}


def test_source_digest_is_stable():
    assert source_digest() == source_digest()


def _spy_on_run_dirs(monkeypatch, then):
    """Record the run folder of every cocotb run (and whether it existed during the run), then ``then()``."""
    seen = []

    def run_test(runner, build_dir, toplevel, module, test_dir, **kwargs):
        seen.append((test_dir, test_dir.is_dir()))
        return then(runner, build_dir, toplevel, module, test_dir=test_dir, **kwargs)
    monkeypatch.setattr(cocotb_sim, "run_test", run_test)
    return seen


def _halting_program():
    builder = ProgramBuilder(SMALL)
    builder.emit("RNG", n=64, out_addr=builder.alloc(16), key0=1, key1=2, ctr0=0, ctr1=0, ctr2=0, ctr3=0)
    return builder.build()


def test_interrupted_run_removes_its_folder(monkeypatch, tmp_path):
    """Ctrl-C during a simulation: the run folder (memory images, logs) goes, nothing else is touched."""
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    seen = _spy_on_run_dirs(monkeypatch, interrupt)
    backend = cocotb_sim.CocotbBackend(SMALL, "verilator")
    backend._built = (None, tmp_path, {"names": [], "bits": 32})           # no simulator build needed
    with pytest.raises(KeyboardInterrupt):
        backend.run(_halting_program())
    [(run_dir, existed)] = seen
    assert existed and run_dir.parent == tmp_path / "runs" and not run_dir.exists()
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["cocotb-verilator", "icarus"])
def test_failed_and_passing_runs_remove_their_folders(simulator, monkeypatch):
    """A run that fails in cocotb (no halt within max_cycles) and a good one both leave no run folder."""
    seen = _spy_on_run_dirs(monkeypatch, cocotb_sim.run_test)
    backend = accelerator(simulator).backend
    program = _halting_program()
    limit = backend.max_cycles
    monkeypatch.setattr(backend, "max_cycles", 5)
    with pytest.raises(CocotbFailure, match="no halt within 5 cycles"):
        backend.run(program)
    monkeypatch.setattr(backend, "max_cycles", limit)
    result = backend.run(program)
    assert result.error == 0 and np.array_equal(result.memory, accelerator("golden").backend.run(program).memory)
    assert len(seen) == 2 and all(existed and not run_dir.exists() for run_dir, existed in seen)
