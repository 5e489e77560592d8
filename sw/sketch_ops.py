"""Lowering of ``random_uint32`` and ``sketch`` to RNG / SKETCH instructions: validation, layout, emit.

Memory layout (``W = Config.mem_width`` bytes per word, ``L = Config.rng_lanes``, ``R = Config.rows``):

* **RNG output**: ``ceil(n / (W/4))`` whole words holding the stream words ``0 .. words*W/4 - 1``
  (uint32 little-endian, stream word ``i`` at byte ``4 i`` of the region): ``n`` rounds up to whole
  memory words, the extra words are the continuation of the stream.
* **A** (M x K, int8 or uint8): the GEMM engine's row-block layout (:func:`tridsa.spec.gemm_layout.pack_a`
  with ``R`` rows per block), so the engine reads one column of a row block (``R`` bytes) per cycle.
* **parameter block**: nine uint32 ``key0 key1 ctr0 ctr1 ctr2 ctr3 threshold lo span-1`` in
  ``ceil(36 / W)`` words (``threshold``, ``lo``, ``span`` from :func:`tridsa.sw.sketch_dist.dist_params`).
* **Y** (M x k, int32): tiles of ``R x C`` with ``C = 4 L`` columns (one RNG beat), tile ``(ib, jt)``
  at index ``ib * nct + jt``; a tile is its ``R * C`` int32 values row-major, packed back to back and
  zero padded to ``tile_words`` whole words. Rows past M and columns past k are zero.
"""
from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from ..spec import isa
from ..spec.config import Config, ceil_div
from ..spec.gemm_layout import GemmGeometry, blocks_from_words, pack_a, words_from_bytes
from .operands import integer_matrix, operand_signedness
from .philox import check_counter, check_key
from ..spec.sketch_layout import DISTRIBUTIONS, PARAM_NAMES, rng_lanes_used
from .sketch_dist import dist_params

__all__ = ["RngGeometry", "SketchGeometry", "emit_rng", "emit_sketch", "RngCall", "SketchCall",
           "pack_params", "unpack_params", "pack_y", "unpack_y", "a_values", "rng_program",
           "sketch_program", "run_sketch"]


#: Largest m, K and k of one SKETCH (its 16-bit fields).
_MAX_DIM = isa.field_max("SKETCH", "m")





@dataclasses.dataclass(frozen=True)
class RngGeometry:
    """Sizes of one RNG instruction: ``words`` memory words, ``beats`` Philox beats of ``lanes`` blocks."""
    config: Config
    n: int

    @property
    def per_word(self): return self.config.mem_width // 4          # uint32 per memory word
    @property
    def lanes(self): return rng_lanes_used(self.config)
    @property
    def per_beat(self): return 4 * self.lanes                       # uint32 per beat
    @property
    def words(self): return ceil_div(self.n, self.per_word)
    @property
    def stream_words(self): return self.words * self.per_word
    @property
    def beats(self): return ceil_div(self.stream_words, self.per_beat)


@dataclasses.dataclass(frozen=True)
class SketchGeometry:
    """Sizes (memory words) of one SKETCH instruction for A (m x K) and Omega (K x k)."""
    config: Config
    m: int
    K: int
    k: int

    @property
    def gemm(self): return GemmGeometry(self.config, self.m, self.K, 1, False, 0)
    @property
    def tile_rows(self): return self.config.rows
    @property
    def tile_cols(self): return 4 * self.config.rng_lanes
    @property
    def mt(self): return ceil_div(self.m, self.tile_rows)
    @property
    def nct(self): return ceil_div(self.k, self.tile_cols)
    @property
    def blocks_per_row(self): return ceil_div(self.k, 4)
    @property
    def a_block_words(self): return self.gemm.a_block_words
    @property
    def a_words(self): return self.gemm.a_words
    @property
    def p_words(self): return ceil_div(4 * len(PARAM_NAMES), self.config.mem_width)
    @property
    def tile_words(self): return ceil_div(self.tile_rows * self.tile_cols * 4, self.config.mem_width)
    @property
    def y_words(self): return self.mt * self.nct * self.tile_words


def pack_params(key, counter, regs: dict, config: Config) -> np.ndarray:
    """The parameter block (``PARAM_NAMES``) as memory words."""
    values = [*(int(x) for x in key), *(int(x) for x in counter), regs["threshold"], regs["lo"] & 0xFFFFFFFF,
              max(regs["span"] - 1, 0)]
    return words_from_bytes(np.array(values, np.uint64).astype("<u4").view(np.uint8), config.mem_width)


def unpack_params(words: np.ndarray) -> dict:
    """Inverse of :func:`pack_params`: name -> int (``lo`` signed)."""
    raw = np.asarray(words, np.uint8).reshape(-1)[:4 * len(PARAM_NAMES)].copy().view("<u4")
    values = dict(zip(PARAM_NAMES, (int(x) for x in raw)))
    values["lo"] -= (values["lo"] >> 31) << 32
    return values


def a_values(words: np.ndarray, geo: SketchGeometry, signed: bool) -> np.ndarray:
    """A's memory words -> (mt * rows, K) int64 values (padding rows are zero)."""
    blocks = blocks_from_words(words, geo.tile_rows, geo.K, geo.a_block_words).astype(np.int64)
    if signed:
        blocks = np.where(blocks >= 128, blocks - 256, blocks)
    return blocks.transpose(0, 2, 1).reshape(geo.mt * geo.tile_rows, geo.K)


def pack_y(y: np.ndarray, geo: SketchGeometry) -> np.ndarray:
    """Y (mt*rows, nct*C) int values (wrapped to int32) -> memory words in the tile layout."""
    R, C = geo.tile_rows, geo.tile_cols
    tiles = y.reshape(geo.mt, R, geo.nct, C).transpose(0, 2, 1, 3).reshape(geo.mt * geo.nct, R * C)
    raw = (tiles & 0xFFFFFFFF).astype("<u4").view(np.uint8)
    out = np.zeros((geo.mt * geo.nct, geo.tile_words * geo.config.mem_width), np.uint8)
    out[:, :raw.shape[1]] = raw
    return out.reshape(-1, geo.config.mem_width)


def unpack_y(words: np.ndarray, geo: SketchGeometry) -> np.ndarray:
    """Memory words of Y -> (m, k) int32."""
    R, C, W = geo.tile_rows, geo.tile_cols, geo.config.mem_width
    flat = np.asarray(words, np.uint8).reshape(geo.mt * geo.nct, geo.tile_words * W)[:, :4 * R * C]
    tiles = flat.copy().view("<i4").reshape(geo.mt, geo.nct, R, C)
    return tiles.transpose(0, 2, 1, 3).reshape(geo.mt * R, geo.nct * C)[:geo.m, :geo.k].astype(np.int32)


def _positive(value, name: str, hi: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or not 1 <= value <= hi:
        raise ValueError(f"{name} must be an integer in [1, {hi}], got {value!r}")
    return int(value)


@dataclasses.dataclass
class RngCall:
    """One emitted RNG instruction and how to read its words back."""
    region: str
    geometry: RngGeometry

    def result(self, program, memory) -> np.ndarray:
        raw = program.read(memory, self.region).reshape(-1).copy().view("<u4")
        return raw[:self.geometry.n].astype(np.uint32)


def emit_rng(builder, key, counter, n, name="rng") -> RngCall:
    """Validate ``(key, counter, n)``, allocate the output and emit one RNG instruction."""
    key, counter = check_key(key), check_counter(counter)
    n = _positive(n, "n", (1 << 32) - 1)
    geo = RngGeometry(builder.config, n)
    addr = builder.alloc(geo.words, name)
    if addr > isa.field_max("RNG", "out_addr"):
        raise ValueError(f"the RNG output must start at word {isa.field_max('RNG', 'out_addr')} or below")
    builder.emit("RNG", n=n, out_addr=addr, key0=int(key[0]), key1=int(key[1]),
                 **{f"ctr{i}": int(counter[i]) for i in range(4)})
    return RngCall(name, geo)


@dataclasses.dataclass
class SketchCall:
    """One emitted SKETCH instruction: where Y lands and its size in additions."""
    region: str
    geometry: SketchGeometry
    adds: int
    traffic_bytes: int      # bytes the engine moves: A once per column tile, parameters, Y (Omega: none)

    def result(self, program, memory) -> np.ndarray:
        return unpack_y(program.read(memory, self.region), self.geometry)


def emit_sketch(builder, a, k, key, counter=(0, 0, 0, 0), dist="rademacher", name="y", **params) -> SketchCall:
    """Validate ``Y = a @ Omega`` (a int8/uint8 (M, K), Omega (K, k)), lay out A and emit one SKETCH."""
    a = integer_matrix(a, "a")
    signed = operand_signedness(a, "a", "int8")
    m, K = a.shape
    if max(m, K) > _MAX_DIM:
        raise ValueError(f"a must have both dimensions <= {_MAX_DIM}, got shape {a.shape}")
    k = _positive(k, "k", _MAX_DIM)
    key, counter = check_key(key), check_counter(counter)
    regs = dist_params(dist, k, **params)
    geo = SketchGeometry(builder.config, m, K, k)
    fields = dict(m=m, K=K, k=k, a_addr=builder.put(pack_a(a, geo.gemm)),
                  p_addr=builder.put(pack_params(key, counter, regs, builder.config)),
                  y_addr=builder.alloc(geo.y_words, name), dist=DISTRIBUTIONS.index(dist), a_signed=int(signed))
    builder.emit("SKETCH", **fields)
    moved = (geo.nct * geo.a_words + geo.p_words + geo.y_words) * builder.config.mem_width
    return SketchCall(name, geo, m * K * k, moved)


def rng_program(config: Config, key, counter, n) -> tuple:
    """Program and result reader of ``random_uint32(key, counter, n)``."""
    from .builder import ProgramBuilder
    builder = ProgramBuilder(config)
    call = emit_rng(builder, key, counter, n)
    program = builder.build()
    return program, lambda memory: call.result(program, memory)


def sketch_program(config: Config, a, k, key, counter=(0, 0, 0, 0), dist="rademacher", transpose=False,
                   **params) -> tuple:
    """Program, result reader and SketchCall of ``a @ Omega`` (or ``Omega.T @ a`` if ``transpose``), in one
    Program (:class:`~tridsa.sw.builder.ProblemTooLarge` if it does not fit; :func:`run_sketch` splits).

    The transposed product is lowered here as ``(a.T @ Omega).T``: the engine only streams A row blocks.
    """
    from .builder import ProgramBuilder
    if not isinstance(transpose, (bool, np.bool_)):
        raise TypeError(f"transpose must be True or False, got {transpose!r}")
    a = integer_matrix(a, "a")
    builder = ProgramBuilder(config)
    call = emit_sketch(builder, a.T if transpose else a, k, key, counter, dist, **params)
    program = builder.build()

    def finish(memory):
        y = call.result(program, memory)
        return np.ascontiguousarray(y.T) if transpose else y
    return program, finish, call


def run_sketch(config: Config, run, a, k, key, counter=(0, 0, 0, 0), dist="rademacher", transpose=False,
               **params) -> tuple:
    """``a @ Omega`` of any size, Program after Program; returns ``(y, runs, adds)``.

    Rows of A split freely (every row block sees the same Omega). K splits into chunks whose Omega rows
    start ``r0 * ceil(k / 4)`` Philox blocks later (the counter of chunk ``r0``), and the chunks' int32
    results add up with int32 wrap-around, as the engine's accumulators do, so a split never changes a bit.
    The sketch size ``k`` does not split (Omega's row stride depends on it): one row block's Y must fit.
    """
    from .builder import ProblemTooLarge
    from .philox import check_counter
    if not isinstance(transpose, (bool, np.bool_)):
        raise TypeError(f"transpose must be True or False, got {transpose!r}")
    a = integer_matrix(a, "a")
    a = a.T if transpose else a
    operand_signedness(a, "a", "int8")
    m, K = a.shape
    k = _positive(k, "k", _MAX_DIM)
    counter = check_counter(counter)
    dist_params(dist, k, **params)                          # every argument checked before anything runs
    plan = _sketch_plan(config, m, K, k)
    if plan is None:
        raise ProblemTooLarge(f"one row block of the sketch (k={k}) does not fit Config.mem_depth="
                              f"{config.mem_depth} words")
    rows, depth = plan
    base = sum(int(w) << (32 * i) for i, w in enumerate(counter))
    blocks = ceil_div(k, 4)
    y = np.zeros((m, k), np.int64)
    runs = []
    for r0 in range(0, m, rows):
        for k0 in range(0, K, depth):
            start = (base + k0 * blocks) % (1 << 128)
            chunk_counter = tuple((start >> (32 * i)) & 0xFFFFFFFF for i in range(4))
            program, finish, _ = sketch_program(config, a[r0:r0 + rows, k0:k0 + depth], k, key, chunk_counter,
                                                dist, **params)
            result = run(program)
            runs.append((program, result))
            y[r0:r0 + rows] += finish(result.memory)
    y = (((y + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)).astype(np.int32)
    return (np.ascontiguousarray(y.T) if transpose else y), runs, m * K * k


def _sketch_plan(config, m, K, k):
    """``(rows, depth)`` of the largest tiles that fit the memory: all K if possible, else K chunks."""
    R = config.rows
    for chunks in range(1, K + 1):
        depth = ceil_div(K, chunks)
        if depth > _MAX_DIM:
            continue
        geo = SketchGeometry(config, R, depth, k)
        per_block = geo.a_block_words + geo.nct * geo.tile_words
        blocks = (config.mem_depth - geo.p_words) // per_block
        if blocks >= 1:
            return min(ceil_div(m, R), blocks, _MAX_DIM // R) * R, depth
        if geo.a_block_words <= 1:
            return None
    return None
