"""The cycle model (sw/cycle_model.py, the golden backend's cycles) against the RTL cycle counter on sampled
layers of every engine, on the default Config(): within 2%; the error distribution is printed."""
import numpy as np
import pytest

from conftest import accelerator, backend_params
from tridsa import Config, Requant
from tridsa.sw.builder import ProgramBuilder
from tridsa.sw.dlrm_traffic import zipf_indices
from tridsa.sw.gather_ops import emit_gather
from tridsa.sw.gemm_ops import emit_gemm_batch, emit_problems, gemm_problems
from tridsa.sw.sketch_ops import emit_rng, emit_sketch

CONFIG = Config()


def _gemm(rng, m, k, n, precision="int8", batch=1, out="int8", requant=None):
    """``requant``: whether to requantize (default: unless the output is int32)."""
    lo, hi = (-8, 8) if precision == "int4" else (-128, 128)
    requant = out != "int32" if requant is None else requant
    return lambda b: emit_gemm_batch(b, rng.integers(lo, hi, (batch, m, k)), rng.integers(lo, hi, (batch, k, n)),
                                     requant=Requant(1 << 20, 24) if requant else None, precision=precision,
                                     out_dtype=out)


def _accumulate(rng, m, k, n, stage="last"):
    problems = gemm_problems(CONFIG, rng.integers(-128, 128, (1, m, k)), rng.integers(-128, 128, (1, k, n)),
                             None, Requant(1 << 20, 24))
    return lambda b: emit_problems(b, problems, "c", stage, rng.integers(-1 << 20, 1 << 20, (1, m, n)))


def _chain(emit, count):
    """``count`` instructions of ``emit`` one after another (with Config.overlap each hides the previous
    one's drain as far as their memory words allow)."""
    def emit_all(builder):
        for _ in range(count):
            emit(builder)
    return emit_all


def _gather(rng, rows, dim, bags, pooling, alpha=1.05):
    table = rng.integers(-128, 128, (rows, dim)).astype(np.int8)
    indices = zipf_indices(rows, bags * pooling, alpha, rng)
    return lambda b: emit_gather(b, table, indices, np.arange(bags) * pooling)


def samples(rng):
    """``(engine, name, emit)``: tiles of the zoo's layers (ResNet-50 3x3 and 7x7-stage convs, BERT attention,
    an LSTM step, a K chunk in accumulate mode, INT4), the demo Transformer's and LSTM's int32-output GEMMs
    with a short K (their memory port sets the pace; also three overlapped), DLRM-like embedding bags, RNG
    and sketches."""
    return [
        ("GEMM", "3x3 conv tile 64x576x64", _gemm(rng, 64, 576, 64)),
        ("GEMM", "7x7 stage 49x512x64", _gemm(rng, 49, 512, 64)),
        ("GEMM", "attention 6x(128x64x128) int32", _gemm(rng, 128, 64, 128, batch=6, out="int32")),
        ("GEMM", "LSTM step 8x1024x256", _gemm(rng, 8, 1024, 256)),
        ("GEMM", "accumulate K chunk 64x256x64", _accumulate(rng, 64, 256, 64)),
        ("GEMM", "int4 64x256x64", _gemm(rng, 64, 256, 64, "int4")),
        ("GEMM", "DLRM bottom 32x13x64", _gemm(rng, 32, 13, 64)),
        ("GEMM", "Transformer FFN 16x32x64 int4->int32", _gemm(rng, 16, 32, 64, "int4", out="int32")),
        ("GEMM", "Transformer scores 4x(8x16x8) int32", _gemm(rng, 8, 16, 8, batch=4, out="int32")),
        ("GEMM", "LSTM input gates 32x8x128 int32", _gemm(rng, 32, 8, 128, out="int32", requant=True)),
        ("GEMM", "K chunk 32x16x32 accumulate int32", _accumulate(rng, 32, 16, 32, "middle")),
        ("GEMM", "3 overlapped 16x32x64 int4->int32", _chain(_gemm(rng, 16, 32, 64, "int4", out="int32"), 3)),
        ("GATHER", "dim 128, pooling 8", _gather(rng, 2000, 128, 64, 8)),
        ("GATHER", "dim 128, pooling 1", _gather(rng, 3000, 128, 256, 1)),
        ("GATHER", "dim 128, pooling 27", _gather(rng, 3000, 128, 32, 27)),
        ("GATHER", "dim 128, pooling 100", _gather(rng, 500, 128, 16, 100)),
        ("GATHER", "dim 64, pooling 4", _gather(rng, 4000, 64, 128, 4)),
        ("GATHER", "dim 32, uniform", _gather(rng, 1000, 32, 50, 10, 0.0)),
        ("RNG", "4096 words", lambda b: emit_rng(b, (1, 2), (0, 0, 0, 0), 4096)),
        ("SKETCH", "64x256 k=16", lambda b: emit_sketch(b, rng.integers(-128, 128, (64, 256)), 16, (1, 2))),
        ("SKETCH", "32x64 k=40 gaussian", lambda b: emit_sketch(b, rng.integers(-128, 128, (32, 64)), 40, (1, 2),
                                                                dist="gaussian")),
    ]


@pytest.mark.parametrize("backend", backend_params(("verilator",)))
def test_cycle_model_matches_rtl(backend, seed):
    gate, golden = accelerator(backend, CONFIG), accelerator("golden", CONFIG)
    errors = {}
    for engine, name, emit in samples(np.random.default_rng(seed)):
        builder = ProgramBuilder(CONFIG)
        emit(builder)
        program = builder.build()
        measured, model = gate.run(program), golden.run(program)
        np.testing.assert_array_equal(measured.memory, model.memory)
        error = model.counters["cycles"] / measured.counters["cycles"] - 1
        errors.setdefault(engine, []).append(error)
        print(f"{engine:7s} {name:34s} RTL {measured.counters['cycles']:7d}  model {model.counters['cycles']:7d}  "
              f"{100 * error:+.2f}%")
    for engine, values in errors.items():
        values = np.abs(values)
        print(f"{engine}: |error| max {100 * values.max():.2f}%, mean {100 * values.mean():.2f}% over {len(values)}")
    # GEMM, RNG and SKETCH: within 2%. GATHER: within 4%, 1.5% on average (the pooling path and the port's
    # round robin are modelled in aggregate, sw/cycle_model.GATHER_NORM: 212 sampled GATHERs gave |error|
    # mean 0.6%, max 3.3%, the largest errors on the shortest ones)
    assert all(abs(e) <= (0.04 if engine == "GATHER" else 0.02) for engine, values in errors.items() for e in values), errors
    assert np.mean(np.abs(errors["GATHER"])) <= 0.015, errors["GATHER"]
