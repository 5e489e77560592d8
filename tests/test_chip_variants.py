# amaranth: UnusedElaboratable=no
"""Chips with fewer engines (``Config.engines``), a time-multiplexed requant (``Config.requant_lanes``),
a compact requant pipeline (``Config.requant_stages``) and no command queue (``queue_depth=0``): the
configurations of the FPGA builds. Same Programs, same results as the full chip, bit for bit."""
import numpy as np
import pytest

from conftest import SMALL, accelerator, backend_params
from tridsa import Config, Requant
from tridsa.spec import isa
from tridsa.sw.builder import ProgramBuilder
from tridsa.sw.golden import execute
from tridsa.sw.program import Program

GEMM_ONLY = SMALL.replace(engines=("gemm",), requant_lanes=1, hard_multipliers=5,   # 5 DSP PEs, 11 LUT PEs
                          requant_stages=5, queue_depth=0)                          # no command queue


def test_config_engines_and_requant_lanes():
    assert SMALL.engines == tuple(isa.ENGINE_OPS) and SMALL.lanes_requant == SMALL.cols
    cfg = Config(engines=["sketch", "gemm"])
    assert cfg.engines == ("gemm", "sketch")                      # canonical order, a tuple
    assert Config.from_json(cfg.to_json()) == cfg and cfg.digest != Config().digest
    assert GEMM_ONLY.has_op("GEMM") and GEMM_ONLY.has_op("HALT") and not GEMM_ONLY.has_op("GATHER")
    for bad in ((), ("gemm", "gemm"), ("fft",), "gemm"):
        with pytest.raises(ValueError, match="Config.engines"):
            Config(engines=bad)
    for bad in (3, 16, 0):
        with pytest.raises(ValueError, match="Config.requant_lanes"):
            Config(cols=8, requant_lanes=bad)
    for bad in (-1, 65, 2.0):
        with pytest.raises(ValueError, match="Config.hard_multipliers"):
            Config(rows=8, cols=8, hard_multipliers=bad)
    for bad in (7, -1, 12.0, None):
        with pytest.raises(ValueError, match="Config.requant_stages"):
            Config(requant_stages=bad)
    for bad in (3, -1, 2.0):
        with pytest.raises(ValueError, match="Config.queue_depth"):
            Config(queue_depth=bad)


def test_driver_refuses_ops_of_missing_engines():
    with pytest.raises(ValueError, match="GATHER needs the gather engine"):
        ProgramBuilder(GEMM_ONLY).emit("GATHER")
    acc = accelerator("golden", GEMM_ONLY)
    with pytest.raises(ValueError, match="sketch engine"):
        acc.random_uint32((1, 2), (0, 0, 0, 0), 8)


def test_counter_names_follow_engines():
    from tridsa.hw.top import counter_names
    names = counter_names(GEMM_ONLY)
    assert names[:4] == ("cycles", "retired", "mem_reads", "mem_writes")
    assert all(n.startswith("gemm_") for n in names[4:]) and len(counter_names(SMALL)) > len(names)


@pytest.mark.parametrize("backend", backend_params())
def test_missing_engine_op_is_illegal_opcode(backend):
    """A raw GATHER word on a chip without the gather engine: ILLEGAL_OPCODE at its index, nothing written."""
    memory = np.zeros((GEMM_ONLY.mem_depth, GEMM_ONLY.mem_width), dtype=np.uint8)
    words = [isa.encode("NOP"), isa.encode("GATHER", **{f.name: 1 for f in isa.OPCODES["GATHER"].fields}), isa.encode("HALT")]
    program = Program(GEMM_ONLY, words, memory, {})
    want = execute(program)
    assert (want.error, want.error_pc) == (isa.ERRORS["ILLEGAL_OPCODE"], 1)
    got = accelerator(backend, GEMM_ONLY).backend.run(program)
    assert (got.error, got.error_pc) == (want.error, want.error_pc)
    assert np.array_equal(got.memory, memory)


@pytest.mark.parametrize("backend", backend_params(("amaranth", "verilator", "icarus")))
@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_gemm_only_chip_with_one_requant_lane(backend, precision, seed):
    """Per-channel requant through one multiplexed lane of the compact pipeline: bit-exact with golden, all
    output formats."""
    _check_requant_matmul(GEMM_ONLY, backend, precision, "half_even", seed)


# the serial requant unit, two lanes, 32-bit counters (as the icebreaker chip)
SERIAL = GEMM_ONLY.replace(requant_stages=0, requant_lanes=2, counter_bits=32)


@pytest.mark.parametrize("backend", backend_params(("amaranth", "verilator", "icarus")))
@pytest.mark.parametrize("precision, rounding", [("int8", "tflite"), ("int4", "half_up")])
def test_gemm_only_chip_with_serial_requant(backend, precision, rounding, seed):
    """The serial requant unit (Config.requant_stages=0) in the whole chip: bit-exact with golden, and the
    32-bit counters read back as the cycle model predicts (exact for this unit)."""
    accs = _check_requant_matmul(SERIAL, backend, precision, rounding, seed)
    assert accs["got"].last_run.cycles == accs["want"].last_run.cycles, f"seed {seed}"


def _check_requant_matmul(config, backend, precision, rounding, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (-8, 8) if precision == "int4" else (-128, 128)
    m, k, n = 9, 21, 7
    a = rng.integers(lo, hi, (m, k), dtype=np.int8)
    b = rng.integers(lo, hi, (k, n), dtype=np.int8)
    bias = rng.integers(-2000, 2000, n, dtype=np.int32)
    rq = Requant(rng.integers(1 << 29, 1 << 31, n), rng.integers(4, 40, n), zero_point=3, rounding=rounding)
    for out_dtype in ("int8", "int32"):
        requant = rq if out_dtype == "int8" else None
        golden, hardware = accelerator("golden", config), accelerator(backend, config)
        want = golden.matmul(a, b, bias, requant, relu=True, precision=precision, out_dtype=out_dtype)
        got = hardware.matmul(a, b, bias, requant, relu=True, precision=precision, out_dtype=out_dtype)
        np.testing.assert_array_equal(got, want, err_msg=f"seed {seed}")
    return {"want": golden, "got": hardware}
