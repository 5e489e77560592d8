"""Memory layout of GEMM operands, parameters and results (shared by driver and golden model).

The systolic array consumes one *k-row* per cycle from each operand: ``rows`` bytes of A (one column
of an A row block) and ``cols`` bytes of B (one row of a B column block). The driver therefore stores

* **A** (M x K) as ``ceil(M/rows)`` row blocks; block ``ib`` holds k-rows ``A[ib*rows:(ib+1)*rows, k]``
  for every k, ``mem_width // rows`` k-rows per memory word, little-endian;
* **B** (K x N) as ``ceil(N/cols)`` column blocks of k-rows ``B[k, jb*cols:(jb+1)*cols]``;
* in INT4 mode one byte holds elements k (low nibble) and k+1 (high nibble), so a k-row covers two k;
* **parameters** per column block: three words ``bias[cols]``, ``multiplier[cols]``, ``shift[cols]``
  (int32 little-endian; the hardware uses the low 31 bits of the multiplier and the low 6 bits of the
  shift, a shift above 62 acting as 62);
* **C** as output tiles of ``rows x cols`` elements, column-block major (tile ``jb * mt + ib``); tile rows
  are packed back to back, ``out_bits`` per element, element ``j`` of row ``i`` at bit
  ``(i * cols + j) * out_bits`` of the tile. Every tile starts on a word; unused bits are zero.

Ragged M, N and K are zero-padded here, so the hardware tiles any shape without masks.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .config import Config, ceil_div

__all__ = ["FEED_STAGES", "OUT_BITS", "PARAM_WORDS", "PE_LATENCY", "READOUT_GROUP", "readout_stages", "row_skew", "min_tile_cycles", "GemmGeometry", "pack_a", "pack_b",
           "pack_params", "unpack_c", "pack_c", "blocks_from_words", "words_from_bytes"]

OUT_BITS = {0: 32, 1: 8, 2: 8, 3: 4}   # out_format code -> bits per element
PARAM_WORDS = 3                          # words per column block: bias, multiplier, shift
FEED_STAGES = 1                          # input register of the MAC array (hw/mac_array.py)
PE_LATENCY = 4                           # register stages of a processing element (hw/mac_array.py)
READOUT_GROUP = 8                        # rows merged by one first-stage register of the array readout


def readout_stages(rows: int) -> int:
    """Register stages of the MAC array's row readout (hw/mac_array.py): one multiplexer over the rows, or
    for more than ``READOUT_GROUP`` rows two: one per group of rows, then one over the groups."""
    return 1 if rows <= READOUT_GROUP else 2
# the requant pipeline's depth is Config.requant_stages (hw/requant.py)


def row_skew(row: int, row_group: int = 0) -> int:
    """Cycles after row 0 that a k-step reaches row ``row`` of the MAC array: one per row, and one more per
    boundary between groups of ``row_group`` rows above it (``Config.row_group``; 0: no groups)."""
    return row + (row // row_group if row_group else 0)


def min_tile_cycles(rows: int, cols: int, row_group: int = 0) -> int:
    """Fewest cycles between two tiles' last k-steps, so that a tile's rows leave the array (one a cycle,
    in order) before the next tile's and a result is read before it is overwritten."""
    return max(row_skew(rows - 1, row_group) + 1, cols) + 1



@dataclasses.dataclass(frozen=True)
class GemmGeometry:
    """Sizes (in memory words) of one GEMM instruction's operands, derived from Config and the shape."""
    config: Config
    m: int
    k: int
    n: int
    int4: bool
    out_format: int

    @property
    def k_per_byte(self): return 2 if self.int4 else 1
    @property
    def k_rows(self): return ceil_div(self.k, self.k_per_byte)
    @property
    def mt(self): return ceil_div(self.m, self.config.rows)
    @property
    def nt(self): return ceil_div(self.n, self.config.cols)
    @property
    def a_block_words(self): return ceil_div(self.k_rows * self.config.rows, self.config.mem_width)
    @property
    def b_block_words(self): return ceil_div(self.k_rows * self.config.cols, self.config.mem_width)
    @property
    def out_bits(self): return OUT_BITS[self.out_format]
    @property
    def tile_words(self): return ceil_div(self.config.rows * self.config.cols * self.out_bits, self.config.mem_bits)
    @property
    def p_block_words(self): return PARAM_WORDS
    @property
    def a_words(self): return self.mt * self.a_block_words
    @property
    def b_words(self): return self.nt * self.b_block_words
    @property
    def c_words(self): return self.mt * self.nt * self.tile_words
    @property
    def p_words(self): return self.nt * self.p_block_words


def _to_bytes(x: np.ndarray, int4: bool) -> np.ndarray:
    """(R, K) integers -> (R, ceil(K/kpb)) bytes, INT4 pairs packed low nibble first."""
    x = np.asarray(x, dtype=np.int64)
    if not int4:
        return (x & 0xFF).astype(np.uint8)
    if x.shape[1] % 2:
        x = np.pad(x, ((0, 0), (0, 1)))
    return ((x[:, 0::2] & 0xF) | ((x[:, 1::2] & 0xF) << 4)).astype(np.uint8)


def words_from_bytes(data: np.ndarray, width: int) -> np.ndarray:
    """Flat bytes -> (words, width) bytes, zero padded to whole words."""
    data = np.asarray(data, dtype=np.uint8).ravel()
    pad = (-len(data)) % width
    return np.concatenate([data, np.zeros(pad, np.uint8)]).reshape(-1, width)


def _blocks(mat_bytes: np.ndarray, lanes: int, block_words: int, width: int) -> np.ndarray:
    """(lanes*blocks, k_rows) bytes -> (blocks*block_words, width): each block is its k-rows, k major."""
    n_blocks = mat_bytes.shape[0] // lanes
    krows = mat_bytes.reshape(n_blocks, lanes, -1).transpose(0, 2, 1).reshape(n_blocks, -1)
    out = np.zeros((n_blocks, block_words * width), np.uint8)
    out[:, :krows.shape[1]] = krows
    return out.reshape(-1, width)


def pack_a(a: np.ndarray, geo: GemmGeometry) -> np.ndarray:
    """A (M, K) -> memory words (geo.a_words, mem_width) uint8."""
    cfg = geo.config
    padded = np.zeros((geo.mt * cfg.rows, geo.k_rows * geo.k_per_byte), np.int64)
    padded[:geo.m, :geo.k] = a
    return _blocks(_to_bytes(padded, geo.int4), cfg.rows, geo.a_block_words, cfg.mem_width)


def pack_b(b: np.ndarray, geo: GemmGeometry) -> np.ndarray:
    """B (K, N) -> memory words (geo.b_words, mem_width) uint8."""
    cfg = geo.config
    padded = np.zeros((geo.nt * cfg.cols, geo.k_rows * geo.k_per_byte), np.int64)
    padded[:geo.n, :geo.k] = np.asarray(b).T
    return _blocks(_to_bytes(padded, geo.int4), cfg.cols, geo.b_block_words, cfg.mem_width)


def pack_params(bias: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, geo: GemmGeometry) -> np.ndarray:
    """Per-channel int32 bias, multiplier, shift (N,) -> (geo.p_words, mem_width) uint8."""
    cfg = geo.config
    cols = geo.nt * cfg.cols
    out = np.zeros((geo.nt, PARAM_WORDS, cfg.mem_width), np.uint8)
    for slot, values in enumerate((bias, multiplier, shift)):
        padded = np.zeros(cols, np.int64)
        padded[:geo.n] = values
        raw = (padded & 0xFFFFFFFF).astype("<u4").view(np.uint8).reshape(geo.nt, cfg.cols * 4)
        out[:, slot, :cfg.cols * 4] = raw
    return out.reshape(-1, cfg.mem_width)


def pack_c(tiles: np.ndarray, geo: GemmGeometry) -> np.ndarray:
    """Output tiles (mt*nt in column-block-major order, rows, cols) ints -> memory words."""
    cfg = geo.config
    bits = geo.out_bits
    values = (np.asarray(tiles, np.int64).reshape(len(tiles), -1) & ((1 << bits) - 1)).astype(np.uint64)
    flat = ((values[:, :, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8).reshape(len(tiles), -1)
    packed = np.packbits(flat, axis=1, bitorder="little")
    out = np.zeros((len(tiles), geo.tile_words * cfg.mem_width), np.uint8)
    out[:, :packed.shape[1]] = packed
    return out.reshape(-1, cfg.mem_width)


def unpack_c(words: np.ndarray, geo: GemmGeometry) -> np.ndarray:
    """Memory words of C -> (M, N) int64 values (signed for int32/int8/int4, unsigned for uint8)."""
    cfg = geo.config
    bits = geo.out_bits
    words = np.asarray(words, np.uint8).reshape(geo.mt * geo.nt, geo.tile_words * cfg.mem_width)
    raw = np.unpackbits(words, axis=1, bitorder="little")[:, :cfg.rows * cfg.cols * bits]
    raw = raw.reshape(geo.mt * geo.nt, cfg.rows * cfg.cols, bits).astype(np.int64)
    values = (raw << np.arange(bits, dtype=np.int64)).sum(axis=2)
    if geo.out_format != 2:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    tiles = values.reshape(geo.nt, geo.mt, cfg.rows, cfg.cols)
    full = tiles.transpose(1, 2, 0, 3).reshape(geo.mt * cfg.rows, geo.nt * cfg.cols)
    return full[:geo.m, :geo.n]


def blocks_from_words(words: np.ndarray, lanes: int, k_rows: int, block_words: int) -> np.ndarray:
    """Inverse of the block layout: (blocks*block_words, width) -> (blocks, k_rows, lanes) bytes."""
    width = words.shape[1]
    n_blocks = len(words) // block_words
    flat = words.reshape(n_blocks, block_words * width)[:, :k_rows * lanes]
    return flat.reshape(n_blocks, k_rows, lanes)
