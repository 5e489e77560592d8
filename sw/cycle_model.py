"""Cycle model of the accelerator: the cycles of every instruction, from its fields and the Config.

The golden backend reports ``cycles`` from this model (:func:`program_cycles`), so a whole network is
sized in seconds; the test suite checks it against the gateware's cycle counter on sampled layers of
every engine (``tests/test_cycle_model.py``). It models the gateware as it is: an instruction costs its
setup, pipeline fill, work and drain (:class:`Cost`); with ``Config.overlap`` a GEMM after a GEMM starts
when the previous one has fed its last k-step, so it hides the previous one's drain (:data:`GEMM_DRAIN_EXTRA`) as far
as the memory port and the requant unit allow, unless it reads what the previous one writes (then its reads
wait for the last write); a GATHER and a GEMM run side by
side once the earlier one passed its checks, unless their regions meet, sharing the memory port; any other
instruction starts when the previous one is done (:func:`program_cycles`).
"""
from __future__ import annotations

import dataclasses

from ..spec.gather_layout import MEAN_DIVIDE_STEPS
from ..spec.gemm_layout import FEED_STAGES, PARAM_WORDS, PE_LATENCY, GemmGeometry, min_tile_cycles, readout_stages, row_skew
from .gemm_compact_timing import compact_gemm_cycles, compact_gemm_traffic

__all__ = ["Cost", "gemm_fixed_cycles", "estimate_gemm_cycles", "gemm_compute_cycles", "gemm_port_cycles", "gemm_port_time",
           "gemm_lead_cycles", "gemm_cost", "gather_cost", "rng_cost",
           "sketch_cost", "instruction_cost", "program_cycles", "gemm_drain_cycles", "DISPATCH_CYCLES", "PROGRAM_CYCLES",
           "GEMM_DRAIN_EXTRA", "GEMM_SETUP", "GEMM_PORT_OVERLAP", "side_speeds"]


@dataclasses.dataclass(frozen=True)
class Cost:
    """Cycles of one instruction and the memory words it reads and writes (the engines' port traffic).

    ``drain``: the last cycles a next instruction of the same engine overlaps (0: none); ``inputs`` and
    ``output``: the ``[start, end)`` word regions the next one's reads wait on (inputs it reads while the
    previous one drains; the output the previous one writes then). ``engine``: the engine's name when it
    runs side by side with the other (``Config.overlap``, a GATHER and a GEMM; "" otherwise), ``checked``
    the cycles until an instruction beside it may start, ``read_regions``/``write_regions`` every region it
    reads and writes (the hazard check between the two). ``port``: the cycles its memory port's words take
    and, of those, the idle ones of its fill and its tail (a GEMM: :func:`gemm_port_time`), which an
    overlapped GEMM's words fill; ``lead``: the cycles a GEMM runs before its rows need the requant unit
    (:func:`gemm_lead_cycles`: of the previous one's drain it hides at most these).
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
    port: tuple = (0, 0, 0)
    lead: int = 0

#: Cycles the dispatcher spends between two instructions, and once per Program (first fetch, HALT).
DISPATCH_CYCLES = 0
PROGRAM_CYCLES = 0
#: Cycles of a GEMM's drain (after its last k-step is fed) beyond the array skew, the PE, readout and
#: requant pipelines, fitted to the gateware; and the setup cycles of a GEMM before its reads start.
GEMM_DRAIN_EXTRA, GEMM_SETUP = 4, 5


# ---- GEMM -----------------------------------------------------------------------------------------
def _row_cycles(config) -> int:
    """Cycles from a tile's first row leaving the array to its last, plus one: a row per cycle and a cycle per
    register on the links between row groups (``Config.row_group``), which a requant unit that takes more
    than a cycle per row hides (its rows queue)."""
    per_row = config.cols // config.lanes_requant * config.requant_interval
    return (row_skew(config.rows - 1, config.row_group) if per_row == 1 else config.rows - 1) + 1


def gemm_fixed_cycles(config) -> int:
    """Cycles a GEMM instruction costs beyond its tiles: array skew, read latency, the MAC, array readout
    (``readout_stages``) and requant pipelines (``config.requant_latency``) plus 14 cycles of setup states,
    skid buffers, stream hand-offs and the last write, fitted to the gateware."""
    return (_row_cycles(config) + config.cols + config.mem_latency + FEED_STAGES + PE_LATENCY + readout_stages(config.rows)
            + config.requant_latency + 14)


def estimate_gemm_cycles(config, m, k, n, int4=False, out_format=1, batch=1, accumulate=False) -> int:
    """Cycles of one (batched) GEMM instruction on the gateware: the longer of its compute path
    (:func:`gemm_compute_cycles`) and its memory port's words (:func:`gemm_port_cycles`)."""
    geo = GemmGeometry(config, m, k, n, int4, out_format)
    batch = max(1, batch)
    return max(gemm_compute_cycles(config, geo, batch), gemm_port_cycles(config, geo, batch, accumulate))


def _batch_setup(batch) -> int:
    """Setup cycles of the batch: one per bit of ``batch`` if it is > 1 (the SCALE state)."""
    return batch.bit_length() if batch > 1 else 0


def gemm_compute_cycles(config, geo, batch) -> int:
    """Cycles of a GEMM whose array or requant unit sets its pace: each tile after the first takes the
    longest of its k-rows, the array's minimum tile time (``min_tile_cycles``) and the requant time of
    its rows with a tile's share of its column block's parameter load; plus a fixed cost per instruction
    and the batch's setup."""
    params = PARAM_WORDS / geo.mt                       # parameter words per tile
    chunks = config.cols // config.lanes_requant
    values = config.rows * chunks                       # requant inputs per tile
    requant = values * config.requant_interval
    if config.requant_interval == 1:
        requant += params               # the parameter load stalls a pipelined unit; a serial one hides it
    tile = max(geo.k_rows, min_tile_cycles(config.rows, config.cols, config.row_group), requant)
    # The last tile's requant inputs leave the unit one interval apart (the fixed cost counts its rows at one
    # per cycle and the unit's latency once), and a chunked unit reassembles a row in one more register.
    drain = (values - 1) * (config.requant_interval - 1) + values - config.rows + (chunks > 1)
    fixed = gemm_fixed_cycles(config) + _batch_setup(batch) + drain
    return round(fixed + geo.k_rows + (batch * geo.mt * geo.nt - 1) * tile)


#: A GEMM whose tiles move more memory words than they compute (int32 outputs or partial sums with a short
#: K) keeps the memory port busy from its first read to its last write: its A/B readers run ahead of the
#: array as far as their credits and the row FIFO allow, and fill the port's free cycles. It costs its words
#: plus the port's idle cycles (:func:`gemm_port_cycles`), fitted to the gateware on ``Config()``: the
#: setup before the first read and the last write (``GEMM_PORT_FIXED``); the fill, while the first tiles'
#: k-rows run before the first write (``GEMM_PORT_FILL_K`` per k-row beyond 8, less ``GEMM_PORT_FILL_A``
#: per A block word beyond the first: the readers read more ahead); the parameter load of every column
#: block pauses the requant unit and leaves the port idle where no read fills it, wholly in the column
#: blocks requantized after the last read (``GEMM_PORT_TAIL`` cycles over the row blocks), in the steady
#: state a share that falls with the A block's words (readers with longer blocks have reads pending).
#: With one row block (every tile a column block: the requant unit's parameter pause in every tile) and
#: in accumulate mode (the partial sums' reader fills the pauses) the port idles
#: ``GEMM_PORT_ONE_ROW_BLOCK`` and ``GEMM_PORT_ACCUMULATE`` cycles in all.
GEMM_PORT_FIXED, GEMM_PORT_FILL_K, GEMM_PORT_FILL_A, GEMM_PORT_TAIL = 11, 1.5, 2, 16
GEMM_PORT_ONE_ROW_BLOCK, GEMM_PORT_ACCUMULATE = 19, 13
#: Of ``GEMM_PORT_ONE_ROW_BLOCK``, the idle cycles of the last column blocks (after the last read).
GEMM_PORT_ONE_ROW_BLOCK_TAIL = 6
#: A GEMM started after a GEMM runs ``GEMM_LEAD_FIXED`` cycles and at most ``GEMM_LEAD_TILES`` tiles ahead
#: of the requant unit (:func:`gemm_lead_cycles`).
GEMM_LEAD_FIXED, GEMM_LEAD_TILES = 2, 3
#: Cycles of a GEMM's port time that overlap the previous GEMM's (``Config.overlap``) beyond the idle
#: cycles of its fill and of the previous one's tail, which the other's words fill: the next one's reads
#: start no earlier (:func:`program_cycles`), fitted to the gateware.
GEMM_PORT_OVERLAP = 4


def gemm_port_cycles(config, geo, batch, accumulate=False) -> int:
    """Cycles of a GEMM whose memory port sets its pace: one per word it reads or writes (A and B blocks,
    parameters, outputs, in accumulate mode the partial sums) plus the port's idle cycles (see
    ``GEMM_PORT_FIXED``) and the batch's setup."""
    return gemm_port_time(config, geo, batch, accumulate)[0]


def gemm_port_time(config, geo, batch, accumulate=False) -> tuple:
    """``(cycles, fill, tail)``: :func:`gemm_port_cycles` and, of its idle cycles, those of its fill and of
    its last column blocks (the words of a GEMM before or after it on the port fill them)."""
    blocks = batch * geo.nt                             # column blocks: one parameter load each
    partials = GemmGeometry(config, geo.m, geo.k, geo.n, geo.int4, 0).tile_words if accumulate else 0
    words = (batch * geo.mt * geo.nt * (geo.a_block_words + geo.b_block_words + geo.tile_words + partials)
             + blocks * PARAM_WORDS)
    fill = tail = 0.0
    if accumulate:
        idle = GEMM_PORT_ACCUMULATE
    elif geo.mt == 1:
        idle, tail = GEMM_PORT_ONE_ROW_BLOCK, GEMM_PORT_ONE_ROW_BLOCK_TAIL
    else:
        a_words, k_rows = min(geo.a_block_words, 4), min(geo.k_rows, 16)
        fill = GEMM_PORT_FILL_K * max(0, k_rows - 8) - GEMM_PORT_FILL_A * (a_words - 1)
        tail = GEMM_PORT_TAIL / geo.mt
        idle = GEMM_PORT_FIXED + fill + tail + max(0.0, 1 - (a_words - 1) / 2) * blocks
    return round(words + idle + _batch_setup(batch)), max(0.0, fill), tail


def gemm_cost(fields: dict, config, memory=None) -> Cost:
    """Cost of a GEMM instruction from its fields (every tile reads its A and B blocks, and its partial
    sums in accumulate mode; every column block its parameters)."""
    if config.gemm_engine == "compact":
        shape = fields["m"], fields["k"], fields["n"]
        return Cost(compact_gemm_cycles(config, *shape, batch=fields["batch"]),
                    *compact_gemm_traffic(config, *shape, fields["out_format"], batch=fields["batch"]))
    accumulate = bool(fields["accumulate"])
    geo = GemmGeometry(config, fields["m"], fields["k"], fields["n"], bool(fields["int4"]), fields["out_format"])
    batch = max(1, fields["batch"])
    partials = GemmGeometry(config, geo.m, geo.k, geo.n, geo.int4, 0).tile_words if accumulate else 0
    tiles = batch * geo.mt * geo.nt
    reads = tiles * (geo.a_block_words + geo.b_block_words + partials) + batch * geo.p_words
    port = gemm_port_time(config, geo, batch, accumulate)
    cycles = max(gemm_compute_cycles(config, geo, batch), port[0])
    c_words = batch * (GemmGeometry(config, geo.m, geo.k, geo.n, geo.int4, 0).c_words if accumulate else geo.c_words)
    inputs = ((fields["a_addr"], fields["a_addr"] + batch * geo.a_words),
              (fields["b_addr"], fields["b_addr"] + batch * geo.b_words))
    output = ((fields["c_addr"], fields["c_addr"] + c_words),)
    p_region = (fields["p_addr"], fields["p_addr"] + batch * geo.p_words)
    return Cost(cycles, reads, tiles * geo.tile_words, gemm_drain_cycles(config) if config.overlap else 0, inputs,
                output, _side_engine(config, "gemm"), GEMM_SETUP, inputs + (p_region,) + (output if accumulate else ()),
                output, port, gemm_lead_cycles(config, geo, batch))


def gemm_lead_cycles(config, geo, batch=1) -> int:
    """Cycles a GEMM started after a GEMM (``Config.overlap``) runs before its rows need the requant unit,
    which the previous one's rows hold until it is done: ``GEMM_LEAD_FIXED`` and at most
    ``GEMM_LEAD_TILES`` of its tiles (of its k-rows or the array's minimum tile time each; the row FIFO
    holds their rows), fitted to the gateware."""
    tile = max(geo.k_rows, min_tile_cycles(config.rows, config.cols, config.row_group))
    return GEMM_LEAD_FIXED + min(batch * geo.mt * geo.nt, GEMM_LEAD_TILES) * tile


def _side_engine(config, name) -> str:
    """``name`` if the engine runs side by side with the other (sw twin of ``hw.engine_port.side_by_side``)."""
    return name if config.overlap and {"gemm", "gather"} <= set(config.engines) else ""


def gemm_drain_cycles(config) -> int:
    """Cycles of a GEMM after its last k-step is fed: array skew, PE, readout and requant pipelines, last write."""
    return _row_cycles(config) + config.cols + PE_LATENCY + readout_stages(config.rows) + config.requant_latency + GEMM_DRAIN_EXTRA


# ---- GATHER ---------------------------------------------------------------------------------------
#: Cycles of a GATHER outside its check and main passes (its three setup states, the last state, the
#: dispatcher's retire and halt), fitted to the gateware.
GATHER_FIXED = 6
#: Cycles of a GATHER's setup states: with its check pass, when a GEMM beside it may start.
GATHER_CHECK = 3
#: Cycles the gather engine's mean divider spends per output word: its steps and two to hand the word on.
MEAN_WORD_CYCLES = MEAN_DIVIDE_STEPS + 2
#: Two instructions side by side share the memory port (the top level's round robin): while their
#: demands (words per cycle) exceed the port's one word per cycle, the one demanding less gets its demand
#: up to half the port, the other the rest (:func:`side_speeds`). Where they meet, each also loses
#: ``SIDE_MEET`` cycles (their first reads collide) and ``SIDE_COLLISION`` cycles per common cycle of the
#: smaller demand; fitted to the gateware (GEMM/GATHER pairs and triples on Config() and SMALL).
SIDE_MEET, SIDE_COLLISION = 8, 0.02


def side_speeds(demand_a: float, demand_b: float) -> tuple:
    """Speeds (1: as alone) of two instructions side by side whose memory words per cycle alone are
    ``demand_a`` and ``demand_b``: a max-min fair share of the port's one word per cycle."""
    if demand_a + demand_b <= 1 or not demand_a or not demand_b:
        return 1.0, 1.0
    share_a = min(demand_a, 0.5) if demand_a <= demand_b else 1 - min(demand_b, 0.5)
    return min(1.0, share_a / demand_a), min(1.0, (1 - share_a) / demand_b)


def gather_cost(fields: dict, config, memory) -> Cost:
    """Cost of a legal GATHER: its engine stepped cycle by cycle (:func:`tridsa.sw.gather_timing.simulate_gather`,
    with the row cache's hits of :mod:`tridsa.sw.row_cache`) plus :data:`GATHER_FIXED`; a GEMM beside it may
    start once its check pass is done."""
    from ..spec.gather_layout import int32_words, out_words, row_words
    from .gather_golden import _trace
    from .gather_timing import simulate_gather
    from .row_cache import simulate_hits
    rw = row_words(config, fields["dim"], fields["dtype"])
    ow = out_words(config, fields["dim"], fields["dtype"], fields["mode"], fields["narrow"])
    rows, allocate, offsets = _trace(memory, fields)
    hits, counters = simulate_hits(rows, config.cache_sets, config.cache_ways, allocate)
    off_words, idx_words = int32_words(config, fields["n_bags"] + 1), int32_words(config, fields["n_indices"])
    main_idx = int32_words(config, rows.size) * (1 + fields["weighted"])
    writes = fields["n_bags"] * ow
    reads = 2 * off_words + idx_words + main_idx + counters["misses"] * rw
    timing = simulate_gather(hits, offsets, rw, ow, fields["mode"] == 1, bool(fields["weighted"]),
                             fields["n_indices"], config)
    reads_at = [(fields["table_addr"], fields["table_addr"] + fields["rows"] * rw),
                (fields["idx_addr"], fields["idx_addr"] + idx_words), (fields["off_addr"], fields["off_addr"] + off_words)]
    if fields["weighted"]:
        reads_at.append((fields["w_addr"], fields["w_addr"] + idx_words))
    return Cost(GATHER_FIXED + timing.done, reads, writes, engine=_side_engine(config, "gather"),
                checked=GATHER_CHECK + timing.main, read_regions=tuple(reads_at),
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
    one enters its drain, but no earlier than its ``lead`` before the previous one is done, nor than the
    port has moved the previous one's words (``port``; the two share ``GEMM_PORT_OVERLAP`` cycles and the
    idle ones of the previous one's tail and its own fill); if it reads the previous one's output,
    ``GEMM_SETUP`` cycles before the previous one is done (its setup overlaps, its reads wait). It is done
    after the previous one of its engine. An instruction on the engine beside the previous one's (both with
    an ``engine``) starts when
    the previous one passed its checks and its own engine is done, and waits for every instruction of the
    other engine whose regions meet its own (a hazard). The two share the memory port: while both run,
    each runs at its :func:`side_speeds` and loses ``SIDE_MEET`` cycles plus ``SIDE_COLLISION`` per common
    cycle of the smaller demand; the one left runs as alone.
    """
    end = fed = port_end = 0          # when the previous instruction is done, enters its drain, ends its port time
    previous = None
    runs = []                         # [engine, start, end, cost] of every instruction so far
    engine_end = {}
    for cost in instruction_costs:
        start = end + (DISPATCH_CYCLES if previous else 0)
        chained = previous is not None and previous.drain and cost.drain
        if chained:
            # its reads wait for the port, busy with the previous one's words but for the idle cycles of the
            # previous one's tail and its own fill
            start = max(fed, end - cost.lead, port_end - round(GEMM_PORT_OVERLAP + previous.port[2] + cost.port[1]))
            if _meets(cost.inputs, previous.output):
                start = max(start, end - GEMM_SETUP)
        elif previous is not None and cost.engine and previous.engine and cost.engine != previous.engine:
            start = max(runs[-1][1] + previous.checked, engine_end.get(cost.engine, 0))
        beside = [run for run in runs if cost.engine and run[0] and run[0] != cost.engine and run[2] > start]
        for run in beside:
            if _hazard(cost, run[3]):
                start = max(start, run[2])
        port_end = start + cost.port[0]
        finish = max(start + cost.cycles, engine_end.get(cost.engine, 0) + 1)
        demand = (cost.reads + cost.writes) / max(1, cost.cycles)
        for run in beside:            # both run from start until the first is done, sharing the port
            if run[2] <= start:
                continue
            other = (run[3].reads + run[3].writes) / max(1, run[3].cycles)
            speed, other_speed = side_speeds(demand, other)
            left, other_left = finish - start, run[2] - start          # cycles as alone
            common = min(left / speed, other_left / other_speed)
            lost = SIDE_MEET + SIDE_COLLISION * min(demand, other) * common
            finish = round(start + common + left - speed * common + lost)
            run[2] = round(start + common + other_left - other_speed * common + lost)
            engine_end[run[0]] = max(engine_end[run[0]], run[2])
            end = max(end, run[2])
        fed = finish - cost.drain
        runs.append([cost.engine, start, finish, cost])
        engine_end[cost.engine] = finish
        end = max(end, finish)
        previous = cost
    return PROGRAM_CYCLES + end
