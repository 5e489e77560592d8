"""The simulator build cache: its key covers exactly the sources the gateware is generated from."""
from tridsa.sim.cocotb_run import _source_digest, gateware_sources


def test_gateware_sources_follow_imports_into_sw():
    names = {f"{p.parent.name}/{p.name}" for p in gateware_sources()}
    # hw modules import these sw modules (directly or through other sw modules): a change must rebuild
    assert {"hw/top.py", "hw/gemm.py", "sim/sim_mem.v", "sw/isa.py", "sw/config.py", "sw/requant.py",
            "sw/gemm_layout.py", "sw/sketch_ops.py", "sw/philox.py"} <= names
    # driver-side modules do not change the Verilog: editing them must not force a rebuild
    assert not names & {"sw/driver.py", "sw/demo.py", "sw/cli.py", "sw/fuzz.py"}


def test_source_digest_is_stable():
    assert _source_digest() == _source_digest()
