"""Overlapped instructions: chains of GEMMs, and of GEMMs and GATHERs side by side, with read-after-write,
write-after-read and write-after-write dependencies, independent GEMMs next to GATHER/RNG, and errors
behind instructions in flight give the golden model's memory image, error and pc on every backend, with
``Config.overlap`` on and (golden, amaranth) off; the side-by-side runs have random memory stalls from the
printed seed. The cycle model follows the RTL for GEMM streams in both settings."""
import numpy as np
import pytest

from conftest import SMALL, accelerator, backend_params
from tridsa import Accelerator
from tridsa import Requant
from tridsa.spec import isa
from tridsa.sw.builder import ProgramBuilder
from tridsa.sw.gather_ops import emit_gather
from tridsa.spec.gemm_layout import GemmGeometry
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


def _stalled(backend, config, seed):
    """A backend with random memory stalls from ``seed`` (printed by the fixture; replay with TRIDSA_SEED)."""
    if backend == "golden":
        return accelerator("golden", config)
    return Accelerator(backend, config, mem_stall_seed=seed % (1 << 32) or 1)


def _check_stalled(backend, program, seed, config=SMALL):
    expected = execute(program)
    acc = _stalled(backend, config, seed)
    result = acc.backend.run(program)
    assert (result.error, result.error_pc) == (expected.error, expected.error_pc)
    np.testing.assert_array_equal(result.memory, expected.memory)
    return expected, result


# (backend, Config): every backend overlaps; golden and amaranth also run the chip without overlap
SETTINGS = [pytest.param(b, SMALL, marks=[pytest.mark.slow] if b in ("verilator", "icarus") else [], id=f"{b}-overlap")
            for b in ("golden", "amaranth", "verilator", "icarus")]
SETTINGS += [pytest.param(b, SERIAL, id=f"{b}-serial") for b in ("golden", "amaranth")]


@pytest.mark.parametrize("chain", sorted(CHAINS))
@pytest.mark.parametrize("backend, config", SETTINGS)
def test_dependent_gemms_match_golden(backend, config, chain, seed):
    """Three GEMMs chained as ``chain`` says, a GATHER, then two more GEMMs (one engine after another),
    under random memory stalls."""
    rng = np.random.default_rng(seed)
    builder = ProgramBuilder(config)
    fields = _gemms(rng, builder, 3)
    for i, name, j, region in CHAINS[chain]:
        fields[i][name] = fields[j][region]
    builder.instructions[:3] = [isa.encode("GEMM", **f) for f in fields]
    emit_gather(builder, rng.integers(-128, 128, (40, 8)).astype(np.int8), rng.integers(0, 40, 12), np.arange(4) * 3)
    _gemms(rng, builder, 2)
    program = builder.build()
    expected, _ = _check_stalled(backend, program, seed, config)
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
    expected, _ = _check_stalled(backend, program, seed)
    assert (expected.error_name, expected.error_pc) == ("OVERLAP", 2)
    c_words = GemmGeometry(SMALL, *SHAPE, False, 1).c_words
    for c in (fields[0]["c_addr"], fields[1]["c_addr"]):          # written (random operands: not all zero)
        assert expected.memory[c:c + c_words].any()
    rng_out = program.outputs["rng"]
    for region in (slice(fields[3]["c_addr"], fields[3]["c_addr"] + c_words),
                   slice(rng_out.addr, rng_out.addr + rng_out.words)):
        np.testing.assert_array_equal(expected.memory[region], program.memory[region])


@pytest.mark.parametrize("config", [SMALL, SERIAL, SMALL.replace(row_group=3)], ids=["overlap", "serial", "row_groups"])
def test_cycle_model_follows_overlap(config, seed):
    """The golden backend's cycles (the cycle model) equal the RTL cycle counter for a stream of independent
    GEMMs and a read-after-write chain, with overlap (the drain hidden, the chain waiting) and without, and
    with registered links between the array's row groups."""
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


# GEMM 0, GATHER 1, GEMM 2, GATHER 3; (i, field of i, j, field of j): instruction i's region starts where j's does
CROSS_CHAINS = {
    # the GATHER pools rows of what the GEMM wrote; the GEMM multiplies what the GATHER wrote
    "raw": [(1, "table_addr", 0, "c_addr"), (2, "a_addr", 1, "out_addr"), (3, "table_addr", 2, "c_addr")],
    # each writes what the previous one reads
    "war": [(1, "out_addr", 0, "b_addr"), (2, "c_addr", 1, "table_addr"), (3, "out_addr", 2, "a_addr")],
    # each writes where the previous one wrote
    "waw": [(1, "out_addr", 0, "c_addr"), (2, "c_addr", 1, "out_addr"), (3, "out_addr", 2, "c_addr")],
    "independent": [],
}


def _gather(rng, builder):
    emit_gather(builder, rng.integers(-128, 128, (40, 8)).astype(np.int8), rng.integers(0, 40, 12), np.arange(4) * 3)
    return isa.decode(builder.instructions[-1])[1]


def _side_by_side(rng, config, chain):
    """GEMM, GATHER, GEMM, GATHER with the regions of ``CROSS_CHAINS[chain]`` (the program's instructions)."""
    builder = ProgramBuilder(config)
    fields = [_gemms(rng, builder, 1)[0], _gather(rng, builder), _gemms(rng, builder, 1)[0], _gather(rng, builder)]
    for i, name, j, region in CROSS_CHAINS[chain]:
        fields[i][name] = fields[j][region]
    builder.instructions[:4] = [isa.encode("GEMM" if i % 2 == 0 else "GATHER", **f) for i, f in enumerate(fields)]
    return builder.build(), fields


CROSS_BACKENDS = backend_params(("golden", "amaranth", "verilator", "icarus"))


@pytest.mark.parametrize("chain", sorted(CROSS_CHAINS))
@pytest.mark.parametrize("backend", CROSS_BACKENDS)
def test_gemm_and_gather_side_by_side(backend, chain, seed):
    """GEMM and GATHER alternate with read-after-write, write-after-read or write-after-write between each
    and the previous one (or none), under random memory stalls: the golden model's memory and status."""
    program, _ = _side_by_side(np.random.default_rng(seed), SMALL, chain)
    expected, _ = _check_stalled(backend, program, seed)
    assert expected.error == 0


@pytest.mark.slow
def test_side_by_side_on_cocotb_verilator(seed):
    """One quick case through cocotb on Verilator (the same Verilog, the plusarg's stalls)."""
    program, _ = _side_by_side(np.random.default_rng(seed), SMALL, "raw")
    _check_stalled("cocotb-verilator", program, seed)


def test_side_by_side_overlaps():
    """Independent GEMM and GATHER run side by side: the pair takes fewer cycles than the two alone, and a
    pair with a hazard waits (more cycles than the independent pair)."""
    rng = np.random.default_rng(3)
    cycles = {}
    for chain in ("independent", "raw"):
        program, _ = _side_by_side(rng, SMALL, chain)
        cycles[chain] = accelerator("amaranth").backend.run(program).counters["cycles"]
    alone = 0
    for op in ("GEMM", "GATHER"):
        builder = ProgramBuilder(SMALL)
        _gemms(rng, builder, 1) if op == "GEMM" else _gather(rng, builder)
        alone += accelerator("amaranth").backend.run(builder.build()).counters["cycles"]
    assert cycles["independent"] < cycles["raw"] and cycles["independent"] < 2 * alone, (cycles, alone)


# (failing instruction, how it fails): the GATHER's indices out of its table after its check pass started
# beside the GEMM (INDEX_RANGE), the GEMM's C over its own A while the GATHER runs (OVERLAP)
FAILURES = {"gather": (1, "rows", 3, "INDEX_RANGE"), "gemm": (2, "c_addr", None, "OVERLAP")}


@pytest.mark.parametrize("failing", sorted(FAILURES))
@pytest.mark.parametrize("backend", CROSS_BACKENDS)
def test_error_beside_an_instruction_in_flight(backend, failing, seed):
    """The first failing instruction reports its pc after every earlier one is done (their results are in
    memory), and no later one writes, though the other engine was free to start it."""
    rng = np.random.default_rng(seed)
    program, fields = _side_by_side(rng, SMALL, "independent")
    pc, name, value, error = FAILURES[failing]
    fields[pc][name] = fields[pc]["a_addr"] if value is None else value
    program.instructions[pc] = isa.encode("GEMM" if pc % 2 == 0 else "GATHER", **fields[pc])
    expected, _ = _check_stalled(backend, program, seed)
    assert (expected.error_name, expected.error_pc) == (error, pc)
    c_words = GemmGeometry(SMALL, *SHAPE, False, 1).c_words
    written = {0: (fields[0]["c_addr"], c_words), 1: (fields[1]["out_addr"], 2), 2: (fields[2]["c_addr"], c_words),
               3: (fields[3]["out_addr"], 2)}
    for index, (addr, words) in written.items():
        unchanged = np.array_equal(expected.memory[addr:addr + words], program.memory[addr:addr + words])
        assert unchanged == (index >= pc), index


@pytest.mark.parametrize("order", ["GEMM GATHER", "GATHER GEMM", "GEMM GATHER GEMM", "GATHER GEMM GATHER"])
def test_cycle_model_side_by_side(order, seed):
    """The cycle model of a GEMM and a GATHER side by side (start after the checks, the shared memory
    port) within 10% of the RTL counter; the error is printed."""
    rng = np.random.default_rng(seed)
    builder = ProgramBuilder(SMALL)
    for op in order.split():
        _gemms(rng, builder, 1) if op == "GEMM" else _gather(rng, builder)
    program = builder.build()
    rtl = accelerator("amaranth").backend.run(program).counters["cycles"]
    model = accelerator("golden").backend.run(program).counters["cycles"]
    print(f"{order}: RTL {rtl}, model {model} ({100 * (model / rtl - 1):+.1f}%)")
    assert abs(model / rtl - 1) <= 0.10
