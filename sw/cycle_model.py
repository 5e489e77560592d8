"""Cycle model of the accelerator: the cycles of every instruction, from its fields and the Config.

The golden backend reports ``cycles`` from this model (:func:`program_cycles`), so a whole network is
sized in seconds; the test suite checks it against the gateware's cycle counter on sampled layers of
every engine (``tests/test_cycle_model.py``). It models the gateware as it is: an instruction costs its
setup, pipeline fill, work and drain (:class:`Cost`); with ``Config.overlap`` a GEMM after a GEMM starts
when the previous one has fed its last k-step, so it hides the previous one's drain (:data:`GEMM_DRAIN_EXTRA`), unless it reads
what the previous one writes (then its reads wait for the last write); a GATHER and a GEMM run side by
side once the earlier one passed its checks, unless their regions meet, sharing the memory port; any other
instruction starts when the previous one is done (:func:`program_cycles`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..spec.gather_layout import MEAN_DIVIDE_STEPS
from ..spec.gemm_layout import FEED_STAGES, PARAM_WORDS, PE_LATENCY, GemmGeometry, readout_stages

__all__ = ["Cost", "gemm_fixed_cycles", "estimate_gemm_cycles", "gemm_cost", "gather_cost", "rng_cost",
           "sketch_cost", "instruction_cost", "program_cycles", "gemm_drain_cycles", "DISPATCH_CYCLES", "PROGRAM_CYCLES",
           "GEMM_DRAIN_EXTRA", "GEMM_SETUP"]


@dataclasses.dataclass(frozen=True)
class Cost:
    """Cycles of one instruction and the memory words it reads and writes (the engines' port traffic).

    ``drain``: the last cycles a next instruction of the same engine overlaps (0: none); ``inputs`` and
    ``output``: the ``[start, end)`` word regions the next one's reads wait on (inputs it reads while the
    previous one drains; the output the previous one writes then). ``engine``: the engine's name when it
    runs side by side with the other (``Config.overlap``, a GATHER and a GEMM; "" otherwise), ``checked``
    the cycles until an instruction beside it may start, ``read_regions``/``write_regions`` every region it
    reads and writes (the hazard check between the two).
    """
    cycles: int
    reads: int
    writes: int
    drain: int = 0
    inputs: tuple = ()
    output: tuple = ()
    engine: str = ""
    checked: int = 0
    read_regions: tuple = ()
    write_regions: tuple = ()

#: Cycles the dispatcher spends between two instructions, and once per Program (first fetch, HALT).
DISPATCH_CYCLES = 0
PROGRAM_CYCLES = 0
#: Cycles of a GEMM's drain (after its last k-step is fed) beyond the array skew, the PE, readout and
#: requant pipelines, fitted to the gateware; and the setup cycles of a GEMM before its reads start.
GEMM_DRAIN_EXTRA, GEMM_SETUP = 4, 5


# ---- GEMM -----------------------------------------------------------------------------------------
def gemm_fixed_cycles(config) -> int:
    """Cycles a GEMM instruction costs beyond its tiles: array skew, read latency, the MAC, array readout
    (``readout_stages``) and requant pipelines (``config.requant_latency``) plus 14 cycles of setup states,
    skid buffers, stream hand-offs and the last write, fitted to the gateware."""
    return (config.rows + config.cols + config.mem_latency + FEED_STAGES + PE_LATENCY + readout_stages(config.rows)
            + config.requant_latency + 14)


def estimate_gemm_cycles(config, m, k, n, int4=False, out_format=1, batch=1, accumulate=False) -> int:
    """Cycles of one (batched) GEMM instruction on the gateware.

    Each tile after the first takes the longest of: its k-rows, the array's minimum tile time
    (``max(rows, cols) + 1``), the requant time of its rows and the memory words it moves (one per
    cycle: A and B blocks, its output, in accumulate mode its int32 partial sums), the last two with a
    tile's share of its column block's parameter load; plus a fixed cost per instruction and one setup
    cycle per bit of ``batch`` if it is > 1.
    """
    geo = GemmGeometry(config, m, k, n, int4, out_format)
    params = PARAM_WORDS / geo.mt                       # parameter words per tile
    partials = GemmGeometry(config, m, k, n, int4, 0).tile_words if accumulate else 0
    words = geo.a_block_words + geo.b_block_words + geo.tile_words + partials + params
    chunks = config.cols // config.lanes_requant
    values = config.rows * chunks                       # requant inputs per tile
    requant = values * config.requant_interval
    if config.requant_interval == 1:
        requant += params               # the parameter load stalls a pipelined unit; a serial one hides it
    tile = max(geo.k_rows, max(config.rows, config.cols) + 1, requant, words)
    # The last tile's requant inputs leave the unit one interval apart (the fixed cost counts its rows at one
    # per cycle and the unit's latency once), and a chunked unit reassembles a row in one more register.
    drain = (values - 1) * (config.requant_interval - 1) + values - config.rows + (chunks > 1)
    scale = batch.bit_length() if batch > 1 else 0
    fixed = gemm_fixed_cycles(config) + scale + drain
    return round(fixed + geo.k_rows + (max(1, batch) * geo.mt * geo.nt - 1) * tile)


def gemm_cost(fields: dict, config, memory=None) -> Cost:
    """Cost of a GEMM instruction from its fields (every tile reads its A and B blocks, and its partial
    sums in accumulate mode; every column block its parameters)."""
    accumulate = bool(fields["accumulate"])
    geo = GemmGeometry(config, fields["m"], fields["k"], fields["n"], bool(fields["int4"]), fields["out_format"])
    batch = max(1, fields["batch"])
    partials = GemmGeometry(config, geo.m, geo.k, geo.n, geo.int4, 0).tile_words if accumulate else 0
    tiles = batch * geo.mt * geo.nt
    reads = tiles * (geo.a_block_words + geo.b_block_words + partials) + batch * geo.p_words
    cycles = estimate_gemm_cycles(config, geo.m, geo.k, geo.n, geo.int4, geo.out_format, batch, accumulate)
    c_words = batch * (GemmGeometry(config, geo.m, geo.k, geo.n, geo.int4, 0).c_words if accumulate else geo.c_words)
    inputs = ((fields["a_addr"], fields["a_addr"] + batch * geo.a_words),
              (fields["b_addr"], fields["b_addr"] + batch * geo.b_words))
    output = ((fields["c_addr"], fields["c_addr"] + c_words),)
    p_region = (fields["p_addr"], fields["p_addr"] + batch * geo.p_words)
    return Cost(cycles, reads, tiles * geo.tile_words, gemm_drain_cycles(config) if config.overlap else 0, inputs,
                output, _side_engine(config, "gemm"), GEMM_SETUP, inputs + (p_region,) + (output if accumulate else ()),
                output)


def _side_engine(config, name) -> str:
    """``name`` if the engine runs side by side with the other (sw twin of ``hw.engine_port.side_by_side``)."""
    return name if config.overlap and {"gemm", "gather"} <= set(config.engines) else ""


def gemm_drain_cycles(config) -> int:
    """Cycles of a GEMM after its last k-step is fed: array skew, PE, readout and requant pipelines, last write."""
    return config.rows + config.cols + PE_LATENCY + readout_stages(config.rows) + config.requant_latency + GEMM_DRAIN_EXTRA


# ---- GATHER ---------------------------------------------------------------------------------------
#: Fitted constants of the GATHER model (:func:`gather_cost`): fixed cycles of a pool-bound and of a
#: port-bound GATHER, cycles from a miss's lookup to its first row word beyond the memory latency, and
#: from a hit's lookup to its first word.
GATHER_FIXED, GATHER_PORT_FIXED, GATHER_MISS_EXTRA, GATHER_HIT_LATENCY = 18, 8, 9, 0
#: The two paths share the memory port (round robin: a miss's row read waits behind output words and index
#: reads), so a GATHER whose paths take about as long is slower than either: their ``GATHER_NORM``-norm,
#: fitted on 212 sampled GATHERs (dims 32-128, pooling 1-100, every mode; |error| mean 0.6%, max 3.3%).
GATHER_NORM = 12
#: Cycles the gather engine's mean divider spends per output word: its steps and two to hand the word on.
MEAN_WORD_CYCLES = MEAN_DIVIDE_STEPS + 2
#: Cycles of a GATHER's setup and check pass beyond its memory latency and its offset/index words: when
#: a GEMM beside it may start.
GATHER_CHECK = 6
#: Cycles that one memory word of an instruction beside it costs the one that ends later (most of their
#: words meet a cycle the other does not use the port), fitted to the gateware.
SIDE_PORT_SHARE = 0.5


def pooling_cycles(hits, offsets, row_words: int, out_cycles: int, config) -> int:
    """Cycles the pooling unit needs for a GATHER's lookups, in order: the index queue looks one index up
    per cycle, at most ``prefetch_depth`` entries ahead of the pooling unit; a miss's row arrives
    ``mem_latency + GATHER_MISS_EXTRA`` cycles after its lookup, a hit's line ``GATHER_HIT_LATENCY``
    cycles after; the pooling unit takes ``row_words`` cycles per row. Empty bags count as an entry. A
    finished bag waits for the output buffer, which spends ``out_cycles`` on every bag."""
    depth = config.prefetch_depth
    miss, hit = config.mem_latency + GATHER_MISS_EXTRA, GATHER_HIT_LATENCY
    lengths = np.diff(offsets)
    entries = np.repeat(np.where(lengths == 0, 2, 0), np.maximum(lengths, 1))     # 2: an empty bag's entry
    entries[np.repeat(lengths > 0, np.maximum(lengths, 1))] = hits.astype(np.int64)
    ends = np.zeros(len(entries), bool)
    ends[np.cumsum(np.maximum(lengths, 1)) - 1] = True                             # an entry that ends a bag
    done = np.zeros(len(entries))
    issue = finish = out_free = 0.0
    for i, (kind, end) in enumerate(zip(entries.tolist(), ends.tolist())):
        issue = max(issue + 1, done[i - depth] if i >= depth else 0.0)
        start = max(finish, issue + (miss if kind == 0 else hit))
        finish = start + (row_words if kind != 2 else 1)
        if end:                  # the bag moves to the output buffer when its previous bag has left
            finish = max(finish, out_free)
            out_free = finish + out_cycles
        done[i] = finish
    return int(max(finish, out_free))


def gather_cost(fields: dict, config, memory) -> Cost:
    """Cost of a legal GATHER: about the longer of the pooling path (a fixed cost, the check pass's offset
    and index words, then the pooling unit and output buffer: :func:`pooling_cycles`) and the memory
    port's words (offsets and indices twice, weights, missed rows, output words) plus a smaller fixed
    cost (:data:`GATHER_NORM` combines them). Fitted on the default Config (tests/test_cycle_model.py)."""
    from ..spec.gather_layout import int32_words, out_words, row_words
    from .gather_golden import _trace
    from .row_cache import simulate_hits
    rw = row_words(config, fields["dim"], fields["dtype"])
    ow = out_words(config, fields["dim"], fields["dtype"], fields["mode"], fields["narrow"])
    rows, allocate, offsets = _trace(memory, fields)
    hits, counters = simulate_hits(rows, config.cache_sets, config.cache_ways, allocate)
    off_words, idx_words = int32_words(config, fields["n_bags"] + 1), int32_words(config, fields["n_indices"])
    main_idx = int32_words(config, rows.size) * (1 + fields["weighted"])
    writes = fields["n_bags"] * ow
    reads = 2 * off_words + idx_words + main_idx + counters["misses"] * rw
    out_cycles = ow * (MEAN_WORD_CYCLES if fields["mode"] == 1 else 1)
    pooled = GATHER_FIXED + off_words + idx_words + pooling_cycles(hits, offsets, rw, out_cycles, config)
    port = GATHER_PORT_FIXED + reads + writes
    reads_at = [(fields["table_addr"], fields["table_addr"] + fields["rows"] * rw),
                (fields["idx_addr"], fields["idx_addr"] + idx_words), (fields["off_addr"], fields["off_addr"] + off_words)]
    if fields["weighted"]:
        reads_at.append((fields["w_addr"], fields["w_addr"] + idx_words))
    checked = GATHER_CHECK + config.mem_latency + max(off_words, idx_words)
    return Cost(round((pooled ** GATHER_NORM + port ** GATHER_NORM) ** (1 / GATHER_NORM)), reads, writes,
                engine=_side_engine(config, "gather"), checked=checked, read_regions=tuple(reads_at),
                write_regions=((fields["out_addr"], fields["out_addr"] + writes),))


# ---- RNG / SKETCH ---------------------------------------------------------------------------------
#: Fitted fixed costs of RNG and SKETCH (setup, Philox pipeline fill, last write).
RNG_FIXED, SKETCH_FIXED = 19, 33


def rng_cost(fields: dict, config, memory=None) -> Cost:
    """Cycles of an RNG: a fixed cost, then one Philox beat per cycle or one written word per cycle."""
    from .sketch_ops import RngGeometry
    geo = RngGeometry(config, fields["n"])
    return Cost(RNG_FIXED + max(geo.beats, geo.words), 0, geo.words)


def sketch_cost(fields: dict, config, memory=None) -> Cost:
    """Cycles of a SKETCH: a fixed cost (with the last tile's write), the first tile's K rows (one per cycle),
    then every further tile's K rows or, if longer, the previous tile's write (it drains while the next
    tile accumulates)."""
    from .sketch_ops import SketchGeometry
    geo = SketchGeometry(config, fields["m"], fields["K"], fields["k"])
    tiles = geo.mt * geo.nct
    fixed = SKETCH_FIXED + geo.p_words + config.mem_latency          # with the parameter block's load
    return Cost(fixed + geo.K + (tiles - 1) * max(geo.K, geo.tile_words),
                tiles * geo.a_block_words + geo.p_words, geo.y_words)


#: op name -> function(fields, config, memory before the instruction) -> Cost of a legal instruction.
MODELS = {"GEMM": gemm_cost, "GATHER": gather_cost, "RNG": rng_cost, "SKETCH": sketch_cost}


def instruction_cost(op: str, fields: dict, config, memory) -> Cost:
    """Cost of one legal instruction (``memory``: the image it starts on; GATHER's cache needs the indices)."""
    return MODELS[op](fields, config, memory)


def _meets(regions, others) -> bool:
    return any(start < other_end and other_start < end for start, end in regions for other_start, other_end in others)


def _hazard(cost: Cost, other: Cost) -> bool:
    """A read-after-write, write-after-read or write-after-write between two instructions' regions."""
    return (_meets(cost.read_regions, other.write_regions) or _meets(cost.write_regions, other.read_regions)
            or _meets(cost.write_regions, other.write_regions))


def program_cycles(instruction_costs) -> int:
    """The cycle counter of a Program whose instructions cost ``instruction_costs`` (:class:`Cost`, in order).

    An instruction with a ``drain`` after one with a ``drain`` (GEMM after GEMM) starts when the previous
    one enters its drain, or, if it reads the previous one's output, ``GEMM_SETUP`` cycles before the
    previous one is done (its setup overlaps, its reads wait); it is done after the previous one of its
    engine. An instruction on the engine beside the previous one's (both with an ``engine``) starts when
    the previous one passed its checks and its own engine is done, and waits for every instruction of the
    other engine whose regions meet its own (a hazard). The two share the memory port: of two that run
    side by side, the one that ends later ends later by ``SIDE_PORT_SHARE`` of the other's memory words in
    their common cycles.
    """
    end = fed = 0                     # when the previous instruction is done, and enters its drain
    previous = None
    runs = []                         # [engine, start, end, words] of every instruction so far
    engine_end = {}
    for cost in instruction_costs:
        start = end + (DISPATCH_CYCLES if previous else 0)
        if previous is not None and previous.drain and cost.drain:
            start = fed
            if _meets(cost.inputs, previous.output):
                start = max(fed, end - GEMM_SETUP)
        elif previous is not None and cost.engine and previous.engine and cost.engine != previous.engine:
            start = max(runs[-1][1] + previous.checked, engine_end.get(cost.engine, 0))
        beside = [run for run in runs if cost.engine and run[0] and run[0] != cost.engine and run[2] > start]
        for run in beside:
            if _hazard(cost, run[4]):
                start = max(start, run[2])
        finish = max(start + cost.cycles, engine_end.get(cost.engine, 0) + 1)
        fed = finish - cost.drain
        words = cost.reads + cost.writes
        for run in beside:            # the memory port's words of the other in the common cycles
            if run[2] <= start:
                continue
            if finish >= run[2]:
                finish += round(SIDE_PORT_SHARE * run[3] * (run[2] - start) / max(1, run[2] - run[1]))
            else:
                run[2] += round(SIDE_PORT_SHARE * words)
                engine_end[run[0]] = max(engine_end[run[0]], run[2])
                end = max(end, run[2])
        runs.append([cost.engine, start, finish, words, cost])
        engine_end[cost.engine] = finish
        end = max(end, finish)
        previous = cost
    return PROGRAM_CYCLES + end
