"""Any-size GEMMs: calls larger than the accelerator memory split into tiles and K chunks (accumulate mode)
give the same bits as the unsplit call, on golden and on a gateware backend."""
import numpy as np
import pytest

from conftest import SMALL, backend_params
from test_conv import direct_conv
from test_gemm import operand, reference
from tridsa import Accelerator, Requant
from tridsa.sw.builder import ProgramBuilder
from tridsa.sw.gemm_ops import emit_problems, gemm_problems
from tridsa.sw.host_memory import HostMemoryError
from tridsa.spec.requant import OUT_FORMATS
from tridsa.sw.tiling import plan_gemm

TINY = SMALL.replace(mem_depth=64)          # 1 KiB: a 16 x 40 x 12 matmul no longer fits


def _requant(rng, n, out_dtype):
    if out_dtype == "int32":
        return None
    zp = {"int8": -3, "uint8": 100, "int4": 1}[out_dtype]
    scale = rng.uniform(0.0005, 0.01, n) if rng.random() < 0.5 else 0.004
    return Requant.from_scale(scale, zp, str(rng.choice(["tflite", "half_up", "half_even"])))


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_split_matmul_equals_unsplit(precision, seed):
    """Random shapes that need M/N tiles and K chunks on TINY: same result as on SMALL (unsplit) and as the
    reference formula; ``last_run`` shows the Programs and the bytes moved."""
    rng = np.random.default_rng(seed)
    tiny, small = Accelerator("golden", TINY), Accelerator("golden", SMALL)
    chunked = 0
    for _ in range(6):
        m, k, n = (int(v) for v in rng.integers(1, 60, 3))
        k = int(rng.integers(60, 400)) if rng.random() < 0.5 else k
        out_dtype = str(rng.choice(["int8", "uint8", "int4", "int32"]))
        a, b = operand(rng, (m, k), precision, bool(rng.integers(2))), operand(rng, (k, n), precision, True)
        bias, rq, relu = rng.integers(-3000, 3000, n), _requant(rng, n, out_dtype), bool(rng.integers(2))
        y = tiny.matmul(a, b, bias, rq, relu, precision, out_dtype)
        np.testing.assert_array_equal(y, small.matmul(a, b, bias, rq, relu, precision, out_dtype))
        np.testing.assert_array_equal(y, reference(a, b, bias, rq, relu, out_dtype))
        plan = plan_gemm(TINY, 1, m, k, n, precision == "int4", OUT_FORMATS[out_dtype])
        assert tiny.last_run.programs == -(-m // plan.rows) * -(-n // plan.cols) * plan.chunks(k)
        assert tiny.last_run.instructions == tiny.last_run.programs
        assert tiny.last_run.host_bytes >= a.size * (4 if precision == "int4" else 8) // 8
        chunked += plan.chunks(k) > 1
    # K = 300 never fits one row block and one column block of TINY: the K split is exercised every run
    a, b = operand(rng, (9, 300), precision, True), operand(rng, (300, 7), precision, True)
    assert plan_gemm(TINY, 1, 9, 300, 7, precision == "int4", 1).chunks(300) > 1
    rq = Requant.from_scale(0.001, 2, "half_even")
    np.testing.assert_array_equal(tiny.matmul(a, b, None, rq, True, precision), reference(a, b, None, rq, True, "int8"))


def test_split_batch_and_conv(seed):
    """matmul_batch and conv2d larger than TINY's memory: same bits as unsplit."""
    rng = np.random.default_rng(seed)
    tiny, small = Accelerator("golden", TINY), Accelerator("golden", SMALL)
    a, b = operand(rng, (5, 12, 30), "int8", True), operand(rng, (5, 30, 9), "int8", True)
    rq = [Requant.from_scale(rng.uniform(0.001, 0.01, 9), 0, "tflite") for _ in range(5)]
    bias = rng.integers(-99, 99, (5, 9))
    y = tiny.matmul_batch(a, b, bias, rq, True)
    assert tiny.last_run.programs > 1
    np.testing.assert_array_equal(y, small.matmul_batch(a, b, bias, rq, True))
    np.testing.assert_array_equal(y, np.stack([reference(a[g], b[g], bias[g], rq[g], True) for g in range(5)]))
    x = rng.integers(-128, 128, (1, 16, 9, 9)).astype(np.int8)
    w = rng.integers(-128, 128, (12, 16, 3, 3)).astype(np.int8)
    np.testing.assert_array_equal(tiny.conv2d(x, w, padding=1), direct_conv(x, w, padding=(1, 1)))
    assert tiny.last_run.programs > 1


def test_host_memory_error():
    """A result larger than the host's memory is one clear error before anything runs."""
    a = np.ones((200_000, 1), np.int8)
    with pytest.raises(HostMemoryError, match="GiB of host memory"):
        Accelerator("golden").matmul(a, a.T)


@pytest.mark.parametrize("backend", backend_params(("amaranth",)))
def test_accumulate_mode_on_gateware(backend, seed):
    """K chunks in accumulate mode on the gateware: the partial sums at c_addr replace the bias and the result
    overwrites them in place (int32, int8 and int4 outputs); memory image and result equal golden's."""
    rng = np.random.default_rng(seed)
    gate, golden = Accelerator(backend, SMALL), Accelerator("golden", SMALL)
    for out_dtype, precision in (("int8", "int8"), ("int32", "int8"), ("int4", "int4")):
        a, b = operand(rng, (2, 10, 13), precision, True), operand(rng, (2, 13, 7), precision, False)
        bias, rq = rng.integers(-1000, 1000, 7), _requant(rng, 7, out_dtype)
        problems = gemm_problems(SMALL, a, b, bias, rq, True, precision, out_dtype)
        partial = None
        for stage, depth in (("first", slice(0, 4)), ("middle", slice(4, 9)), ("last", slice(9, None))):
            builder = ProgramBuilder(SMALL)
            call = emit_problems(builder, problems.part(depth=depth), "c", stage, partial)
            program = builder.build()
            result = gate.run(program)
            np.testing.assert_array_equal(result.memory, golden.run(program).memory)
            partial = call.result(program, result.memory)
        np.testing.assert_array_equal(partial, np.stack([reference(a[g], b[g], bias, rq, True, out_dtype)
                                                         for g in range(2)]))


@pytest.mark.parametrize("backend", backend_params(("golden", "amaranth")))
def test_accumulate_needs_the_mode(backend):
    """On a chip built without the accumulate mode (Config.accumulate=False) an accumulate GEMM is BAD_MODE
    and writes nothing; the tiling driver then never splits K (it still tiles M and N)."""
    from tridsa.sw.builder import ProblemTooLarge
    from tridsa.spec import isa
    config = SMALL.replace(accumulate=False)
    problems = gemm_problems(config, np.ones((1, 4, 8), np.int8), np.ones((1, 8, 4), np.int8))
    builder = ProgramBuilder(config)
    emit_problems(builder, problems, "c", "last", np.zeros((1, 4, 4), np.int64))
    program = builder.build()
    result = Accelerator(backend, config).backend.run(program)
    assert result.error == isa.ERRORS["BAD_MODE"] and result.error_pc == 0
    np.testing.assert_array_equal(result.memory, program.memory)
    assert plan_gemm(config.replace(mem_depth=256), 1, 90, 300, 70).chunks(300) == 1
    with pytest.raises(ProblemTooLarge, match="no accumulate mode"):
        plan_gemm(config.replace(mem_depth=64), 1, 9, 300, 7)


def test_split_sketch_and_embeddings(seed):
    """sketch and embedding_bag larger than TINY's memory: same bits as unsplit and as the formulas."""
    from tridsa.sw.embedding import embedding_bag
    from tridsa.sw.sketch_dist import omega
    rng = np.random.default_rng(seed)
    tiny, small = Accelerator("golden", TINY), Accelerator("golden", SMALL)
    a = rng.integers(-128, 128, (21, 150)).astype(np.int8)
    counter = (0xFFFFFFF0, 0xFFFFFFFF, 7, 0)                 # the K chunks' counters carry across words
    for dist, params in (("rademacher", {}), ("uniform", dict(lo=-3, hi=5))):
        y = tiny.sketch(a, 6, (5, 9), counter, dist, **params)
        assert tiny.last_run.programs > 1
        np.testing.assert_array_equal(y, small.sketch(a, 6, (5, 9), counter, dist, **params))
        np.testing.assert_array_equal(y, a.astype(np.int64) @ omega((5, 9), counter, 150, 6, dist, **params))
    np.testing.assert_array_equal(tiny.sketch(a.T, 5, (1, 2), transpose=True), small.sketch(a.T, 5, (1, 2), transpose=True))
    table = rng.integers(-128, 128, (3000, 20)).astype(np.int8)    # 3000 rows x 2 words: larger than TINY
    idx = rng.integers(0, 3000, 90)
    off = np.sort(rng.integers(0, 91, 12))
    off[0] = 0
    got = tiny.embedding_bag(table, idx, off, "sum", padding_idx=int(idx[3]))
    assert tiny.last_run.programs > 1
    np.testing.assert_array_equal(got, embedding_bag(table, idx, off, "sum", padding_idx=int(idx[3])))
    weights = rng.integers(-9, 9, 90)
    np.testing.assert_array_equal(tiny.embedding_bag(table, idx, off, "sum", weights),
                                  embedding_bag(table, idx, off, "sum", weights))
    np.testing.assert_array_equal(tiny.embedding_bag(table, idx, off, "max"), embedding_bag(table, idx, off, "max"))
    tables = [rng.integers(-128, 128, (rows, 16)).astype(np.int8) for rows in (5000, 7, 300)]
    indices = [rng.integers(0, len(t), 8 * 3) for t in tables]
    offsets = [np.arange(8) * 3] * 3
    out = tiny.embedding_bags(tables, indices, offsets)
    for t in range(3):
        np.testing.assert_array_equal(out[:, t], embedding_bag(tables[t], indices[t], offsets[t]))
