"""Cycles of a GEMM on the compact engine (``Config.gemm_engine = "compact"``, :mod:`tridsa.hw.gemm_compact`).

Exact for a memory without stalls: the engine's sequencer and the requant unit follow a fixed schedule,
stepped here tile by tile. Per instruction: the setup (:data:`COMPACT_SETUP` cycles, the serial products
over ``addr_bits + 1`` cycles and one cycle per bit of a batch > 1); per column block its B block (a read
per cycle) and a cycle for the buffer; per tile its A words but the last, a cycle to check that the row
buffer is free (waiting until it is), its 3 parameter words, the last A word and ``rows + 1`` cycles
for the readout of its sums. The tile's rows reach the requant unit ``rows +`` :data:`COMPACT_ROWS_AFTER`
cycles after the memory's latency from that last read (the array, the readout, the row buffer); the unit
(one lane) takes an element once per ``requant_interval`` cycles, and the row buffer is free the cycle after
it took the tile's last one. The instruction is done :data:`COMPACT_DONE_AFTER` cycles
after the unit's latency from its last chunk (the packer and the write port).
"""
from __future__ import annotations

from ..spec.gemm_layout import PARAM_WORDS, GemmGeometry

__all__ = ["compact_gemm_cycles", "compact_gemm_traffic", "COMPACT_SETUP", "COMPACT_ROWS_AFTER", "COMPACT_DONE_AFTER"]

#: Cycles from the start of a GEMM to its first read, besides the serial products and the batch's bits
COMPACT_SETUP = 5
#: Cycles from a tile's last A word to its first row at the requant unit besides the memory's latency and
#: one per row: the array (:attr:`tridsa.hw.broadcast_array.BroadcastArray.LATENCY`), the readout's register,
#: the row buffer's write and read, the element register
COMPACT_ROWS_AFTER = 6
#: Cycles after the requant unit's latency from the last chunk to the end of the instruction
COMPACT_DONE_AFTER = 5


def compact_gemm_cycles(config, m, k, n, batch=1) -> int:
    """Cycles of one (batched) GEMM instruction on the compact engine (see the module docstring)."""
    geo = GemmGeometry(config, m, k, n, False, 1)
    batch = max(1, batch)
    chunks = config.rows * config.cols                       # requant inputs per tile: one lane
    interval = config.requant_interval
    t = COMPACT_SETUP + config.addr_bits + 1 + (batch.bit_length() if batch > 1 else 0)
    unit_free = free = 0             # the requant unit takes a chunk; the row buffer is free
    last_chunk = 0
    for _ in range(batch * geo.nt):
        t += geo.b_block_words + 1                           # LOAD_B, B_LOADED
        for _ in range(geo.mt):
            t = max(t + geo.a_block_words - 1, free) + 1     # A words, the check
            last_read = t + PARAM_WORDS                      # the parameters, the last A word
            t = last_read + 1 + config.rows + 1                 # LAST, GAP
            first_chunk = max(last_read + config.mem_latency + config.rows + COMPACT_ROWS_AFTER, unit_free)
            last_chunk = first_chunk + (chunks - 1) * interval
            unit_free, free = last_chunk + interval, last_chunk + 1
    return last_chunk + config.requant_latency + COMPACT_DONE_AFTER


def compact_gemm_traffic(config, m, k, n, out_format, batch=1) -> tuple:
    """``(reads, writes)`` in memory words: every column block its B block, every tile its A block and its
    column block's parameters, and its output words."""
    geo = GemmGeometry(config, m, k, n, False, out_format)
    batch = max(1, batch)
    tiles = batch * geo.mt * geo.nt
    return batch * geo.nt * geo.b_block_words + tiles * (geo.a_block_words + PARAM_WORDS), tiles * geo.tile_words
