"""Any-size GEMMs: a batch of matmuls split over the accelerator memory, Program after Program.

A batch whose problems fit the memory runs as batched GEMM instructions, as many problems per Program
as fit. A larger problem is cut into tiles of ``rows`` x ``cols`` outputs (multiples of the array) and, if
that is cheaper or the only way to fit, into K chunks of ``depth``: the first chunk's instruction writes
int32 sums plus the bias, every later one runs in accumulate mode on the partial sums the host put back
at its C region (ISA field ``accumulate``), and only the last one requantizes, so a split never changes a
bit. Every Program holds one instruction; the host loads its operands (and partial sums) and reads its
result back. :func:`plan_gemm` picks the split with the fewest cycles of the cycle model, then the fewest
Programs.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .builder import ProblemTooLarge, ProgramBuilder
from ..spec import isa
from ..spec.config import ceil_div
from .cycle_model import estimate_gemm_cycles
from ..spec.gemm_layout import PARAM_WORDS, GemmGeometry
from .gemm_ops import _NUMPY_OUT, GemmProblems, emit_problems
from .host_memory import check_host_bytes
from ..spec.requant import OUT_FORMATS

__all__ = ["GemmPlan", "plan_gemm", "run_gemm", "FIELD_LIMIT"]

#: Sizes (M, K, N, batch) one GEMM instruction's 16-bit fields hold.
FIELD_LIMIT = isa.field_max("GEMM", "m")


@dataclasses.dataclass(frozen=True)
class GemmPlan:
    """Problems per Program and the tile of one Program: ``rows`` x ``cols`` outputs over ``depth`` of K."""
    problems: int
    rows: int
    cols: int
    depth: int
    cycles: int            # the cycle model's total for the whole batch

    def chunks(self, k: int) -> int:
        return ceil_div(k, self.depth)


def _words(config, rows, depth, cols, int4, out_format, chunked) -> int:
    """Memory words of one problem tile (A, B, parameters, C; int32 partial sums if K is chunked)."""
    geo = GemmGeometry(config, rows, depth, cols, int4, 0 if chunked else out_format)
    return geo.a_words + geo.b_words + geo.p_words + geo.c_words


def _candidates(total: int) -> list:
    """Block counts worth trying for a dimension of ``total`` blocks: all small ones, even splits, powers of 2."""
    picks = set(range(1, min(total, 32) + 1)) | {ceil_div(total, parts) for parts in range(1, 33)}
    picks |= {1 << e for e in range(total.bit_length()) if 1 << e <= total}
    return sorted(picks)


def _pieces(total: int, size: int) -> list:
    """``(size, count)`` of the pieces a dimension of ``total`` is cut into: full ones, then the ragged one."""
    return [(length, count) for length, count in ((size, total // size), (total % size, 1)) if length and count]


def plan_gemm(config, batch, m, k, n, int4=False, out_format=1) -> GemmPlan:
    """How to run ``batch`` problems of M x K x N: whole problems per Program, or tiles and K chunks."""
    depth_words = config.mem_depth
    limits = (m, k, n)
    if max(limits) <= FIELD_LIMIT:
        words = _words(config, m, k, n, int4, out_format, False)
        if words <= depth_words:
            per = min(batch, depth_words // words, FIELD_LIMIT)
            cycles = (batch // per) * estimate_gemm_cycles(config, m, k, n, int4, out_format, per)
            if batch % per:
                cycles += estimate_gemm_cycles(config, m, k, n, int4, out_format, batch % per)
            return GemmPlan(per, m, n, k, cycles)
    R, C = config.rows, config.cols
    mt, nt = ceil_div(m, R), ceil_div(n, C)
    best = None
    first_chunks = ceil_div(k, FIELD_LIMIT)
    if first_chunks > 1 and not config.accumulate:
        raise ProblemTooLarge(f"K={k} needs a K split, and this Config has no GEMM accumulate mode")
    for chunks in range(first_chunks, (k if config.accumulate else first_chunks) + 1):
        depth = ceil_div(k, chunks)
        if depth < 1 or (chunks > 1 and ceil_div(k, depth) != chunks):
            continue
        chunked = chunks > 1
        one = GemmGeometry(config, R, depth, C, int4, 0 if chunked else out_format)
        for nb in _candidates(min(nt, FIELD_LIMIT // C)):
            free = depth_words - nb * (one.b_block_words + PARAM_WORDS)
            mb = min(free // (one.a_block_words + nb * one.tile_words) if free > 0 else 0, mt, FIELD_LIMIT // R)
            if mb < 1:
                continue
            rows, cols = min(mb * R, m), min(nb * C, n)
            tiles = ceil_div(m, rows) * ceil_div(n, cols) * chunks
            cycles = batch * chunks * sum(
                count_m * count_n * estimate_gemm_cycles(config, rm, depth, cn, int4, out_format, 1, chunked)
                for rm, count_m in _pieces(m, rows) for cn, count_n in _pieces(n, cols))
            key = (cycles, chunks, tiles)
            if best is None or key < best[0]:
                best = (key, GemmPlan(1, rows, cols, depth, cycles))
        if best is not None and chunks > first_chunks + 4:
            break
    if best is None:
        raise ProblemTooLarge(f"a {m} x {k} x {n} GEMM does not fit Config.mem_depth={config.mem_depth} words even "
                              "as one row block by one column block" + (" of one K chunk" if config.accumulate else
                                                                        " (no accumulate mode to split K)"))
    return best[1]


def run_gemm(config, run, problems: GemmProblems, plan: GemmPlan | None = None):
    """Run ``problems`` Program after Program (``run(program) -> RunResult``).

    Returns ``(values (batch, M, N), runs)``: the results in the output dtype and the ``(program, result)``
    of every Program, in order.
    """
    batch, m, k, n = problems.shape
    check_host_bytes(batch * m * n * np.dtype(_NUMPY_OUT[problems.out]).itemsize, f"the {batch} x {m} x {n} result")
    if plan is None:
        plan = plan_gemm(config, batch, m, k, n, problems.int4, OUT_FORMATS[problems.out])
    out = None
    runs = []
    chunks = plan.chunks(k)
    for g0 in range(0, batch, plan.problems):
        gs = slice(g0, min(g0 + plan.problems, batch))
        for m0 in range(0, m, plan.rows):
            for n0 in range(0, n, plan.cols):
                partial = None
                for chunk in range(chunks):
                    stage = "whole" if chunks == 1 else "first" if chunk == 0 else \
                        "last" if chunk == chunks - 1 else "middle"
                    part = problems.part(gs, slice(m0, m0 + plan.rows), slice(n0, n0 + plan.cols),
                                         slice(chunk * plan.depth, (chunk + 1) * plan.depth))
                    builder = ProgramBuilder(config)
                    call = emit_problems(builder, part, "c", stage, partial)
                    program = builder.build()
                    result = run(program)
                    runs.append((program, result))
                    partial = call.result(program, result.memory)
                if out is None:
                    out = np.zeros((batch, m, n), partial.dtype)
                out[gs, m0:m0 + plan.rows, n0:n0 + plan.cols] = partial
    return out, runs
