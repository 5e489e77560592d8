"""Golden semantics of the GEMM instruction on a memory image (see gemm_layout for the layout)."""
from __future__ import annotations

import numpy as np

from . import isa
from .gemm_layout import PARAM_WORDS, GemmGeometry, blocks_from_words, pack_c

__all__ = ["check_gemm", "execute_gemm", "regions", "problems"]


def problems(fields: dict) -> int:
    """Problems of a (batched) GEMM instruction: ``batch``, where 0 means one."""
    return max(1, fields["batch"])


def _problem_words(geo: GemmGeometry) -> dict:
    """Words of one problem's regions, by region name (``a``, ``b``, ``c``, ``p``)."""
    return {"a": geo.a_words, "b": geo.b_words, "c": geo.c_words, "p": geo.p_words}


def regions(fields: dict, config) -> dict:
    """``{"a"|"b"|"c"|"p": (first word, words)}``: the whole batch's operand, result and parameter regions."""
    count = problems(fields)
    return {name: (fields[f"{name}_addr"], count * words)
            for name, words in _problem_words(geometry(fields, config)).items()}


def check_gemm(fields: dict, config) -> int:
    """The error code the hardware reports for these GEMM fields (0 if the instruction is legal).

    Priority: BAD_MODE, then BAD_SHAPE, then ADDR_RANGE (a region of the whole batch past the end of
    memory), then OVERLAP (the batch's C region meets its A, B or P region).
    """
    if (fields["int4"] and not config.int4) or fields["rounding"] == 3 or \
            (not fields["requant"] and fields["out_format"] != 0):
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
    """(blocks, k_rows, lanes) bytes -> (blocks, lanes, k) integer values."""
    b = blocks.astype(np.int64)
    if int4:
        nibbles = np.stack([b & 0xF, b >> 4], axis=2)                 # (blocks, k_rows, 2, lanes)
        vals = nibbles.reshape(b.shape[0], -1, b.shape[2])
        if signed:
            vals = np.where(vals >= 8, vals - 16, vals)
    else:
        vals = np.where(b >= 128, b - 256, b) if signed else b
    return vals.transpose(0, 2, 1)


def _int32_words(words: np.ndarray, cols: int) -> np.ndarray:
    return words[:, :4 * cols].copy().view("<u4").astype(np.int64)


def execute_gemm(memory: np.ndarray, fields: dict, config) -> int:
    """Execute one GEMM instruction in place on ``memory`` ((depth, width) uint8); return the error code."""
    error = check_gemm(fields, config)
    if error:
        return error
    geo = geometry(fields, config)
    for g in range(problems(fields)):
        at = {name: fields[f"{name}_addr"] + g * words for name, words in _problem_words(geo).items()}
        memory[at["c"]:at["c"] + geo.c_words] = _problem(memory, at, fields, geo)
    return 0


def _problem(memory, at, fields, geo) -> np.ndarray:
    """The C words of one problem whose regions start at ``at`` (names as in :func:`regions`)."""
    from .requant import requantize_raw
    config = geo.config
    R, C = config.rows, config.cols
    a_words = memory[at["a"]:at["a"] + geo.a_words]
    b_words = memory[at["b"]:at["b"] + geo.b_words]
    p_words = memory[at["p"]:at["p"] + geo.p_words].reshape(geo.nt, PARAM_WORDS, config.mem_width)
    a = _operand_values(blocks_from_words(a_words, R, geo.k_rows, geo.a_block_words), geo.int4, fields["a_signed"])
    b = _operand_values(blocks_from_words(b_words, C, geo.k_rows, geo.b_block_words), geo.int4, fields["b_signed"])
    tiles = []
    for jb in range(geo.nt):
        bias, mult, shift = (_int32_words(p_words[jb, slot:slot + 1], C)[0] for slot in range(PARAM_WORDS))
        bias = np.where(bias >= 1 << 31, bias - (1 << 32), bias)
        for ib in range(geo.mt):
            acc = a[ib] @ b[jb].T                                      # int64, exact
            acc = ((acc + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)         # int32 accumulators wrap
            tiles.append(requantize_raw(acc, bias, mult & 0x7FFFFFFF, np.minimum(shift & 0x3F, 62),
                                        enable=bool(fields["requant"]), rounding=fields["rounding"],
                                        zero_point=fields["zero_point"], out_format=fields["out_format"],
                                        relu=bool(fields["relu"])))
    return pack_c(np.stack(tiles), geo)
