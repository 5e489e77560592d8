"""Golden model: a NumPy interpreter of the instruction stream.

It defines what every instruction does to the memory image; every gateware backend must produce the
same final image, error code and failing instruction index bit for bit. Its ``cycles`` are the cycle
model's (:mod:`tridsa.sw.cycle_model`) for the instructions that ran without error, and so are
``mem_reads`` / ``mem_writes`` (words): estimates of the gateware's counters, not definitions.
"""
from __future__ import annotations

from ..spec import isa
from .cycle_model import instruction_cost, program_cycles
from .program import Program, RunResult

__all__ = ["execute", "EXECUTORS"]


def _gemm(memory, fields, config):
    from .gemm_golden import execute_gemm
    return execute_gemm(memory, fields, config)


def _gather(memory, fields, config):
    from .gather_golden import execute_gather
    return execute_gather(memory, fields, config)


def _rng(memory, fields, config):
    from .sketch_golden import execute_rng
    return execute_rng(memory, fields, config)


def _sketch(memory, fields, config):
    from .sketch_golden import execute_sketch
    return execute_sketch(memory, fields, config)


# op name -> function(memory words (depth, width) uint8, fields dict, config) -> error code (0 = ok).
# The function writes its outputs into ``memory`` in place.
EXECUTORS = {"GEMM": _gemm, "GATHER": _gather, "RNG": _rng, "SKETCH": _sketch}


def _legal_gather(op: str, memory, fields, config) -> bool:
    from .gather_golden import check_gather
    return op == "GATHER" and check_gather(memory, fields, config) == 0


def execute(program: Program) -> RunResult:
    """Run ``program`` and return the final memory image, error status and instruction count."""
    memory = program.memory.copy()
    config = program.config
    retired, error, error_pc, costs = 0, 0, 0, []
    for pc, word in enumerate(program.instructions):
        op, fields = isa.decode(int(word))
        if op is None or not config.has_op(op.name):
            error, error_pc = isa.ERRORS["ILLEGAL_OPCODE"], pc
            break
        if op.name == "HALT":
            break
        if op.name != "NOP":
            # the cost of a GATHER depends on its indices: taken from the memory it starts on, if legal
            cost = instruction_cost(op.name, fields, config, memory) if _legal_gather(op.name, memory, fields,
                                                                                      config) else None
            error = EXECUTORS[op.name](memory, fields, config)
            if error:
                error_pc = pc
                break
            costs.append(cost or instruction_cost(op.name, fields, config, memory))
        retired += 1
    return RunResult(memory=memory, error=error, error_pc=error_pc,
                     counters={"cycles": program_cycles(costs), "retired": retired,
                               "mem_reads": sum(c.reads for c in costs), "mem_writes": sum(c.writes for c in costs)})
