"""Gather engine: golden GATHER semantics, driver lowering and errors, the engine on every backend,
the engine alone under random memory stalls and latencies, and the index prefetch queue unit."""
import functools
import random

import numpy as np
import pytest
from amaranth import Elaboratable, Module
from amaranth.sim import Simulator

from tridsa.hw.gather import CheckPass, GatherEngine, MeanDivider
from tridsa.hw.index_queue import IndexQueue
from tridsa.hw.memory import MemoryModel
from tridsa.sim.memimage import from_ints, to_ints
from tridsa.spec import isa
from tridsa.sw.builder import ProgramBuilder
from tridsa.sw.driver import AcceleratorError
from tridsa.sw.embedding import embedding_bag, embedding_bag_rowwise, quantize_rowwise
from tridsa.spec.gather_layout import BYPASS_BIT
from tridsa.sw.gather_golden import COUNTER_NAMES, check_gather, gather_counters
from tridsa.sw.gather_ops import emit_gather, gather_program, pack_int32
from tridsa.sw.golden import execute
from tridsa.sw.cache_hints import hot_plan
from tridsa.sw.row_cache import RowCache, simulate

from conftest import SMALL, accelerator, backend_params

E = isa.ERRORS


def _cases(rng, rows=40):
    """(table, indices, offsets, mode, weights) covering dtypes, modes, empty bags, repeats, weights."""
    t8 = rng.integers(-128, 128, (rows, 20)).astype(np.int8)              # 2 words per row on SMALL
    t32 = rng.integers(-2 ** 31, 2 ** 31, (rows, 3)).astype(np.int32)     # int32 sums wrap
    idx = rng.integers(0, rows, 30)
    idx[5:9] = 7                                                          # repeated indices
    off = np.array([0, 0, 5, 5, 12, 29, 29])                              # empty bags, one of 17 rows
    w = rng.integers(-1000, 1000, 30)
    return [(t8, idx, off, "sum", None), (t8, idx, off, "mean", None), (t8, idx, off, "max", None),
            (t32, idx, off, "sum", w), (t32, idx, off, "mean", None), (t32, idx, off, "max", None),
            (t8[:, :3], idx[:4], np.array([0, 1, 1, 4]), "sum", w[:4])]


def _multi_program(cases, config=SMALL, rng=None):
    """One program of every case: alternately with the driver's cache hints and with plain LRU; with
    ``rng``, one more GATHER of the first case whose index words get random bypass hints (hinted hits
    on resident rows, bypassed misses between allocating ones: the whole rule, beyond the driver's plans)."""
    builder = ProgramBuilder(config)
    calls = [emit_gather(builder, t, i, o, m, w, name=f"e{n}_", cache_hints=n % 2 == 0)
             for n, (t, i, o, m, w) in enumerate(cases)]
    if rng is not None:
        t, i, o, m, w = cases[0]
        calls.append(emit_gather(builder, t, i, o, m, w, name="raw_", cache_hints=False))
        fields = isa.decode(builder.instructions[-1])[1]
        hints = (rng.random(i.size) < 0.5).astype(np.int64)
        assert hints.any() and not hints.all()
        packed = pack_int32(np.asarray(i, np.int64) | hints << BYPASS_BIT, config.mem_width)
        builder.memory[fields["idx_addr"]:fields["idx_addr"] + len(packed)] = packed
        calls[-1].golden_counters = {f"gather_{k}": v for k, v in gather_counters(builder.memory, fields, config).items()}
    return builder.build(), calls


def _golden_counters(program):
    """The cache model's counters summed over the program's GATHERs (gather_* names)."""
    total = dict.fromkeys((f"gather_{k}" for k in COUNTER_NAMES), 0)
    for word in program.instructions:
        op, fields = isa.decode(int(word))
        if op.name == "GATHER":
            for key, value in gather_counters(program.memory, fields, program.config).items():
                total[f"gather_{key}"] += value
    return total


# -- golden model and driver ---------------------------------------------------------------------

def test_golden_matches_embedding_bag(seed):
    rng = np.random.default_rng(seed)
    cases = _cases(rng)
    program, calls = _multi_program(cases)
    result = execute(program)
    assert result.error == 0
    for (t, i, o, m, w), call in zip(cases, calls):
        assert np.array_equal(call.result(program, result.memory), embedding_bag(t, i, o, m, per_sample_weights=w))


def test_driver_lowering_padding_chunks_include_last(seed):
    rng = np.random.default_rng(seed)
    acc = accelerator("golden")
    table = rng.integers(-128, 128, (25, 70)).astype(np.int8)     # 70 > 32-byte line: three chunks
    idx = rng.integers(0, 25, 40)
    idx[::3] = 4
    off = np.array([0, 10, 10, 33, 40])
    for mode in ("sum", "mean", "max"):
        got = acc.embedding_bag(table, idx, off, mode, padding_idx=4, include_last_offset=True)
        assert np.array_equal(got, embedding_bag(table, idx, off, mode, padding_idx=4, include_last_offset=True))
    assert acc.last_run.instructions == 3
    two_d = rng.integers(0, 25, (3, 4))
    assert np.array_equal(acc.embedding_bag(table, two_d, None), embedding_bag(table, two_d, None))
    q = quantize_rowwise(rng.standard_normal((25, 8)).astype(np.float32), 4)
    assert np.array_equal(acc.embedding_bag_rowwise(q, 4, idx, off[:-1], "mean"),
                          embedding_bag_rowwise(q, 4, idx, off[:-1], "mean"))


def test_golden_counters_are_the_cache_model(seed):
    """Plain LRU on the table's own rows (cache_hints=False); with hints the model of the profiled
    layout: the hot rows allocate, the others bypass, and a hot row misses only once."""
    rng = np.random.default_rng(seed)
    acc = accelerator("golden")
    idx = rng.integers(0, 60, 200)
    table = rng.integers(-5, 5, (60, 4)).astype(np.int8)
    expect = embedding_bag(table, idx, np.arange(0, 200, 10))
    assert np.array_equal(acc.embedding_bag(table, idx, np.arange(0, 200, 10), cache_hints=False), expect)
    cache = RowCache(SMALL.cache_sets, SMALL.cache_ways)
    for row in idx:
        cache.access(int(row))
    assert {k: acc.last_run.counters[f"gather_{k}"] for k in cache.counters()} == cache.counters()
    assert acc.last_run.gather_bytes_read == cache.misses * SMALL.mem_width
    assert cache.bypasses == 0

    assert np.array_equal(acc.embedding_bag(table, idx, np.arange(0, 200, 10)), expect)
    capacity = SMALL.cache_sets * SMALL.cache_ways
    plan = hot_plan(idx, 60, capacity)
    positions, allocate = plan.lookups(idx)
    assert {k: acc.last_run.counters[f"gather_{k}"] for k in cache.counters()} \
        == simulate(positions, SMALL.cache_sets, SMALL.cache_ways, allocate)
    counts = np.bincount(idx, minlength=60)
    hot = np.argsort(-counts, kind="stable")[:capacity]
    assert acc.last_run.gather_hits == sum(counts[r] - 1 for r in hot if counts[r] >= 2)
    assert acc.last_run.gather_evictions == 0
    assert acc.last_run.gather_bypasses == sum(counts[r] for r in range(60) if r not in hot or counts[r] < 2)


@pytest.mark.parametrize("args, exc, match", [
    (dict(offsets=[0, 3, 2]), ValueError, "non-decreasing"),
    (dict(offsets=[1, 3]), ValueError, "offsets\\[0\\]"),
    (dict(offsets=[0, 9]), ValueError, "offsets\\[-1\\]"),
    (dict(indices=[0, 1, 10, 2]), IndexError, "indices\\[2\\]=10"),
    (dict(indices=[0, -1, 1, 2]), IndexError, "indices\\[1\\]=-1"),
    (dict(indices=[0.0, 1.0, 2.0, 3.0]), TypeError, "indices"),
    (dict(table=np.zeros((10, 4), np.float32)), TypeError, "table dtype"),
    (dict(table=np.zeros((10, 4), np.int16)), TypeError, "table dtype"),
    (dict(table=np.zeros((0, 4), np.int8)), ValueError, "table"),
    (dict(mode="median"), ValueError, "mode"),
    (dict(mode="max", per_sample_weights=[1, 2, 3, 4]), ValueError, "per_sample_weights"),
    (dict(per_sample_weights=[1, 2, 3]), ValueError, "per_sample_weights"),
    (dict(padding_idx=10), ValueError, "padding_idx"),
])
def test_driver_rejects_bad_input(args, exc, match):
    call = dict(table=np.ones((10, 4), np.int8), indices=[0, 1, 2, 3], offsets=[0, 2])
    call.update(args)
    with pytest.raises(exc, match=match):
        accelerator("golden").embedding_bag(**call)


# -- table-batched embedding (several tables, one GATHER) ------------------------------------------

def _tbe_case(rng, batch=7, dtype=np.int8, dim=5):
    """Tables of different sizes and their bags (empty bags, repeats), one bag per sample per table."""
    info = np.iinfo(dtype)
    tables = [rng.integers(info.min, info.max + 1, (rows, dim)).astype(dtype) for rows in (30, 7, 12)]
    indices, offsets, weights = [], [], []
    for tab in tables:
        lengths = rng.integers(0, 4, batch)
        indices.append(rng.integers(0, tab.shape[0], int(lengths.sum())))
        offsets.append(np.concatenate([[0], np.cumsum(lengths)[:-1]]))
        weights.append(rng.integers(-1000, 1000, int(lengths.sum())))
    return tables, indices, offsets, weights


@pytest.mark.parametrize("mode, weighted, dtype", [("sum", False, np.int8), ("sum", True, np.int32),
                                                   ("mean", False, np.int8), ("max", False, np.int32)])
def test_table_batch_is_embedding_bag_per_table(mode, weighted, dtype, seed):
    """[:, t] of the one batched call is torch-semantics embedding_bag of table t alone, bit for bit."""
    tables, indices, offsets, weights = _tbe_case(np.random.default_rng(seed), dtype=dtype)
    acc = accelerator("golden")
    got = acc.embedding_bags(tables, indices, offsets, mode, weights if weighted else None)
    assert acc.last_run.instructions == 1 and got.shape == (7, 3, 5) and got.dtype == np.int32
    for t, tab in enumerate(tables):
        want = embedding_bag(tab, indices[t], offsets[t], mode, per_sample_weights=weights[t] if weighted else None)
        assert np.array_equal(got[:, t], want)
    last = [np.append(o, len(i)) for i, o in zip(indices, offsets)]
    assert np.array_equal(acc.embedding_bags(tables, indices, last, mode, include_last_offset=True),
                          acc.embedding_bags(tables, indices, offsets, mode))


@pytest.mark.parametrize("change, exc, match", [
    (lambda c: c[0].__setitem__(1, np.zeros((7, 6), np.int8)), ValueError, "tables\\[1\\]"),
    (lambda c: c[0].__setitem__(1, np.zeros((7, 5), np.int32)), ValueError, "tables\\[1\\]"),
    (lambda c: c[1][2].__setitem__(0, 12), IndexError, "table 2: indices\\[0\\]=12"),
    (lambda c: c[2].__setitem__(1, c[2][1][:-1]), ValueError, "table 1 has 6 bags"),
    (lambda c: c[2].__setitem__(0, c[2][0][::-1]), ValueError, "table 0: offsets"),
    (lambda c: c[1].pop(), ValueError, "one entry per table"),
])
def test_table_batch_rejects_bad_input(change, exc, match):
    case = list(_tbe_case(np.random.default_rng(1)))
    case[1][2] = np.maximum(case[1][2], 1)                    # table 2 has an index to spoil
    change(case)
    with pytest.raises(exc, match=match):
        accelerator("golden").embedding_bags(*case[:3])


def _bad_programs():
    """Programs whose second instruction is an illegal GATHER, one per error (and its priority)."""
    good = (np.arange(24, dtype=np.int8).reshape(6, 4), [1, 2, 3], [0, 1, 3], "sum", None)
    out = {}
    for name, change in [("BAD_MODE", dict(mode=3, weighted=1)), ("BAD_MODE", dict(mode=2, weighted=1)),
                         ("BAD_SHAPE", dict(dim=0)), ("BAD_SHAPE", dict(dim=33)),
                         ("ADDR_RANGE", dict(out_addr=SMALL.mem_depth - 1)),
                         ("BAD_OFFSETS", dict(off=[0, 2, 1, 3])), ("BAD_OFFSETS", dict(off=[1, 1, 2, 3])),
                         ("BAD_OFFSETS", dict(off=[0, 1, 2, 4])),
                         ("INDEX_RANGE", dict(idx=[0, 6, 1])), ("INDEX_RANGE", dict(idx=[0, 1, -1])),
                         ("BAD_OFFSETS", dict(off=[0, 3, 2, 3], idx=[0, 9, 1])),     # offsets checked first
                         ("BAD_MODE", dict(mode=1, narrow=1)), ("BAD_MODE", dict(mode=3, narrow=1, dim=0))]:
        builder = ProgramBuilder(SMALL)
        emit_gather(builder, *good[:4], name="ok")
        fields = isa.decode(builder.instructions[0])[1]
        fields.update(n_bags=3, n_indices=3, off_addr=builder.put(pack_int32(change.pop("off", [0, 1, 2, 3]), 16)),
                      idx_addr=builder.put(pack_int32(change.pop("idx", [5, 4, 3]), 16)), out_addr=builder.alloc(3))
        fields.update(change)
        builder.emit("GATHER", **fields)
        program = builder.build()
        assert check_gather(program.memory, fields, SMALL) == E[name]
        out.setdefault(name, []).append(program)
    return out


def _tampered_gather(rng, weighted, bad_index=None, bad_offset=None, config=SMALL):
    """A GATHER of 4 bags over 10 indices (3 index words on SMALL, some with the bypass hint) whose index
    ``bad_index`` is ``rows`` (INDEX_RANGE) and/or whose offset ``bad_offset`` breaks the offset rules.
    Weighted, legal offsets and a bad index is the fuzzer's hang (seed 11, Program 263): the main
    pass's index and weight reads were issued behind the check pass's and must all be dropped."""
    rows, n = 6, 10
    table = rng.integers(-2 ** 31, 2 ** 31, (rows, 5)).astype(np.int32)
    idx = rng.integers(0, rows, n)
    weights = rng.integers(-1000, 1000, n) if weighted else None
    builder = ProgramBuilder(config)
    emit_gather(builder, table, idx, [0, 4, 4, 7], "sum", weights, name="g", cache_hints=False)
    fields = isa.decode(builder.instructions[-1])[1]
    words = idx | (rng.random(n) < 0.4).astype(np.int64) << BYPASS_BIT
    offsets = [0, 4, 4, 7, n]
    if bad_index is not None:
        words[bad_index] = rows
    if bad_offset is not None:
        offsets[bad_offset] = {0: 1, len(offsets) - 1: n + 1}.get(bad_offset, offsets[bad_offset - 1] - 1)
    for addr, values in ((fields["idx_addr"], words), (fields["off_addr"], offsets)):
        packed = pack_int32(values, config.mem_width)
        builder.memory[addr:addr + len(packed)] = packed
    return builder.build()


def test_golden_error_codes_and_priority():
    for name, programs in _bad_programs().items():
        for program in programs:
            result = execute(program)
            assert (result.error, result.error_pc) == (E[name], 1)


# -- the engine alone: random memory stalls, several latencies --------------------------------------

class _EngineHarness(Elaboratable):
    """GatherEngine on a MemoryModel; ``stall`` refuses memory requests (backpressure)."""

    def __init__(self, config, init):
        from amaranth import Signal
        self.engine, self.memory, self.stall = GatherEngine(config), MemoryModel(config, init=init), Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine, m.submodules.memory = self.engine, self.memory
        req, mreq = self.engine.mem.req, self.memory.port.req
        m.d.comb += [mreq.payload.eq(req.payload), mreq.valid.eq(req.valid & ~self.stall),
                     req.ready.eq(mreq.ready & ~self.stall),
                     self.engine.mem.resp.valid.eq(self.memory.port.resp.valid),
                     self.engine.mem.resp.payload.eq(self.memory.port.resp.payload)]
        return m


def run_engine(program, seed=None, stall_rate=0.0, max_cycles=100_000):
    """Run the GATHERs of ``program`` on the engine alone; return (memory, error, error_pc, counters, cycles)."""
    cfg = program.config
    h = _EngineHarness(cfg, to_ints(program.memory))
    sim = Simulator(h)
    sim.add_clock(1e-8)
    rnd = random.Random(seed)
    out = {"error": 0, "error_pc": 0, "cycles": 0}

    async def bench(ctx):
        for pc, word in enumerate(program.instructions):
            if isa.decode(int(word))[0].name != "GATHER":
                continue
            ctx.set(h.engine.instr.as_value(), int(word))
            ctx.set(h.engine.start, 1)
            await ctx.tick()
            ctx.set(h.engine.start, 0)
            for cycle in range(max_cycles):
                ctx.set(h.stall, rnd.random() < stall_rate)
                if ctx.get(h.engine.done):
                    break
                await ctx.tick()
            else:
                raise AssertionError(f"GATHER {pc} did not finish within {max_cycles} cycles")
            out["cycles"] += cycle
            error = ctx.get(h.engine.error)             # valid with done
            await ctx.tick()                            # done is seen in FINISH; the engine is idle after it
            if error:
                out.update(error=error, error_pc=pc)
                break
        out["counters"] = {name: ctx.get(getattr(h.engine.counters, name)) for name in GatherEngine.COUNTERS}
        out["memory"] = from_ints([ctx.get(h.memory.storage_memory.data[i]) for i in range(cfg.mem_depth)],
                                  cfg.mem_width)

    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("latency, prefetch, stall_rate", [(1, 4, 0.2), (2, 1, 0.0), (7, 4, 0.3), (20, 8, 0.1)])
def test_engine_random_stalls_and_latency(latency, prefetch, stall_rate, seed):
    config = SMALL.replace(mem_latency=latency, prefetch_depth=prefetch)
    rng = np.random.default_rng(seed)
    program, calls = _multi_program(_cases(rng), config, rng)
    out = run_engine(program, seed, stall_rate)
    golden = execute(program)
    assert out["error"] == 0 and np.array_equal(out["memory"], golden.memory)
    expect = _golden_counters(program)
    assert {k: out["counters"][k[len("gather_"):]] for k in expect} == expect
    assert expect == {k: sum(call.golden_counters[k] for call in calls) for k in expect}
    assert expect["gather_bypasses"] > 0 and expect["gather_evictions"] > 0


def test_engine_errors_write_nothing(seed):
    for name, programs in _bad_programs().items():
        for program in programs:
            out = run_engine(program, seed, stall_rate=0.2)
            golden = execute(program)
            assert (out["error"], out["error_pc"]) == (E[name], 1), name
            assert np.array_equal(out["memory"], golden.memory), name
            assert out["cycles"] < 200


def test_engine_illegal_gathers_end_within_bound(seed):
    """A bounded sweep for hangs: a bad index at every position and a bad offset at every position,
    weighted or not, under random stalls and three latencies: every one ends with golden's error within
    a fixed cycle bound, having written nothing and read no row."""
    rng = np.random.default_rng(seed)
    bad = [dict(bad_index=i) for i in range(10)] + [dict(bad_offset=q) for q in range(5)]
    for n, (weighted, change) in enumerate((w, c) for w in (0, 1) for c in bad):
        config = SMALL.replace(mem_latency=(1, 3, 7)[n % 3])
        program = _tampered_gather(rng, weighted, config=config, **change)
        out = run_engine(program, seed + n, stall_rate=0.3, max_cycles=1000)
        golden = execute(program)
        assert (out["error"], out["error_pc"]) == (golden.error, 0) and golden.error, (weighted, change)
        assert np.array_equal(out["memory"], program.memory), (weighted, change)
        assert out["counters"]["lookups"] == out["counters"]["bytes_read"] == 0, (weighted, change)
        assert out["cycles"] < 200, (weighted, change, out["cycles"])


def test_engine_pools_a_bag_per_cycle(seed):
    """One-row and empty bags back to back (DLRM's shape): the pooling unit hands a bag to the output
    while the previous one's last word leaves, and the index queue takes the next offset with the last
    lookup, so without stalls the port, not the bag count, bounds the cycles. With random stalls
    (and the mean divider, which holds finished bags) the memory image is still golden's."""
    rng = np.random.default_rng(seed)
    table = rng.integers(-128, 128, (12, 4)).astype(np.int8)             # 1 row word, 1 output word
    for mode, stall_rate, sizes in (("sum", 0.0, [0, 1, 1, 1]), ("max", 0.3, [0, 1, 2]), ("mean", 0.2, [0, 1, 2]),
                                    ("copy", 0.3, [0, 1, 2])):
        lengths = rng.choice(sizes, 64)           # without 2-row bags the port bounds the cycles
        idx = rng.integers(0, 12, int(lengths.sum()))
        off = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        program, call = gather_program(SMALL.replace(prefetch_depth=16), table, idx, off, mode)
        out = run_engine(program, seed, stall_rate)
        assert out["error"] == 0 and np.array_equal(out["memory"], execute(program).memory), mode
        assert np.array_equal(call.result(program, out["memory"]), _pooled(table, idx, off, mode))
        if stall_rate == 0:
            words = out["counters"]["mem_reads"] + out["counters"]["mem_writes"]
            assert out["cycles"] <= words + 4 * SMALL.mem_latency + 12, (out["cycles"], words)


# -- narrow output ------------------------------------------------------------------------------------

def _narrow_oracle(table, idx, off, mode, shift, weights=None):
    """torch embedding_bag in float64 (exact: every sum here is below 2**53), wrapped to int32 as the
    engine's sums, then floor(x / 2**s + 1/2) and saturation to the table's type, in Python integers."""
    torch = pytest.importorskip("torch", reason="torch is the oracle of the pooling (test extra)")
    pooled = torch.nn.functional.embedding_bag(
        torch.tensor(np.asarray(idx, np.int64)), torch.tensor(table.astype(np.float64)),
        torch.tensor(np.asarray(off, np.int64)), mode=mode, include_last_offset=True,
        per_sample_weights=None if weights is None else torch.tensor(np.asarray(weights, np.float64))).numpy()
    info = np.iinfo(table.dtype)
    out = np.zeros(pooled.shape, table.dtype)
    for pos, x in np.ndenumerate(pooled):
        x = (int(round(x)) + (1 << 31)) % (1 << 32) - (1 << 31)
        q = x if shift == 0 else (x + (1 << (shift - 1))) >> shift
        out[pos] = min(max(q, int(info.min)), int(info.max))
    return out


def _narrow_cases(rng, rows=40):
    """(table, idx, off, mode, weights, shift): int8/int32, sum/max, weights, shifts 0..31, empty bags,
    sums that saturate int8 and sums that wrap int32."""
    t8 = rng.integers(-128, 128, (rows, 20)).astype(np.int8)
    t32 = rng.integers(-2 ** 31, 2 ** 31, (rows, 3)).astype(np.int32)
    idx = rng.integers(0, rows, 30)
    off = np.array([0, 0, 5, 5, 12, 29, 30])
    w = rng.integers(-1000, 1000, 30)
    return [(t8, idx, off, "sum", None, 0), (t8, idx, off, "sum", None, 3), (t8, idx, off, "sum", w, 9),
            (t8, idx, off, "max", None, 0), (t8, idx, off, "max", None, 2), (t8, idx, off, "sum", None, 31),
            (t32, idx, off, "sum", None, 0), (t32, idx, off, "sum", w, 17), (t32, idx, off, "max", None, 31)]


def _narrow_program(cases, config=SMALL):
    builder = ProgramBuilder(config)
    calls = [emit_gather(builder, t, i, o, m, w, include_last_offset=True, name=f"n{n}_", out_shift=s)
             for n, (t, i, o, m, w, s) in enumerate(cases)]
    return builder.build(), calls


def test_narrow_golden_matches_torch_oracle(seed):
    cases = _narrow_cases(np.random.default_rng(seed))
    program, calls = _narrow_program(cases)
    result = execute(program)
    assert result.error == 0
    for (t, i, o, m, w, s), call in zip(cases, calls):
        got = call.result(program, result.memory)
        assert got.dtype == t.dtype and np.array_equal(got, _narrow_oracle(t, i, o, m, s, w)), (m, s)
    saturated = calls[0].result(program, result.memory)
    assert (np.abs(saturated.astype(int)) == 128).any() or (saturated == 127).any()      # int8 saturation hit


@pytest.mark.parametrize("out_shift, mode, match", [(32, "sum", "0..31"), (-1, "sum", "0..31"), (1.5, "sum", "0..31"),
                                                    (True, "sum", "0..31"), (3, "mean", "mode 'sum' or 'max'")])
def test_narrow_rejects_bad_input(out_shift, mode, match):
    with pytest.raises(ValueError, match=match):
        accelerator("golden").embedding_bag(np.ones((10, 4), np.int8), [0, 1, 2], [0, 2], mode, out_shift=out_shift)


def test_narrow_engine_random_stalls(seed):
    program, _ = _narrow_program(_narrow_cases(np.random.default_rng(seed)), SMALL.replace(mem_latency=3))
    out = run_engine(program, seed, stall_rate=0.3)
    print(f"replay: seed {seed}, stall rate 0.3")
    assert out["error"] == 0 and np.array_equal(out["memory"], execute(program).memory)


@pytest.mark.parametrize("backend", backend_params())
def test_narrow_on_backend(backend, seed):
    """Narrow GATHERs on the backend, and the driver's narrow table-batched call: both equal the oracle."""
    rng = np.random.default_rng(seed)
    cases = _narrow_cases(rng)
    program, calls = _narrow_program(cases)
    acc = accelerator(backend)
    result = acc.backend.run(program)
    assert result.error == 0 and np.array_equal(result.memory, execute(program).memory)
    tables, indices, offsets, weights = _tbe_case(rng)
    got = acc.embedding_bags(tables, indices, offsets, "sum", weights, out_shift=2)
    assert got.dtype == np.int8 and acc.last_run.instructions == 1
    for t, tab in enumerate(tables):
        off = np.append(offsets[t], len(indices[t]))
        assert np.array_equal(got[:, t], _narrow_oracle(tab, indices[t], off, "sum", 2, weights[t]))


@pytest.mark.parametrize("mode", ["sum", "max"])
def test_narrow_bag_larger_than_memory(mode, seed):
    """A bag too large for the accelerator memory runs as sub-bags combined at int32 on the host and
    only then narrowed: equal to the oracle, not to a sum of narrowed parts."""
    rng = np.random.default_rng(seed)
    table = rng.integers(-128, 128, (300, 16)).astype(np.int8)
    idx = rng.integers(0, 300, 9000)                       # 2250 index words: more than SMALL's 2048
    acc = accelerator("golden")
    got = acc.embedding_bag(table, idx, [0, 5], mode, out_shift=7)
    assert acc.last_run.programs > 1
    assert got.dtype == np.int8 and np.array_equal(got, _narrow_oracle(table, idx, np.array([0, 5, 9000]), mode, 7))


# -- every backend -----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", backend_params())
def test_bit_exact_and_counters_on_backend(backend, seed):
    rng = np.random.default_rng(seed)
    cases = _cases(rng)
    program, calls = _multi_program(cases, rng=rng)
    result = accelerator(backend).backend.run(program)
    golden = execute(program)
    assert result.error == 0 and np.array_equal(result.memory, golden.memory)
    for (t, i, o, m, w), call in zip(cases + cases[:1], calls):
        assert np.array_equal(call.result(program, result.memory), embedding_bag(t, i, o, m, per_sample_weights=w))
    expect = _golden_counters(program)
    assert expect["gather_bypasses"] > 0 and expect["gather_evictions"] > 0    # both policies exercised
    if backend != "golden":
        assert {k: result.counters[k] for k in expect} == expect
        assert result.counters["gather_busy"] > 0


@pytest.mark.parametrize("backend", backend_params())
def test_table_batch_on_backend(backend, seed):
    tables, indices, offsets, weights = _tbe_case(np.random.default_rng(seed))
    acc = accelerator(backend)
    got = acc.embedding_bags(tables, indices, offsets, "sum", weights)
    assert np.array_equal(got, accelerator("golden").embedding_bags(tables, indices, offsets, "sum", weights))


def _pooled(table, idx, off, mode):
    """What a GATHER returns: embedding_bag, or in mode copy the sum at the table's element width."""
    if mode == "copy":
        return embedding_bag(table, idx, off, "sum").astype(table.dtype)
    return embedding_bag(table, idx, off, mode)


@pytest.mark.parametrize("backend", backend_params())
def test_copy_mode_and_rowwise_tables_on_backend(backend, seed):
    """GATHER mode copy (wrapping sums at int8 / int32 width; one-row bags are the rows themselves, in
    the table's layout) and the FBGEMM rowwise tables it carries: bit-exact float32 with the host model."""
    rng = np.random.default_rng(seed)
    acc = accelerator(backend)
    t8 = rng.integers(-128, 128, (30, 20)).astype(np.int8)               # 2 words per row on SMALL
    t32 = rng.integers(-2 ** 31, 2 ** 31, (30, 3)).astype(np.int32)
    idx, off = rng.integers(0, 30, 12), np.array([0, 0, 1, 2, 7])       # an empty bag, sums that wrap
    builder = ProgramBuilder(SMALL)
    calls = [(t, emit_gather(builder, t, idx, off, "copy", name=f"c{n}_", cache_hints=n == 0)) for n, t in enumerate((t8, t32))]
    program = builder.build()
    result = acc.backend.run(program)
    assert result.error == 0 and np.array_equal(result.memory, execute(program).memory)
    for table, call in calls:
        got = call.result(program, result.memory)
        assert got.dtype == table.dtype and np.array_equal(got, _pooled(table, idx, off, "copy"))
    assert np.array_equal(calls[0][1].result(program, result.memory)[1:3], t8[idx[0:2]])    # one-row bags: the rows
    for bits, dim in ((8, 12), (4, 24)):
        q = quantize_rowwise(rng.standard_normal((25, dim)).astype(np.float32), bits)
        i, o = rng.integers(0, 25, 20), np.array([0, 4, 4, 19])
        for mode, w in (("sum", rng.standard_normal(20).astype(np.float32)), ("mean", None), ("max", None)):
            got = acc.embedding_bag_rowwise(q, bits, i, o, mode, w)
            assert np.array_equal(got.view(np.uint32), embedding_bag_rowwise(q, bits, i, o, mode, w).view(np.uint32))
            assert acc.last_run.gather_lookups == 20


@pytest.mark.parametrize("backend", backend_params())
def test_driver_and_hardware_errors_on_backend(backend):
    acc = accelerator(backend)
    table = np.arange(40, dtype=np.int8).reshape(10, 4)
    got = acc.embedding_bag(table, [9, 0, 9], [0, 0, 1], mode="max")
    assert np.array_equal(got, embedding_bag(table, [9, 0, 9], [0, 0, 1], mode="max"))
    with pytest.raises(IndexError):
        acc.embedding_bag(table, [0, 10], [0])
    programs = _bad_programs()
    for name in ("INDEX_RANGE", "BAD_OFFSETS"):
        program = programs[name][0]
        result = acc.backend.run(program)
        assert (result.error, result.error_pc) == (E[name], 1)
        assert np.array_equal(result.memory, execute(program).memory)
        with pytest.raises(AcceleratorError, match=name):
            acc.run(program)


@pytest.mark.parametrize("backend", backend_params())
def test_weighted_index_range_ends_on_backend(backend, seed):
    """The fuzzer's hang, by hand: a weighted GATHER with legal offsets, bypass hints and one index equal
    to rows stops with INDEX_RANGE at it and leaves memory as it was, bit for bit on every backend."""
    program = _tampered_gather(np.random.default_rng(seed), weighted=1, bad_index=6)
    result = accelerator(backend).backend.run(program)
    golden = execute(program)
    assert (golden.error, golden.error_pc) == (E["INDEX_RANGE"], 0)
    assert (result.error, result.error_pc) == (golden.error, golden.error_pc)
    assert np.array_equal(result.memory, golden.memory) and np.array_equal(result.memory, program.memory)


@pytest.mark.slow
def test_other_latency_on_verilator(seed):
    """One more HDL build: a long memory latency with a short prefetch queue."""
    config = SMALL.replace(mem_latency=9, prefetch_depth=2)
    rng = np.random.default_rng(seed)
    program, _ = _multi_program(_cases(rng), config, rng)
    result = accelerator("verilator", config).backend.run(program)
    assert result.error == 0 and np.array_equal(result.memory, execute(program).memory)
    expect = _golden_counters(program)
    assert {k: result.counters[k] for k in expect} == expect


# -- the mean divider alone --------------------------------------------------------------------------

def test_mean_divider_alone(seed):
    """MeanDivider against sign(s) * ((2|s| + n) // 2n) in Python integers: extremes and random lanes."""
    rng = np.random.default_rng(seed)
    dut = MeanDivider(4)
    cases = [([-(1 << 31), (1 << 31) - 1, 0, -1], 1), ([-(1 << 31), (1 << 31) - 1, 5, -5], (1 << 24) - 1),
             ([7, -7, 3, -3], 2), ([1, -1, 2, -2], 4)]
    cases += [(rng.integers(-(1 << 31), 1 << 31, 4).tolist(), int(rng.integers(1, 1 << 24))) for _ in range(8)]
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        for lanes, n in cases:
            assert ctx.get(dut.idle)
            for i, v in enumerate(lanes):
                ctx.set(dut.lanes[i], v)
            ctx.set(dut.count, n)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 0
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
            want = [(1 if v >= 0 else -1) * ((2 * abs(v) + n) // (2 * n)) for v in lanes]
            assert [ctx.get(dut.quotients[i]) for i in range(4)] == want, (lanes, n)
            ctx.set(dut.ack, 1)
            await ctx.tick()
            ctx.set(dut.ack, 0)

    sim.add_testbench(bench)
    sim.run()


# -- the check pass alone ----------------------------------------------------------------------------

def _check_case(rng, kind):
    """(offsets, indices, rows, n_indices): legal, or broken in one way (``kind``)."""
    rows, n = 50, int(rng.integers(1, 40))
    idx = rng.integers(0, rows, n) | (rng.random(n) < 0.3).astype(np.int64) << BYPASS_BIT   # hints are ignored
    off = np.sort(rng.integers(0, n + 1, int(rng.integers(1, 20))))
    off = np.concatenate([[0], off, [int(rng.integers(off[-1], n + 1))]])
    if kind == "index":
        idx[rng.integers(0, n)] = rows + int(rng.integers(0, 3))
    elif kind == "first":
        off[0] = 1
    elif kind == "decrease" and off.size > 2:
        i = int(rng.integers(1, off.size))
        off[i] = off[i - 1] - 1
    elif kind == "last":
        off[-1] = n + 1
    return off, idx, rows, n


@pytest.mark.parametrize("kind", ["legal", "index", "first", "decrease", "last"])
def test_check_pass_alone(kind, seed):
    """CheckPass under random gaps in both word streams: its verdicts and off[n_bags] equal the golden rules."""
    rng, rnd = np.random.default_rng(seed), random.Random(seed)
    cfg = SMALL
    dut = CheckPass(cfg)
    cases = [_check_case(rng, kind) for _ in range(4)]
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        for off, idx, rows, n in cases:
            offw, idxw = pack_int32(off, cfg.mem_width), pack_int32(idx, cfg.mem_width)
            ctx.set(dut.n_bags, off.size - 1); ctx.set(dut.n_indices, n); ctx.set(dut.rows, rows)
            ctx.set(dut.off_words, len(offw)); ctx.set(dut.idx_words, -(-n // (cfg.mem_width // 4)))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            queues = {dut.off: [int.from_bytes(w.tobytes(), "little") for w in offw],
                      dut.idx: [int.from_bytes(w.tobytes(), "little") for w in idxw][:-(-n // (cfg.mem_width // 4))]}
            for _ in range(1000):
                for port, words in queues.items():
                    ctx.set(port.valid, bool(words) and rnd.random() < 0.6)
                    ctx.set(port.payload, words[0] if words else 0)
                if not ctx.get(dut.off.ready) and not ctx.get(dut.idx.ready):
                    break
                for port, words in queues.items():
                    if words and ctx.get(port.valid) and ctx.get(port.ready):
                        words.pop(0)
                await ctx.tick()
            for port in queues:
                ctx.set(port.valid, 0)
            assert not any(queues.values()), "the pass stopped before taking every word"
            off_bad = off[0] != 0 or np.any(np.diff(off) < 0) or off[-1] > n
            idx_bad = np.any((idx & ((1 << BYPASS_BIT) - 1)) >= rows)
            assert (ctx.get(dut.off_bad), ctx.get(dut.idx_bad)) == (off_bad, idx_bad), (kind, off, idx)
            if not off_bad:
                assert ctx.get(dut.off_last) == off[-1]

    print(f"replay: TRIDSA_SEED={seed}")
    sim.add_testbench(bench)
    sim.run()


# -- the index prefetch queue alone ------------------------------------------------------------------

def test_index_queue_random_backpressure(seed):
    """Random gaps on the offsets/indices/weights streams and random ready on entries/reads: the entries
    and reads equal the golden cache's, in order, and a hit's slot is where its row was filled. A third
    of the indices carry the bypass hint: their misses are read but not allocated."""
    rnd = random.Random(seed)
    cfg = SMALL
    n_bags = 12
    lengths = [rnd.choice([0, 1, 2, 5, 9]) for _ in range(n_bags)]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    indices = [rnd.randrange(24) for _ in range(offsets[-1])]
    allocate = [rnd.random() < 0.67 for _ in indices]
    words = [row | (not alloc) << BYPASS_BIT for row, alloc in zip(indices, allocate)]
    weights = [rnd.randrange(-50, 50) & 0xFFFFFFFF for _ in indices]
    dut = IndexQueue(cfg)
    table_addr, row_words = 100, 2
    got_entries, got_reads, got_counters = [], [], {}

    async def source(stream, items, ctx):
        await ctx.tick().repeat(2)                      # after start
        for item in items:
            while rnd.random() < 0.4:
                await ctx.tick()
            ctx.set(stream.payload, item)
            ctx.set(stream.valid, 1)
            await ctx.tick().until(stream.ready)
            ctx.set(stream.valid, 0)

    async def sink(stream, into, count, ctx):
        while len(into) < count:
            ready = rnd.random() < 0.6
            ctx.set(stream.ready, ready)
            await ctx.tick()
        ctx.set(stream.ready, 0)

    n_entries = sum(max(1, n) for n in lengths)
    cache = RowCache(cfg.cache_sets, cfg.cache_ways)
    expect_misses = sum(not cache.access(r, a) for r, a in zip(indices, allocate))
    assert cache.bypasses > 0

    async def bench(ctx):
        ctx.set(dut.n_bags, n_bags)
        ctx.set(dut.weighted, 1)
        ctx.set(dut.table_addr, table_addr)
        ctx.set(dut.row_words, row_words)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)

    async def monitor(ctx):
        async for _, _, entries_valid, entries_ready, entry, reads_valid, reads_ready, read in ctx.tick().sample(
                dut.entries.valid, dut.entries.ready, dut.entries.payload, dut.reads.valid, dut.reads.ready,
                dut.reads.payload):
            if entries_valid and entries_ready:
                got_entries.append(entry)
            if reads_valid and reads_ready:
                got_reads.append((read.addr, read.count))
            if len(got_entries) == n_entries and len(got_reads) == expect_misses:
                got_counters.update({name: ctx.get(getattr(dut.counters, name)) for name in cache.counters()})
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(functools.partial(source, dut.offsets, offsets))
    sim.add_testbench(functools.partial(source, dut.indices, words))
    sim.add_testbench(functools.partial(source, dut.weights, weights))
    sim.add_testbench(functools.partial(sink, dut.entries, got_entries, n_entries))
    sim.add_testbench(functools.partial(sink, dut.reads, got_reads, expect_misses))
    sim.add_testbench(monitor)
    sim.run_until(1e-8 * 5000)
    assert len(got_entries) == n_entries and len(got_reads) == expect_misses
    assert got_counters == cache.counters()

    cache, slot_of, pos, reads = RowCache(cfg.cache_sets, cfg.cache_ways), {}, 0, iter(got_reads)
    entries = iter(got_entries)
    for length in lengths:
        if length == 0:
            e = next(entries)
            assert (e.empty, e.last) == (1, 1)
            continue
        for k in range(length):
            e = next(entries)
            row = indices[pos]
            hit = cache.access(row, allocate[pos])
            assert (e.empty, e.hit, e.first, e.last, e.weight) == (0, hit, k == 0, k == length - 1, weights[pos])
            assert e.bypass == (not hit and not allocate[pos])
            if hit:
                assert e.slot == slot_of[row]
            else:
                assert next(reads) == (table_addr + row * row_words, row_words)
                if allocate[pos]:
                    slot_of = {r: s for r, s in slot_of.items() if s != e.slot}
                    slot_of[row] = e.slot
            assert e.slot // cfg.cache_ways == row % cfg.cache_sets
            pos += 1


@pytest.mark.slow
def test_bench_hit_rates_rtl_counters_equal_the_cache_model():
    """bench gather's RTL hit-rate columns (one GATHER of the trace on Verilator) equal the NumPy cache
    model's for all three policies (plain LRU, hints of the same call, hints of the previous batch)."""
    from tridsa.benchmarks.bench_gather import hit_rate_table, hit_rates
    hits = hit_rates(SMALL, lookups=400, backend="verilator")
    for h in hits:
        assert [h[f"rtl_{k}"] for k in ("lru", "hinted", "hinted_prev")] == [h["lru"], h["hinted"], h["hinted_prev"]]
    table = hit_rate_table(hits, "verilator")
    assert "tridsa bench gather --publish" in table and "RTL previous batch" in table


def test_cache_hints_take_a_plan_of_an_earlier_batch():
    """``cache_hints`` may be a HotPlan (profiled on an earlier batch): same result, its hints in the
    counters; a plan of another table size is one clear error."""
    rng = np.random.default_rng(3)
    table = rng.integers(-128, 128, (40, 8)).astype(np.int8)
    idx, prev = rng.integers(0, 40, 60), rng.integers(0, 10, 60)
    off = np.arange(0, 60, 6)
    acc = accelerator("golden")
    plain = acc.embedding_bag(table, idx, off, cache_hints=False)
    plan = hot_plan(prev, 40, SMALL.cache_sets * SMALL.cache_ways)
    assert np.array_equal(acc.embedding_bag(table, idx, off, cache_hints=plan), plain)
    positions, allocate = plan.lookups(idx)
    from tridsa.sw.row_cache import simulate
    model = simulate(positions, SMALL.cache_sets, SMALL.cache_ways, allocate)
    assert acc.last_run.counters["gather_hits"] == model["hits"]
    with pytest.raises(ValueError, match="HotPlan of a 41-row table, the table has 40 rows"):
        acc.embedding_bag(table, idx, off, cache_hints=hot_plan(prev, 41, 8))
