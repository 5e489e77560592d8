"""GEMM: golden model vs independent formulas, and every backend vs golden, bit for bit."""
import numpy as np
import pytest

from conftest import SMALL, accelerator, backend_params
from tridsa import Accelerator, Config, Requant
from tridsa.sw import isa
from tridsa.sw.builder import ProgramBuilder
from tridsa.sw.gemm_ops import emit_gemm
from tridsa.sw.golden import execute
from tridsa.sw.program import Program
from tridsa.sw.requant import requantize

RANGES = {("int8", True): (-128, 128), ("int8", False): (0, 256), ("int4", True): (-8, 8), ("int4", False): (0, 16)}


def operand(rng, shape, precision, signed):
    lo, hi = RANGES[precision, signed]
    return rng.integers(lo, hi, shape).astype(np.int8 if signed else np.uint8)


def reference(a, b, bias=None, requant=None, relu=False, out_dtype=None):
    """Independent formula: exact integer matmul, int32 wrap, then the requant golden function."""
    acc = a.astype(np.int64) @ b.astype(np.int64)
    acc = ((acc + (1 << 31)) % (1 << 32)) - (1 << 31)
    return requantize(acc, bias, requant, relu, out_dtype)


@pytest.mark.parametrize("precision", ["int8", "int4"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 6), (9, 33, 17), (16, 3, 4)])
def test_golden_int32_matches_numpy(shape, precision, seed):
    rng = np.random.default_rng(seed)
    m, k, n = shape
    for a_signed in (True, False):
        a = operand(rng, (m, k), precision, a_signed)
        b = operand(rng, (k, n), precision, True)
        y = accelerator("golden").matmul(a, b, precision=precision)
        assert y.dtype == np.int32
        np.testing.assert_array_equal(y, a.astype(np.int64) @ b.astype(np.int64))


@pytest.mark.parametrize("rounding", ["tflite", "half_up", "half_even"])
@pytest.mark.parametrize("out_dtype", ["int8", "uint8", "int4", "int32"])
def test_golden_requant_matches_reference(rounding, out_dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = operand(rng, (6, 19), "int8", True), operand(rng, (19, 10), "int8", True)
    bias = rng.integers(-5000, 5000, 10)
    zp = {"int8": -3, "uint8": 128, "int4": 1, "int32": 7}[out_dtype]
    for requant in (Requant.from_scale(0.0123, zp, rounding),
                    Requant.from_scale(rng.uniform(0.001, 0.05, 10), zp, rounding)):
        for relu in (False, True):
            y = accelerator("golden").matmul(a, b, bias, requant, relu, out_dtype=out_dtype)
            np.testing.assert_array_equal(y, reference(a, b, bias, requant, relu, out_dtype))


def _random_program(rng, config, calls):
    builder = ProgramBuilder(config)
    for i, (m, k, n, precision, out_dtype, per_channel) in enumerate(calls):
        a = operand(rng, (m, k), precision, bool(rng.integers(2)))
        b = operand(rng, (k, n), precision, bool(rng.integers(2)))
        scale = rng.uniform(0.0005, 0.02, n) if per_channel else 0.004
        requant = None if out_dtype == "int32" else Requant.from_scale(
            scale, int(rng.integers(-4, 4)), ["tflite", "half_up", "half_even"][i % 3])
        emit_gemm(builder, a, b, rng.integers(-3000, 3000, n), requant, bool(i % 2), precision, out_dtype, name=f"c{i}")
    return builder.build()


CALLS = [(5, 7, 6, "int8", "int32", False), (9, 13, 5, "int4", "int8", True), (4, 4, 4, "int8", "uint8", True),
         (11, 31, 9, "int8", "int4", False), (1, 9, 17, "int4", "int32", False), (8, 40, 8, "int8", "int8", True)]


@pytest.mark.parametrize("backend", backend_params(("amaranth", "verilator", "icarus")))
def test_backend_memory_image_matches_golden(backend, seed):
    """Several GEMMs (odd shapes, every output format, both precisions) in one Program: the whole final
    memory image, the status and the instruction count equal the golden model's."""
    program = _random_program(np.random.default_rng(seed), SMALL, CALLS)
    expected = execute(program)
    result = accelerator(backend).backend.run(program)
    assert (result.error, result.error_pc) == (0, 0)
    assert result.counters["retired"] == len(CALLS)
    np.testing.assert_array_equal(result.memory, expected.memory)
    assert result.counters["gemm_busy"] <= result.counters["cycles"]


@pytest.mark.parametrize("backend", backend_params())
def test_matmul_api_every_backend(backend, seed):
    rng = np.random.default_rng(seed)
    a, b = operand(rng, (7, 10), "int8", True), operand(rng, (10, 5), "int8", False)
    bias = rng.integers(-100, 100, 5)
    requant = Requant.from_scale(rng.uniform(0.001, 0.01, 5), zero_point=2, rounding="half_even")
    acc = accelerator(backend)
    y = acc.matmul(a, b, bias=bias, requant=requant, relu=True)
    assert y.dtype == np.int8
    np.testing.assert_array_equal(y, reference(a, b, bias, requant, True))
    if backend != "golden":
        assert acc.last_run.cycles > 0 and 0 < acc.last_run.utilization <= 1


def test_last_run_counters(seed):
    rng = np.random.default_rng(seed)
    acc = accelerator("golden")
    acc.matmul(operand(rng, (3, 4), "int8", True), operand(rng, (4, 5), "int8", True))
    assert acc.last_run.macs == 3 * 4 * 5 and acc.last_run.cycles is None
    assert acc.last_run.as_dict()["macs"] == 60


# ---- bad input: one clear exception ------------------------------------------------------------

@pytest.mark.parametrize("a, b, kwargs, exc, words", [
    (np.zeros((2, 3), np.float32), np.zeros((3, 2), np.int8), {}, TypeError, "a must be an integer array"),
    (np.zeros((2, 3), np.int8), np.zeros((4, 2), np.int8), {}, ValueError, "a.shape[1] must equal b.shape[0]"),
    (np.zeros((2, 3, 1), np.int8), np.zeros((3, 2), np.int8), {}, ValueError, "a must be 2-D"),
    (np.full((2, 3), 200, np.int16), np.zeros((3, 2), np.int8), {}, ValueError, "outside the signed int8 range"),
    (np.full((2, 3), 9, np.int8), np.zeros((3, 2), np.int8), {"precision": "int4"}, ValueError, "int4 range"),
    (np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), {"precision": "int2"}, ValueError, "precision='int2'"),
    (np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), {"out_dtype": "int8"}, ValueError, "needs a requant"),
    (np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), {"out_dtype": "float"}, ValueError, "out_dtype='float'"),
    (np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), {"bias": np.zeros(3, np.int32)}, ValueError, "bias must have shape"),
    (np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), {"requant": 0.5}, TypeError, "requant must be"),
    (np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8),
     {"requant": Requant(np.array([1, 2, 3]), 31)}, ValueError, "3 channels"),
])
def test_bad_input_raises_one_clear_error(a, b, kwargs, exc, words):
    with pytest.raises(exc) as info:
        accelerator("golden").matmul(a, b, **kwargs)
    assert words in str(info.value)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'fpgaa'"):
        Accelerator("fpgaa")


def test_missing_simulator(monkeypatch, tmp_path):
    from tridsa.sim.toolchain import SimulatorMissing
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SimulatorMissing, match="apt-get install -y iverilog"):
        Accelerator("icarus", SMALL)


def test_problem_too_large():
    from tridsa.sw.builder import ProblemTooLarge
    with pytest.raises(ProblemTooLarge, match="mem_depth"):
        accelerator("golden").matmul(np.zeros((300, 300), np.int8), np.zeros((300, 300), np.int8))


# ---- illegal instructions: error status, no hang, memory untouched --------------------------------

def _gemm_fields(**changes):
    fields = dict(m=4, k=4, n=4, a_addr=0, b_addr=4, c_addr=8, p_addr=16, int4=0, a_signed=1, b_signed=1,
                  requant=0, rounding=0, out_format=0, relu=0, zero_point=0)
    fields.update(changes)
    return fields


ILLEGAL = [
    ([(1 << 255) | 0x7F], "ILLEGAL_OPCODE"),
    ([isa.encode("GEMM", **_gemm_fields(rounding=3, requant=1, out_format=1))], "BAD_MODE"),
    ([isa.encode("GEMM", **_gemm_fields(out_format=1))], "BAD_MODE"),
    ([isa.encode("GEMM", **_gemm_fields(k=0))], "BAD_SHAPE"),
    ([isa.encode("GEMM", **_gemm_fields(c_addr=SMALL.mem_depth - 1))], "ADDR_RANGE"),
    ([isa.encode("NOP"), isa.encode("GEMM", **_gemm_fields(a_addr=(1 << 32) - 1))], "ADDR_RANGE"),
    ([isa.encode("GEMM", **_gemm_fields(c_addr=4))], "OVERLAP"),
    ([isa.encode("GEMM", **_gemm_fields(p_addr=10))], "OVERLAP"),
]


@pytest.mark.parametrize("backend", backend_params())
def test_illegal_instruction_sets_error_and_halts(backend):
    rng = np.random.default_rng(1)
    memory = rng.integers(0, 256, (SMALL.mem_depth, SMALL.mem_width)).astype(np.uint8)
    acc = accelerator(backend)
    for instructions, name in ILLEGAL:
        # a legal GEMM after the bad one must not run: the program stops at the first error
        program = Program(SMALL, instructions + [isa.encode("GEMM", **_gemm_fields()), isa.encode("HALT")], memory)
        result = acc.backend.run(program)
        assert result.error_name == name
        assert result.error_pc == len(instructions) - 1
        np.testing.assert_array_equal(result.memory, memory)


def test_isa_doc_is_generated_from_code():
    from pathlib import Path
    doc = Path(__file__).parent.parent / "docs" / "isa.md"
    assert doc.read_text() == isa.markdown_table(), "docs/isa.md is stale: run python -m tridsa.sw.isa > docs/isa.md"


def test_program_save_load_roundtrip(tmp_path, seed):
    program = _random_program(np.random.default_rng(seed), SMALL, CALLS[:2])
    program.save(tmp_path / "p.npz")
    loaded = Program.load(tmp_path / "p.npz")
    assert loaded.config == program.config and loaded.instructions == program.instructions
    assert loaded.outputs == program.outputs
    np.testing.assert_array_equal(loaded.memory, program.memory)
    np.testing.assert_array_equal(execute(loaded).memory, execute(program).memory)


def test_config_validation_and_serialization():
    cfg = Config(rows=4, cols=8, mem_width=32)
    assert Config.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="Config.rows=3"):
        Config(rows=3)
    with pytest.raises(ValueError, match="Config.mem_width=16"):
        Config(cols=8, mem_width=16)
    with pytest.raises(ValueError, match="unknown Config field"):
        Config.from_dict({"rowz": 4})


@pytest.mark.parametrize("latency", [1, 4, 9])
def test_memory_latency_does_not_change_results(latency, seed):
    """Same Program semantics at any memory latency (Amaranth simulation; a new Config per latency)."""
    config = Config(rows=2, cols=2, mem_width=8, mem_depth=512, mem_latency=latency)
    program = _random_program(np.random.default_rng(seed), config, CALLS[:3])
    result = Accelerator("amaranth", config).backend.run(program)
    np.testing.assert_array_equal(result.memory, execute(program).memory)
    assert result.error == 0
