"""The single source of truth for every size in tridsa.

Gateware, driver, golden model, simulators and tests all derive their constants from one
:class:`Config`. Nothing else in the code base writes a size down.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

from .counters import COUNTER_BITS
from .isa import ENGINE_OPS

__all__ = ["Config", "GEMM_ENGINES", "REQUANT_REGISTERED", "REQUANT_SERIAL_CYCLES", "ceil_div", "requant_timing"]

#: ``Config.gemm_engine`` choices: the systolic engine (every feature) and the compact broadcast engine of
#: the smallest FPGAs (:mod:`tridsa.hw.gemm_compact`).
GEMM_ENGINES = ("systolic", "compact")

#: ``Config.requant_stages`` -> which of the requant pipeline's 12 logical steps (0-based, see
#: :class:`tridsa.hw.requant.RequantUnit`) end in a register; the others are combinational. The count
#: of registered steps is the pipeline's latency; the last step (the output register) is always one.
#: The compact choice cuts the steps into paths of about equal delay: bias add, left shift and the
#: partial products (DSPs); the two sums; the nudge and the high half; the rounding shift, round-up
#: decision and increment; saturation, zero point and clamp (at most two wide adders, or a shifter
#: and an incrementer, after the first).
REQUANT_REGISTERED = {12: tuple(range(12)), 5: (2, 4, 6, 9, 11)}

#: Cycles per value of the serial requant unit (``Config.requant_stages = 0``): its latency and the
#: interval between two inputs.
REQUANT_SERIAL_CYCLES = 102


def requant_timing(stages: int) -> tuple:
    """``(latency, interval)`` in cycles of a requant lane with ``stages`` (``Config.requant_stages``): a
    pipeline takes an input every cycle, the serial unit one per ``REQUANT_SERIAL_CYCLES``."""
    return (stages, 1) if stages else (REQUANT_SERIAL_CYCLES, REQUANT_SERIAL_CYCLES)


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for integers (sizes in words, blocks, tiles)."""
    return -(-a // b)


def _is_pow2(value: int) -> bool:
    return isinstance(value, int) and value > 0 and value & (value - 1) == 0


@dataclasses.dataclass(frozen=True)
class Config:
    """Accelerator configuration, validated on construction.

    Parameters
    ----------
    rows, cols:
        Shape of the systolic MAC array (powers of two, 1..64). Each processing element does one
        int8 MAC or two int4 MACs per cycle.
    int4:
        Build INT4 support (two packed int4 MACs per PE per cycle).
    mem_width:
        Width of the shared memory port in bytes (power of two, a multiple of ``4 * cols`` so that an
        int32 output row fits a word, and of ``rows``).
    mem_depth:
        Number of memory words of the simulated / on-chip memory (power of two).
    mem_latency:
        Read latency of the memory in cycles (>= 1). The port accepts one request per cycle.
    queue_depth:
        Depth of the command queue in instructions (0 or a power of two). 0 leaves the queue out: the
        dispatcher takes each instruction straight from the host's stream, which holds it until taken
        (on an FPGA the UART bridge's instruction buffer is then the only copy: the smallest chip).
    cache_sets, cache_ways:
        Geometry of the gather engine's set-associative row cache (LRU replacement).
    cache_row_bytes:
        Largest embedding row the cache holds, in bytes (a multiple of ``mem_width`` or a divisor).
    prefetch_depth:
        Outstanding row requests of the gather engine's index prefetch queue.
    rng_lanes:
        Number of Philox4x32-10 lanes of the sketch engine (each makes 128 bits per cycle).
    engines:
        The engines the chip has (names of :data:`tridsa.spec.isa.ENGINE_OPS`, kept in that order). An
        FPGA build can leave out what does not fit; their instructions are then ILLEGAL_OPCODE.
    requant_lanes:
        Accumulators the GEMM engine requantizes per cycle (a power of two dividing ``cols``; None =
        ``cols``). Fewer lanes save multipliers: an output row then takes ``cols / requant_lanes`` cycles.
    hard_multipliers:
        How many PEs multiply with ``*`` (which synthesis maps to a hard DSP: SB_MAC16, MULT18X18D; INT4
        pairs share it) rather than LUT logic (None = all). Only the synthesized netlist changes: an FPGA
        build sets it to the DSPs the device has left.
    accumulate:
        Build the GEMM engine's accumulate mode (ISA field ``accumulate``: add the int32 partial sums at
        ``c_addr`` instead of the bias, so the driver splits K over several instructions without losing
        bits). It adds one block reader; without it such an instruction is BAD_MODE.
    requant_stages:
        Register stages of the GEMM engine's requant pipeline, a key of :data:`REQUANT_REGISTERED`: 12
        (one per logical step, for a fast clock) or 5 (fewer flip-flops, for a slow FPGA such as the
        iCE40). It is the pipeline's latency in cycles; the results do not depend on it. 0 is the serial
        unit: no multiplier or barrel shifter, :data:`REQUANT_SERIAL_CYCLES` cycles per value (the
        smallest FPGAs; a tile's output rows then take ``rows * cols / requant_lanes`` times that).
    pe_family:
        The FPGA family whose DSP processing elements the MAC array is built with (``"ice40"``: two INT8 PEs
        per SB_MAC16 in dual 8 x 8 mode; ``"ecp5"``: one MULT18X18D per PE), also in simulation, where the
        primitives are behavioural models. None: the elaborating platform's family (the generic PE in
        simulation). Results and timing are the same for every choice (:class:`tridsa.hw.mac_array.MacArray`).
    row_group:
        Rows of the MAC array per group (0: no groups): the operand links from the last row of a group into
        the next group have one register more, so a k-step reaches those rows a cycle later
        (:func:`tridsa.spec.gemm_layout.row_skew`). An FPGA whose DSP blocks sit in rows across the die
        groups the array rows that one row of DSP blocks holds (the ECP5-85F: 52 MULT18X18D, 6 rows of 8
        PEs), so the long links between DSP rows get a register of their own. It costs a GEMM a cycle of
        latency per group boundary (none when the requant unit takes more than a cycle per row).
    overlap:
        Overlap consecutive instructions (docs/architecture.md, "Overlapped instructions"): the GEMM engine
        takes the next GEMM while the previous one drains, and a GATHER and a GEMM run side by side where
        their memory regions allow. It costs the GEMM engine a job register and the dispatcher its hazard
        check; without it every instruction starts when the previous one is done, the gateware holds
        none of that logic (the area-first FPGA chips), and the results are the same.
    gemm_engine:
        ``"systolic"`` (default): the GEMM engine of :mod:`tridsa.hw.gemm` (systolic array, every feature).
        ``"compact"``: the broadcast engine of :mod:`tridsa.hw.gemm_compact` for the smallest FPGAs: every
        PE of a row sees the same A byte and every PE of a column the same B byte in the same cycle (no
        skew), a B block is loaded once per column block into a local buffer, A streams one k-row per
        memory word (``mem_width == rows``), outputs go through a write port of their own. The same
        Programs and results; INT8 only, signed B only (:attr:`unsigned_b`), no accumulate mode, no
        overlap, every PE on a DSP, accumulators :attr:`acc_bits` wide.
    counter_bits:
        Width of every performance counter (a multiple of 8 in 16..64; the host link reports each in
        ``counter_bits / 8`` bytes). A counter wraps after ``2**counter_bits`` events: 48 bits last
        about a month at 100 MHz, 32 bits (the smallest FPGA chip, a logic cell per bit saved) 143 s at
        30 MHz.
    """

    rows: int = 8
    cols: int = 8
    int4: bool = True
    mem_width: int = 32
    mem_depth: int = 1 << 14
    mem_latency: int = 2
    queue_depth: int = 16
    cache_sets: int = 16
    cache_ways: int = 4
    cache_row_bytes: int = 128
    prefetch_depth: int = 32
    rng_lanes: int = 2
    engines: tuple = tuple(ENGINE_OPS)
    requant_lanes: int | None = None
    hard_multipliers: int | None = None
    requant_stages: int = 12
    accumulate: bool = True
    pe_family: str | None = None
    row_group: int = 0
    overlap: bool = True
    counter_bits: int = COUNTER_BITS
    gemm_engine: str = "systolic"

    def __post_init__(self):
        def need(ok, name, allowed):
            if not ok:
                raise ValueError(f"Config.{name}={getattr(self, name)!r} is invalid: must be {allowed}")

        for name in ("rows", "cols"):
            need(_is_pow2(getattr(self, name)) and getattr(self, name) <= 64, name, "a power of two in 1..64")
        need(isinstance(self.int4, bool), "int4", "True or False")
        need(isinstance(self.accumulate, bool), "accumulate", "True or False")
        need(isinstance(self.overlap, bool), "overlap", "True or False")
        need(_is_pow2(self.mem_width) and self.mem_width % (4 * self.cols) == 0
             and self.mem_width % self.rows == 0 and self.mem_width <= 512,
             "mem_width", f"a power of two <= 512 bytes and a multiple of 4*cols={4 * self.cols} and rows={self.rows}")
        need(_is_pow2(self.mem_depth) and 16 <= self.mem_depth <= 1 << 24, "mem_depth", "a power of two in 16..2**24")
        need(isinstance(self.mem_latency, int) and 1 <= self.mem_latency <= 64, "mem_latency", "an integer in 1..64")
        need(self.queue_depth == 0 or _is_pow2(self.queue_depth), "queue_depth", "0 or a power of two")
        need(_is_pow2(self.cache_sets), "cache_sets", "a power of two")
        need(isinstance(self.cache_ways, int) and 1 <= self.cache_ways <= 16, "cache_ways", "an integer in 1..16")
        need(_is_pow2(self.cache_row_bytes) and self.cache_row_bytes >= 4, "cache_row_bytes", "a power of two >= 4")
        need(isinstance(self.prefetch_depth, int) and 1 <= self.prefetch_depth <= 64, "prefetch_depth", "an integer in 1..64")
        need(isinstance(self.rng_lanes, int) and 1 <= self.rng_lanes <= 16, "rng_lanes", "an integer in 1..16")
        names = self.engines
        need(isinstance(names, (tuple, list)) and len(names) > 0 and all(n in ENGINE_OPS for n in names)
             and len(set(names)) == len(names), "engines", f"a non-empty list of distinct names from {tuple(ENGINE_OPS)}")
        object.__setattr__(self, "engines", tuple(n for n in ENGINE_OPS if n in names))
        need(self.requant_lanes is None or (_is_pow2(self.requant_lanes) and self.cols % self.requant_lanes == 0),
             "requant_lanes", f"None or a power of two dividing cols={self.cols}")
        need(self.hard_multipliers is None or (isinstance(self.hard_multipliers, int)
                                               and 0 <= self.hard_multipliers <= self.rows * self.cols),
             "hard_multipliers", f"None or an integer in 0..rows*cols={self.rows * self.cols}")
        need(isinstance(self.requant_stages, int) and self.requant_stages in (0, *REQUANT_REGISTERED),
             "requant_stages", f"0 (serial) or one of {sorted(REQUANT_REGISTERED)}")
        need(self.pe_family in (None, "ice40", "ecp5"), "pe_family", "None, \"ice40\" or \"ecp5\"")
        need(isinstance(self.row_group, int) and self.row_group >= 0, "row_group", "an integer >= 0")
        need(self.gemm_engine in GEMM_ENGINES, "gemm_engine", f"one of {GEMM_ENGINES}")
        if self.gemm_engine == "compact":
            for name, ok, allowed in (
                    ("int4", not self.int4, "False with gemm_engine=\"compact\" (INT8 only)"),
                    ("accumulate", not self.accumulate, "False with gemm_engine=\"compact\""),
                    ("overlap", not self.overlap, "False with gemm_engine=\"compact\""),
                    ("hard_multipliers", self.hard_multipliers in (None, self.rows * self.cols),
                     "None with gemm_engine=\"compact\" (every PE on a DSP)"),
                    ("mem_width", self.mem_width == self.rows and (self.rows * self.cols * 4) % self.mem_bits == 0,
                     f"rows={self.rows} with gemm_engine=\"compact\" (one A k-row per word; an INT4 output tile "
                     f"of rows*cols*4 bits fills whole words)"),
                    ("cols", self.cols % 2 == 0, "even with gemm_engine=\"compact\" (two PEs share a DSP)"),
                    ("requant_lanes", self.requant_lanes == 1, "1 with gemm_engine=\"compact\" (one value at a time)"),
                    ("row_group", self.row_group == 0, "0 with gemm_engine=\"compact\" (no systolic links)")):
                need(ok, name, allowed)
        need(isinstance(self.counter_bits, int) and self.counter_bits % 8 == 0 and 16 <= self.counter_bits <= 64,
             "counter_bits", "a multiple of 8 in 16..64")

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def requant_latency(self) -> int:
        """Cycles from a requant input to its output: the pipeline's stages, or the serial unit's."""
        return requant_timing(self.requant_stages)[0]

    @property
    def requant_interval(self) -> int:
        """Cycles between two inputs of one requant lane: 1 (pipelined) or the serial unit's cycles."""
        return requant_timing(self.requant_stages)[1]

    @property
    def addr_bits(self) -> int:
        """Bits of a memory word address."""
        return (self.mem_depth - 1).bit_length()

    @property
    def mem_bits(self) -> int:
        """Bits of one memory word."""
        return self.mem_width * 8

    @property
    def counter_bytes(self) -> int:
        """Bytes of one counter in the host link's STATUS reply."""
        return self.counter_bits // 8

    @property
    def mem_bytes(self) -> int:
        return self.mem_width * self.mem_depth

    @property
    def peak_macs_int8(self) -> int:
        """MACs per cycle of the array in INT8 mode (INT4 does twice as many)."""
        return self.rows * self.cols

    @property
    def lanes_requant(self) -> int:
        """Accumulators requantized per cycle (``requant_lanes``, default ``cols``)."""
        return self.requant_lanes or self.cols

    @property
    def acc_bits(self) -> int:
        """Accumulator bits of a compact engine's PE (``gemm_engine="compact"``), exact for every legal GEMM.

        A legal instruction's A block (``ceil(K * rows / mem_width)`` words) and B block fit the memory, so
        ``K <= mem_bytes / max(rows, cols)``; an INT8 product lies in [-128 * 255, 255 * 255], so every
        sum of K products lies in ``[-K * 32640, K * 65025]`` and fits a signed integer of these bits (at
        most 32: the int32 of the ISA)."""
        k_max = self.mem_bytes // max(self.rows, self.cols)
        return min(32, (k_max * 255 * 255).bit_length() + 1)

    @property
    def unsigned_b(self) -> bool:
        """Whether a GEMM may take unsigned B (``b_signed=0``; else BAD_MODE). The compact engine corrects an
        unsigned A with a sum per array column and has no sums per row, which an unsigned B needs."""
        return self.gemm_engine != "compact"

    def has_op(self, op: str) -> bool:
        """Whether this chip has the engine that executes instruction ``op`` (NOP and HALT: always)."""
        return not any(op in ops for ops in ENGINE_OPS.values()) or any(op in ENGINE_OPS[e] for e in self.engines)

    @property
    def stream_fifo_depth(self) -> int:
        """Depth of every memory read FIFO: enough credits to keep one read in flight per cycle."""
        depth = 4
        while depth < self.mem_latency + 4:
            depth *= 2
        return depth

    # -- serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Config":
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown Config field(s) {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    @property
    def digest(self) -> str:
        """Short stable hash, used to name cached simulator builds."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]
