"""GEMM: golden model vs independent formulas, and every backend vs golden, bit for bit."""
import dataclasses

import numpy as np
import pytest

from conftest import SMALL, accelerator, backend_params
from tridsa import Accelerator, Config, Requant
from tridsa.spec import isa
from tridsa.sw.builder import ProgramBuilder
from tridsa.sw.cycle_model import estimate_gemm_cycles
from tridsa.sw.gemm_ops import emit_gemm, emit_gemm_batch
from tridsa.sw.golden import execute
from tridsa.sw.program import Program
from requant_spec import ref_requant

RANGES = {("int8", True): (-128, 128), ("int8", False): (0, 256), ("int4", True): (-8, 8), ("int4", False): (0, 16)}


def operand(rng, shape, precision, signed):
    lo, hi = RANGES[precision, signed]
    return rng.integers(lo, hi, shape).astype(np.int8 if signed else np.uint8)


def reference(a, b, bias=None, requant=None, relu=False, out_dtype=None):
    """Independent formula: exact integer matmul, int32 wrap, then the requantization spec of
    tests/requant_spec.py element by element (Python integers)."""
    acc = a.astype(np.int64) @ b.astype(np.int64)
    acc = ((acc + (1 << 31)) % (1 << 32)) - (1 << 31)
    n = acc.shape[-1]
    bias = np.broadcast_to(np.zeros(n, np.int64) if bias is None else np.asarray(bias, np.int64), (n,))
    fmt = out_dtype or ("int32" if requant is None else "int8")
    if requant is None:
        m, s, rounding, zp = np.zeros(n, np.int64), np.zeros(n, np.int64), "half_even", 0
    else:
        m, s = (np.broadcast_to(np.asarray(v, np.int64), (n,)) for v in (requant.multiplier, requant.shift))
        rounding, zp = requant.rounding, requant.zero_point
    out = np.array([[ref_requant(int(x), int(bias[j]), int(m[j]), int(s[j]), rounding, zp, fmt, relu,
                                 enable=requant is not None) for j, x in enumerate(row)] for row in acc], np.int64)
    return out.astype({"int8": np.int8, "int4": np.int8, "uint8": np.uint8, "int32": np.int32}[fmt])


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
    assert acc.last_run.macs == 3 * 4 * 5 and acc.last_run.programs == 1
    assert acc.last_run.cycles == estimate_gemm_cycles(SMALL, 3, 4, 5, out_format=0)      # the cycle model's
    assert acc.last_run.as_dict()["macs"] == 60


# ---- batched GEMM: one instruction, `batch` same-shape problems back to back ---------------------

def _random_batch(rng, batch, m, k, n, precision, out_dtype):
    """Operands, per-problem bias and per-problem per-channel requants of a batched matmul."""
    a = operand(rng, (batch, m, k), precision, bool(rng.integers(2)))
    b = operand(rng, (batch, k, n), precision, True)
    bias = rng.integers(-3000, 3000, (batch, n))
    zp, rounding = int(rng.integers(-4, 4)), str(rng.choice(["tflite", "half_up", "half_even"]))
    requant = None if out_dtype == "int32" else [Requant.from_scale(rng.uniform(0.0005, 0.02, n), zp, rounding)
                                                 for _ in range(batch)]
    return a, b, bias, requant


@pytest.mark.parametrize("precision", ["int8", "int4"])
@pytest.mark.parametrize("batch, m, k, n, out_dtype", [(2, 5, 7, 6, "int32"), (3, 9, 33, 17, "int8"),
                                                       (5, 1, 1, 1, "int4"), (4, 4, 8, 3, "uint8")])
def test_golden_batch_matches_numpy(batch, m, k, n, out_dtype, precision, seed):
    """Every problem of a batched GEMM equals the independent formula with its own bias and requant."""
    rng = np.random.default_rng(seed)
    a, b, bias, requant = _random_batch(rng, batch, m, k, n, precision, out_dtype)
    if out_dtype == "uint8":
        requant = [dataclasses.replace(rq, zero_point=abs(rq.zero_point)) for rq in requant]
    builder = ProgramBuilder(SMALL)
    call = emit_gemm_batch(builder, a, b, bias, requant, True, precision, out_dtype)
    program = builder.build()
    assert len(program.instructions) == 2 and isa.decode(program.instructions[0])[1]["batch"] == batch
    y = call.result(program, execute(program).memory)
    assert y.shape == (batch, m, n) and call.macs == batch * m * k * n
    for g in range(batch):
        np.testing.assert_array_equal(y[g], reference(a[g], b[g], bias[g], requant and requant[g], True, out_dtype))


def test_golden_batch_shared_bias_and_requant(seed):
    """A (N,) bias and one Requant apply to every problem; batch 1 equals emit_gemm."""
    rng = np.random.default_rng(seed)
    a, b = operand(rng, (3, 6, 10), "int8", True), operand(rng, (3, 10, 5), "int8", True)
    bias, rq = rng.integers(-100, 100, 5), Requant.from_scale(0.01, 3, "half_even")
    builder = ProgramBuilder(SMALL)
    batched = emit_gemm_batch(builder, a, b, bias, rq, name="batched")
    single = emit_gemm(builder, a[1], b[1], bias, rq, name="single")
    program = builder.build()
    memory = execute(program).memory
    y = batched.result(program, memory)
    for g in range(3):
        np.testing.assert_array_equal(y[g], reference(a[g], b[g], bias, rq))
    np.testing.assert_array_equal(single.result(program, memory), y[1])


def test_matmul_batch_api(seed):
    """Accelerator.matmul_batch: one instruction, (batch, M, N) result, MACs of every problem."""
    rng = np.random.default_rng(seed)
    a, b = operand(rng, (4, 3, 7), "int4", False), operand(rng, (4, 7, 6), "int4", True)
    acc = accelerator("golden")
    y = acc.matmul_batch(a, b, precision="int4")
    np.testing.assert_array_equal(y, a.astype(np.int64) @ b.astype(np.int64))
    assert y.dtype == np.int32 and acc.last_run.instructions == 1 and acc.last_run.macs == 4 * 3 * 7 * 6


def test_fuzz_generator_covers_batch(seed):
    """The fuzzer's GEMM generator emits legal batched GEMMs (batch 0, 1 and > 1) that run to completion."""
    from tridsa.sw import fuzz
    legal = set()
    for i in range(40):
        program = fuzz.random_program(SMALL, fuzz.program_rng(seed, i), p_risky=0.0)
        result = execute(program)
        for pc, word in enumerate(program.instructions):
            op, fields = isa.decode(word)
            if (result.error and pc == result.error_pc) or (op is not None and op.name == "HALT"):
                break
            if op is not None and op.name == "GEMM":
                legal.add(min(fields["batch"], 2))
    assert legal == {0, 1, 2}


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"b": np.zeros((3, 4, 2), np.int8)}, ValueError, "a.shape[0] must equal b.shape[0]"),
    ({"bias": np.zeros((3, 2), np.int32)}, ValueError, "bias must have shape (2,) or (2, 2)"),
    ({"requant": [Requant(1, 1)]}, TypeError, "sequence of batch=2"),
    ({"requant": [Requant(1, 1), Requant(1, 1, zero_point=2)]}, ValueError, "share zero_point and rounding"),
])
def test_batch_bad_input(kwargs, exc, words):
    args = dict(a=np.zeros((2, 3, 4), np.int8), b=np.zeros((2, 4, 2), np.int8))
    args.update(kwargs)
    with pytest.raises(exc) as info:
        emit_gemm_batch(ProgramBuilder(SMALL), **args)
    assert words in str(info.value)


def _batch_program(rng, config):
    """Batched GEMMs (int8/int4, requant per problem, odd shapes), a single one, and batch=0 (= one)."""
    builder = ProgramBuilder(config)
    calls = [(3, 5, 9, 6, "int8", "int8"), (2, 9, 13, 5, "int4", "int4"), (4, 1, 3, 2, "int8", "int32")]
    for i, (batch, m, k, n, precision, out_dtype) in enumerate(calls):
        emit_gemm_batch(builder, *_random_batch(rng, batch, m, k, n, precision, out_dtype), bool(i % 2), precision,
                        out_dtype, name=f"c{i}")
    emit_gemm(builder, operand(rng, (6, 7), "int8", True), operand(rng, (7, 5), "int8", False), name="single")
    _, fields = isa.decode(builder.instructions[-1])
    fields.update(batch=0, c_addr=builder.alloc(builder.outputs["single"].words, "zero"))
    builder.emit("GEMM", **fields)
    return builder.build()


@pytest.mark.parametrize("backend", backend_params(("amaranth", "verilator", "icarus")))
def test_backend_batch_matches_golden(backend, seed):
    """Batched GEMMs on the gateware: the whole memory image equals the golden model's."""
    program = _batch_program(np.random.default_rng(seed), SMALL)
    expected = execute(program)
    result = accelerator(backend).backend.run(program)
    assert (result.error, result.error_pc) == (0, 0)
    np.testing.assert_array_equal(result.memory, expected.memory)


def test_batch_zero_means_one(seed):
    """batch=0 and batch=1 run the same single problem."""
    rng = np.random.default_rng(seed)
    memory = rng.integers(0, 256, (SMALL.mem_depth, SMALL.mem_width)).astype(np.uint8)
    images = [execute(Program(SMALL, [isa.encode("GEMM", **_gemm_fields(batch=batch)), isa.encode("HALT")],
                              memory)).memory for batch in (0, 1)]
    np.testing.assert_array_equal(images[0], images[1])
    assert not np.array_equal(images[0], memory)


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
    # a high address bit alone (the low addr_bits + 1 bits look in range); sizes beyond any memory
    ([isa.encode("GEMM", **_gemm_fields(b_addr=1 << 24))], "ADDR_RANGE"),
    ([isa.encode("GEMM", **_gemm_fields(m=(1 << 16) - 1, c_addr=40, p_addr=50))], "ADDR_RANGE"),
    ([isa.encode("GEMM", **_gemm_fields(k=(1 << 16) - 1, int4=1))], "ADDR_RANGE"),
    ([isa.encode("GEMM", **_gemm_fields(c_addr=4))], "OVERLAP"),
    ([isa.encode("GEMM", **_gemm_fields(p_addr=10))], "OVERLAP"),
    # batched: problem 1 fits alone, the batch's C (3 x 4 words) does not; A of the batch past the end
    ([isa.encode("GEMM", **_gemm_fields(batch=3, c_addr=SMALL.mem_depth - 8))], "ADDR_RANGE"),
    ([isa.encode("GEMM", **_gemm_fields(batch=300, a_addr=SMALL.mem_depth - 299, c_addr=20, p_addr=40))], "ADDR_RANGE"),
    ([isa.encode("GEMM", **_gemm_fields(batch=(1 << 16) - 1))], "ADDR_RANGE"),
    # problem 0's C [1, 5) meets problem 1's A (word 1), not its own A (word 0)
    ([isa.encode("GEMM", **_gemm_fields(batch=2, c_addr=1, b_addr=20, p_addr=30))], "OVERLAP"),
    # problem 1's P meets the batch's C
    ([isa.encode("GEMM", **_gemm_fields(batch=2, p_addr=5, c_addr=8, b_addr=20))], "OVERLAP"),
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
    assert doc.read_text() == isa.markdown_table(), "docs/isa.md is stale: run python -m tridsa.spec.isa > docs/isa.md"


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
