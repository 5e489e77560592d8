"""Cycle model of the accelerator: the cycles of every instruction, from its fields and the Config.

The golden backend reports ``cycles`` from this model (:func:`program_cycles`), so a whole network is
sized in seconds; the test suite checks it against the gateware's cycle counter on sampled layers of
every engine (``tests/test_cycle_model.py``). It models the gateware as it is: every instruction runs
alone (setup, pipeline fill, drain), then the dispatcher starts the next one.
"""
from __future__ import annotations

from . import isa
from .config import ceil_div
from .gemm_layout import FEED_STAGES, PARAM_WORDS, PE_LATENCY, GemmGeometry

__all__ = ["gemm_fixed_cycles", "estimate_gemm_cycles", "gemm_cycles", "gather_cycles", "rng_cycles",
           "sketch_cycles", "instruction_cycles", "program_cycles", "DISPATCH_CYCLES", "PROGRAM_CYCLES"]

#: Cycles the dispatcher spends between two instructions, and once per Program (first fetch, HALT).
DISPATCH_CYCLES = 0
PROGRAM_CYCLES = 0


# ---- GEMM -----------------------------------------------------------------------------------------
def gemm_fixed_cycles(config) -> int:
    """Cycles a GEMM instruction costs beyond its tiles: array skew, read latency, the MAC and requant
    pipelines (``config.requant_latency``) plus 17 cycles of setup states, skid buffers, stream hand-offs
    and the last write, fitted to the gateware."""
    return config.rows + config.cols + config.mem_latency + FEED_STAGES + PE_LATENCY + config.requant_latency + 17


def estimate_gemm_cycles(config, m, k, n, int4=False, out_format=1, batch=1, accumulate=False) -> int:
    """Cycles of one (batched) GEMM instruction on the gateware.

    Each tile after the first takes the longest of: its k-rows, the array's minimum tile time
    (``max(rows, cols) + 1``), the requant time of its rows and the memory words it moves (one per
    cycle: A and B blocks, its output, in accumulate mode its int32 partial sums), the last two with a
    tile's share of its column block's parameter load; plus a fixed cost per instruction and one setup
    cycle per bit of ``batch`` beyond the first.
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
    fixed = gemm_fixed_cycles(config) + max(1, batch).bit_length() - 1 + drain
    return round(fixed + geo.k_rows + (max(1, batch) * geo.mt * geo.nt - 1) * tile)


def gemm_cycles(fields: dict, config, memory=None) -> int:
    """Cycles of a GEMM instruction from its fields."""
    return estimate_gemm_cycles(config, fields["m"], fields["k"], fields["n"], bool(fields["int4"]),
                                fields["out_format"], fields["batch"], bool(fields["accumulate"]))


# ---- GATHER ---------------------------------------------------------------------------------------
#: Fitted constants of the GATHER model (see :func:`gather_cycles`).
GATHER_FIXED, GATHER_PER_BAG = 20, 1
#: Cycles the gather engine's mean divider spends per output word (hw/gather.py: _DIV_STEPS + 1).
MEAN_WORD_CYCLES = 35


def gather_words(fields: dict, config, counters: dict) -> tuple:
    """``(check, port, pool)`` words of a legal GATHER: the check pass's words per stream, the main pass's
    port words (offsets, indices, weights, missed rows, output) and the pooling unit's row words."""
    from .gather_golden import int32_words, out_words, row_words
    rw = row_words(config, fields["dim"], fields["dtype"])
    ow = out_words(config, fields["dim"], fields["dtype"], fields["mode"])
    off_words, idx_words = int32_words(config, fields["n_bags"] + 1), int32_words(config, fields["n_indices"])
    lookups = counters["lookups"]
    main_idx = int32_words(config, lookups)
    port = off_words + main_idx * (1 + fields["weighted"]) + counters["misses"] * rw + fields["n_bags"] * ow
    return max(off_words, idx_words), port, lookups * rw


def gather_cycles(fields: dict, config, memory) -> int:
    """Cycles of a legal GATHER: a fixed cost, the check pass (a word of offsets and of indices per
    cycle), then the main pass bound by the busier of the memory port and the pooling unit (one row word
    per cycle, plus a cycle per bag), and the mean's divider."""
    from .gather_golden import gather_counters, out_words
    counters = gather_counters(memory, fields, config)
    check, port, pool = gather_words(fields, config, counters)
    divide = MEAN_WORD_CYCLES * fields["n_bags"] * out_words(config, fields["dim"], fields["dtype"]) \
        if fields["mode"] == 1 else 0
    return GATHER_FIXED + check + max(port, pool + GATHER_PER_BAG * fields["n_bags"]) + divide


# ---- RNG / SKETCH ---------------------------------------------------------------------------------
#: Fitted fixed costs of RNG and SKETCH (setup, Philox pipeline fill, last write).
RNG_FIXED, SKETCH_FIXED = 30, 40


def rng_cycles(fields: dict, config, memory=None) -> int:
    """Cycles of an RNG: a fixed cost, then one Philox beat per cycle or one written word per cycle."""
    from .sketch_ops import RngGeometry
    geo = RngGeometry(config, fields["n"])
    return RNG_FIXED + max(geo.beats, geo.words)


def sketch_cycles(fields: dict, config, memory=None) -> int:
    """Cycles of a SKETCH: a fixed cost, then per output tile its K rows (one per cycle) or its words."""
    from .sketch_ops import SketchGeometry
    geo = SketchGeometry(config, fields["m"], fields["K"], fields["k"])
    return SKETCH_FIXED + geo.mt * geo.nct * max(geo.K, geo.tile_words)


#: op name -> function(fields, config, memory before the instruction) -> cycles of a legal instruction.
MODELS = {"GEMM": gemm_cycles, "GATHER": gather_cycles, "RNG": rng_cycles, "SKETCH": sketch_cycles}


def instruction_cycles(op: str, fields: dict, config, memory) -> int:
    """Cycles of one legal instruction (``memory``: the image it starts on; GATHER's cache needs the indices)."""
    return MODELS[op](fields, config, memory)


def program_cycles(instruction_costs) -> int:
    """The cycle counter of a Program whose instructions cost ``instruction_costs``."""
    costs = list(instruction_costs)
    return PROGRAM_CYCLES + sum(costs) + DISPATCH_CYCLES * max(0, len(costs) - 1)
