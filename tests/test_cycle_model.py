"""The cycle model (sw/cycle_model.py, the golden backend's cycles) against the RTL cycle counter on sampled
layers of every engine, on the default Config() (and GATHERs on the tests' SMALL one): within 2%; the error
distribution is printed."""
import numpy as np
import pytest

from conftest import SMALL, accelerator, backend_params
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


def _gather(rng, rows, dim, bags, pooling, alpha=1.05, dtype=np.int8, weighted=False, ragged=False, **kw):
    """A GATHER of ``bags`` bags of ``pooling`` Zipf(``alpha``) rows (``ragged``: 0 to ``2 * pooling`` rows)."""
    table = rng.integers(-128, 128, (rows, dim)).astype(dtype)
    lengths = rng.integers(0, 2 * pooling + 1, bags) if ragged else np.full(bags, pooling)
    indices = zipf_indices(rows, int(lengths.sum()), alpha, rng)
    weights = rng.integers(-100, 100, indices.size) if weighted else None
    return lambda b: emit_gather(b, table, indices, np.cumsum(lengths) - lengths, per_sample_weights=weights, **kw)


def samples(rng):
    """``(engine, name, emit)``: tiles of the zoo's layers (ResNet-50 3x3 and 7x7-stage convs, BERT attention,
    an LSTM step, a K chunk in accumulate mode, INT4), the demo Transformer's and LSTM's int32-output GEMMs
    with a short K (their memory port sets the pace; also three overlapped), DLRM-like embedding bags (every
    pooling mode, narrow output, weights, empty bags, an int32 table), RNG, sketches, and GEMMs and GATHERs
    side by side."""
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
        ("GATHER", "dim 128, pooling 3, narrow", _gather(rng, 1500, 128, 128, 3, out_shift=6)),
        ("GATHER", "dim 64, pooling 2, weighted", _gather(rng, 1500, 64, 128, 2, weighted=True)),
        ("GATHER", "dim 32, pooling 8, max", _gather(rng, 1500, 32, 48, 8, mode="max")),
        ("GATHER", "dim 128, copy", _gather(rng, 1500, 128, 128, 1, mode="copy")),
        ("GATHER", "dim 64, ragged with empty bags", _gather(rng, 1000, 64, 64, 3, ragged=True)),
        ("GATHER", "int32 dim 16, pooling 4", _gather(rng, 500, 16, 64, 4, dtype=np.int32)),
        ("GATHER", "dim 32, pooling 2, mean", _gather(rng, 300, 32, 16, 2, mode="mean")),
        ("RNG", "4096 words", lambda b: emit_rng(b, (1, 2), (0, 0, 0, 0), 4096)),
        ("SKETCH", "64x256 k=16", lambda b: emit_sketch(b, rng.integers(-128, 128, (64, 256)), 16, (1, 2))),
        ("SKETCH", "32x64 k=40 gaussian", lambda b: emit_sketch(b, rng.integers(-128, 128, (32, 64)), 40, (1, 2),
                                                                dist="gaussian")),
        ("GEMM+GATHER", "GEMM 32x256x32, GATHER pooling 2", _side_by_side(_gemm(rng, 32, 256, 32),
                                                                          _gather(rng, 1000, 128, 200, 2))),
        ("GEMM+GATHER", "GATHER, GEMM 64x64x64, GATHER", _side_by_side(_gather(rng, 1000, 128, 64, 4),
                                                                       _gemm(rng, 64, 64, 64),
                                                                       _gather(rng, 1000, 128, 64, 4))),
    ]


def _side_by_side(*emits):
    """GEMMs and GATHERs in one Program: with Config.overlap they run side by side, sharing the port."""
    return lambda b: [emit(b) for emit in emits]


def small_samples(rng):
    """GATHERs on SMALL (a longer memory latency, a narrower port, 4 prefetch entries, a 4 x 2 cache)."""
    return [("GATHER", f"SMALL dim {dim}, pooling {pooling}{label}",
             _gather(rng, 150, dim, 40 // pooling, pooling, **kw))
            for dim, pooling, label, kw in ((32, 1, "", {}), (16, 3, ", weighted", {"weighted": True}),
                                            (8, 5, ", max, ragged", {"mode": "max", "ragged": True}),
                                            (32, 2, ", narrow", {"out_shift": 4}), (8, 2, ", mean", {"mode": "mean"}))]


def _errors(backend, config, samples):
    """``{engine: [model / RTL - 1, ...]}`` of ``samples`` (every one printed), results bit-exact."""
    gate, golden = accelerator(backend, config), accelerator("golden", config)
    errors = {}
    for engine, name, emit in samples:
        builder = ProgramBuilder(config)
        emit(builder)
        program = builder.build()
        measured, model = gate.run(program), golden.run(program)
        np.testing.assert_array_equal(measured.memory, model.memory)
        error = model.counters["cycles"] / measured.counters["cycles"] - 1
        errors.setdefault(engine, []).append(error)
        print(f"{engine:11s} {name:38s} RTL {measured.counters['cycles']:7d}  model {model.counters['cycles']:7d}  "
              f"{100 * error:+.2f}%")
    for engine, values in errors.items():
        values = np.abs(values)
        print(f"{engine}: |error| max {100 * values.max():.2f}%, mean {100 * values.mean():.2f}% over {len(values)}")
    return errors


@pytest.mark.parametrize("backend", backend_params(("verilator",)))
def test_cycle_model_matches_rtl(backend, seed):
    errors = _errors(backend, CONFIG, samples(np.random.default_rng(seed)))
    # every engine within 2%; side by side, where the port's sharing is modelled as a fluid
    # (cycle_model.side_speeds; tridsa bench cycles measures it on more Programs), within 3%
    assert all(abs(e) <= (0.03 if engine == "GEMM+GATHER" else 0.02) for engine, values in errors.items()
               for e in values), errors


@pytest.mark.parametrize("backend", backend_params(("verilator",)))
def test_gather_cycle_model_on_small(backend, seed):
    errors = _errors(backend, SMALL, small_samples(np.random.default_rng(seed)))
    assert all(abs(e) <= 0.02 for e in errors["GATHER"]), errors
