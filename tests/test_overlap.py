"""Overlapped instructions: chains of GEMMs with read-after-write, write-after-read and write-after-write
dependencies, independent GEMMs next to GATHER/RNG, and an error behind instructions in flight give the
golden model's memory image, error and pc on every backend, with ``Config.overlap`` on and (golden,
amaranth) off; the cycle model follows the RTL in both settings."""
import numpy as np
import pytest

from conftest import SMALL, accelerator, backend_params
from tridsa import Requant
from tridsa.sw import isa
from tridsa.sw.builder import ProgramBuilder
from tridsa.sw.gather_ops import emit_gather
from tridsa.sw.gemm_layout import GemmGeometry
from tridsa.sw.gemm_ops import emit_gemm
from tridsa.sw.golden import execute
from tridsa.sw.sketch_ops import emit_rng

# which fields of GEMM i are redirected to a region of GEMM j < i: (i, field of i, j, region of j)
CHAINS = {
    "raw": [(1, "a_addr", 0, "c_addr"), (2, "b_addr", 1, "c_addr")],     # read what the previous one writes
    "war": [(1, "c_addr", 0, "a_addr"), (2, "c_addr", 1, "b_addr")],     # write what the previous one reads
    "waw": [(1, "c_addr", 0, "c_addr"), (2, "c_addr", 1, "c_addr")],     # write what the previous one writes
    "independent": [],
}
SHAPE = (6, 20, 10)       # M, K, N of every GEMM: 2 x 3 tiles on SMALL


def _gemms(rng, builder, count):
    """Emit ``count`` GEMMs of random operands (int8 out); return their instruction fields."""
    m, k, n = SHAPE
    for _ in range(count):
        emit_gemm(builder, rng.integers(-128, 128, (m, k)), rng.integers(-128, 128, (k, n)),
                  rng.integers(-999, 999, n), Requant(1 << 22, 20), relu=bool(rng.integers(2)))
    return [isa.decode(word)[1] for word in builder.instructions[-count:]]


SERIAL = SMALL.replace(overlap=False)


def _check(backend, program, config=SMALL):
    expected = execute(program)
    result = accelerator(backend, config).backend.run(program)
    assert (result.error, result.error_pc) == (expected.error, expected.error_pc)
    np.testing.assert_array_equal(result.memory, expected.memory)
    return expected


# (backend, Config): every backend overlaps; golden and amaranth also run the chip without overlap
SETTINGS = [pytest.param(b, SMALL, marks=[pytest.mark.slow] if b in ("verilator", "icarus") else [], id=f"{b}-overlap")
            for b in ("golden", "amaranth", "verilator", "icarus")]
SETTINGS += [pytest.param(b, SERIAL, id=f"{b}-serial") for b in ("golden", "amaranth")]


@pytest.mark.parametrize("chain", sorted(CHAINS))
@pytest.mark.parametrize("backend, config", SETTINGS)
def test_dependent_gemms_match_golden(backend, config, chain, seed):
    """Three GEMMs chained as ``chain`` says, a GATHER, then two more GEMMs (one engine after another)."""
    rng = np.random.default_rng(seed)
    builder = ProgramBuilder(config)
    fields = _gemms(rng, builder, 3)
    for i, name, j, region in CHAINS[chain]:
        fields[i][name] = fields[j][region]
    builder.instructions[:3] = [isa.encode("GEMM", **f) for f in fields]
    emit_gather(builder, rng.integers(-128, 128, (40, 8)).astype(np.int8), rng.integers(0, 40, 12), np.arange(4) * 3)
    _gemms(rng, builder, 2)
    program = builder.build()
    expected = _check(backend, program, config)
    assert expected.error == 0 and expected.counters["retired"] == len(program.instructions) - 1


@pytest.mark.parametrize("backend", backend_params(("golden", "amaranth", "verilator", "icarus")))
def test_error_behind_gemms_in_flight(backend, seed):
    """GEMM 2 fails (its C overlaps its own A) while GEMMs 0 and 1 may still be in flight: they complete,
    GEMM 2 reports pc 2, and neither GEMM 3 (legal) nor the RNG after it writes memory."""
    rng = np.random.default_rng(seed)
    builder = ProgramBuilder(SMALL)
    fields = _gemms(rng, builder, 4)
    fields[2]["c_addr"] = fields[2]["a_addr"]
    builder.instructions[:4] = [isa.encode("GEMM", **f) for f in fields]
    emit_rng(builder, (1, 2), (0, 0, 0, 0), 16)
    program = builder.build()
    expected = _check(backend, program)
    assert (expected.error_name, expected.error_pc) == ("OVERLAP", 2)
    c_words = GemmGeometry(SMALL, *SHAPE, False, 1).c_words
    for c in (fields[0]["c_addr"], fields[1]["c_addr"]):          # written (random operands: not all zero)
        assert expected.memory[c:c + c_words].any()
    rng_out = program.outputs["rng"]
    for region in (slice(fields[3]["c_addr"], fields[3]["c_addr"] + c_words),
                   slice(rng_out.addr, rng_out.addr + rng_out.words)):
        np.testing.assert_array_equal(expected.memory[region], program.memory[region])


@pytest.mark.parametrize("config", [SMALL, SERIAL], ids=["overlap", "serial"])
def test_cycle_model_follows_overlap(config, seed):
    """The golden backend's cycles (the cycle model) equal the RTL cycle counter for a stream of independent
    GEMMs and a read-after-write chain, with overlap (the drain hidden, the chain waiting) and without."""
    rng = np.random.default_rng(seed)
    cycles = {}
    for chain in ("independent", "raw"):
        builder = ProgramBuilder(config)
        fields = _gemms(rng, builder, 3)
        for i, name, j, region in CHAINS[chain]:
            fields[i][name] = fields[j][region]
        builder.instructions[:3] = [isa.encode("GEMM", **f) for f in fields]
        program = builder.build()
        rtl = accelerator("amaranth", config).backend.run(program)
        model = accelerator("golden", config).backend.run(program)
        np.testing.assert_array_equal(rtl.memory, model.memory)
        assert rtl.counters["cycles"] == model.counters["cycles"], chain
        cycles[chain] = rtl.counters["cycles"]
    assert (cycles["independent"] < cycles["raw"]) == config.overlap, cycles
