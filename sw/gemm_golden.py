"""Golden semantics of the GEMM instruction on a memory image (see gemm_layout for the layout)."""
from __future__ import annotations

import numpy as np

from ..spec import isa
from ..spec.gemm_layout import PARAM_WORDS, GemmGeometry, blocks_from_words, pack_c

__all__ = ["check_gemm", "execute_gemm", "regions", "problems"]


def problems(fields: dict) -> int:
    """Problems of a (batched) GEMM instruction: ``batch``, where 0 means one."""
    return max(1, fields["batch"])


def _problem_words(geo: GemmGeometry, accumulate=False) -> dict:
    """Words of one problem's regions, by region name (``a``, ``b``, ``c``, ``p``); with ``accumulate``
    the C region is the int32 partial sums the instruction reads (its output fits inside it)."""
    c_words = int32_geometry(geo).c_words if accumulate else geo.c_words
    return {"a": geo.a_words, "b": geo.b_words, "c": c_words, "p": geo.p_words}


def int32_geometry(geo: GemmGeometry) -> GemmGeometry:
    """The same problem with int32 output: the layout of an accumulate instruction's partial sums."""
    return GemmGeometry(geo.config, geo.m, geo.k, geo.n, geo.int4, 0)


def regions(fields: dict, config) -> dict:
    """``{"a"|"b"|"c"|"p": (first word, words)}``: the whole batch's operand, result and parameter regions
    (``c``: the region the instruction reads or writes, the int32 partial sums with ``accumulate``)."""
    count = problems(fields)
    return {name: (fields[f"{name}_addr"], count * words)
            for name, words in _problem_words(geometry(fields, config), fields.get("accumulate", 0)).items()}


def check_gemm(fields: dict, config) -> int:
    """The error code the hardware reports for these GEMM fields (0 if the instruction is legal).

    Priority: BAD_MODE, then BAD_SHAPE, then ADDR_RANGE (a region of the whole batch past the end of
    memory), then OVERLAP (the batch's C region meets its A, B or P region).
    """
    if (fields["int4"] and not config.int4) or fields["rounding"] == 3 or \
            (not fields["requant"] and fields["out_format"] != 0) or (fields["accumulate"] and not config.accumulate) or \
            (not fields["b_signed"] and not config.unsigned_b):
        return isa.ERRORS["BAD_MODE"]
    if min(fields["m"], fields["k"], fields["n"]) == 0:
        return isa.ERRORS["BAD_SHAPE"]
    spans = regions(fields, config)
    if any(addr + words > config.mem_depth for addr, words in spans.values()):
        return isa.ERRORS["ADDR_RANGE"]
    c_lo, c_words = spans["c"]
    if any(addr < c_lo + c_words and c_lo < addr + words for addr, words in (spans["a"], spans["b"], spans["p"])):
        return isa.ERRORS["OVERLAP"]
    return 0


def geometry(fields: dict, config) -> GemmGeometry:
    return GemmGeometry(config, fields["m"], fields["k"], fields["n"], bool(fields["int4"]), fields["out_format"])


def _operand_values(blocks: np.ndarray, int4: bool, signed: bool) -> np.ndarray:
    """(blocks, k_rows, lanes) bytes -> (blocks * lanes, k) integer values."""
    b = blocks.astype(np.int64)
    if int4:
        nibbles = np.stack([b & 0xF, b >> 4], axis=2)                 # (blocks, k_rows, 2, lanes)
        vals = nibbles.reshape(b.shape[0], -1, b.shape[2])
        if signed:
            vals = np.where(vals >= 8, vals - 16, vals)
    else:
        vals = np.where(b >= 128, b - 256, b) if signed else b
    return vals.transpose(0, 2, 1).reshape(-1, vals.shape[1])


def _int32s(words: np.ndarray, cols: int) -> np.ndarray:
    """(..., width) bytes -> (..., cols) signed int32 values of each word's first ``cols`` lanes."""
    raw = np.ascontiguousarray(words[..., :4 * cols]).view("<u4").astype(np.int64)
    return np.where(raw >= 1 << 31, raw - (1 << 32), raw)


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of int8/int4-valued int64 matrices, exactly, through float64 BLAS: every partial sum is
    an integer below ``K * 2**14 <= 2**53`` in magnitude, which float64 holds exactly."""
    assert a.shape[1] < 1 << 39
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def execute_gemm(memory: np.ndarray, fields: dict, config) -> int:
    """Execute one GEMM instruction in place on ``memory`` ((depth, width) uint8); return the error code.

    With ``accumulate`` every problem's int32 partial sums are read (tile order, as the hardware does)
    before any of its output is written, so an output narrower than int32 may overwrite them in place.
    """
    error = check_gemm(fields, config)
    if error:
        return error
    geo = geometry(fields, config)
    words = _problem_words(geo, fields["accumulate"])
    c_lo, c_total = regions(fields, config)["c"]
    partials = memory[c_lo:c_lo + c_total].copy() if fields["accumulate"] else None
    for g in range(problems(fields)):
        at = {name: fields[f"{name}_addr"] + g * count for name, count in words.items()}
        acc_in = None if partials is None else partials[g * words["c"]:(g + 1) * words["c"]]
        c_addr = fields["c_addr"] + g * geo.c_words
        memory[c_addr:c_addr + geo.c_words] = _problem(memory, at, acc_in, fields, geo)
    return 0


def _tiles(full: np.ndarray, geo: GemmGeometry) -> np.ndarray:
    """(mt*rows, nt*cols) -> (nt*mt, rows, cols) tiles, column-block major (the C layout's order)."""
    R, C = geo.config.rows, geo.config.cols
    return full.reshape(geo.mt, R, geo.nt, C).transpose(2, 0, 1, 3).reshape(-1, R, C)


def _problem(memory, at, acc_in, fields, geo) -> np.ndarray:
    """The C words of one problem whose regions start at ``at`` (names as in :func:`regions`);
    ``acc_in``: the words of its int32 partial sums (accumulate mode) or None."""
    from .requant import requantize_raw
    config = geo.config
    R, C = config.rows, config.cols
    a_words = memory[at["a"]:at["a"] + geo.a_words]
    b_words = memory[at["b"]:at["b"] + geo.b_words]
    p_words = memory[at["p"]:at["p"] + geo.p_words].reshape(geo.nt, PARAM_WORDS, config.mem_width)
    a = _operand_values(blocks_from_words(a_words, R, geo.k_rows, geo.a_block_words), geo.int4, fields["a_signed"])
    b = _operand_values(blocks_from_words(b_words, C, geo.k_rows, geo.b_block_words), geo.int4, fields["b_signed"])
    acc = exact_matmul(a, b.T)                                           # (mt*R, nt*C)
    acc = ((acc + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)                   # int32 accumulators wrap
    bias, mult, shift = (_int32s(p_words[:, slot], C).reshape(-1) for slot in range(PARAM_WORDS))
    if acc_in is not None:        # the partial sums replace the bias
        geo32 = int32_geometry(geo)
        tiles = _int32s(acc_in.reshape(geo.mt * geo.nt, geo32.tile_words * config.mem_width // (4 * C), -1), C)
        bias = tiles[:, :R].reshape(geo.nt, geo.mt, R, C).transpose(1, 2, 0, 3).reshape(geo.mt * R, geo.nt * C)
    out = requantize_raw(acc, bias, mult & 0x7FFFFFFF, np.minimum(shift & 0x3F, 62),
                         enable=bool(fields["requant"]), rounding=fields["rounding"],
                         zero_point=fields["zero_point"], out_format=fields["out_format"], relu=bool(fields["relu"]))
    return pack_c(_tiles(out, geo), geo)
