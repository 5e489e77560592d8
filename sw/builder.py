"""Builds Programs: a bump allocator over the memory image plus the instruction list."""
from __future__ import annotations

import numpy as np

from ..spec import isa
from .program import Program, Region

__all__ = ["ProgramBuilder", "ProblemTooLarge"]


class ProblemTooLarge(ValueError):
    """The operands do not fit the accelerator memory (Config.mem_depth)."""


class ProgramBuilder:
    """Lay out operands in memory and collect instructions; :meth:`build` appends HALT."""

    def __init__(self, config):
        self.config = config
        self.memory = np.zeros((config.mem_depth, config.mem_width), np.uint8)
        self.instructions = []
        self.outputs = {}
        self._next = 0

    def alloc(self, words: int, name: str = None) -> int:
        """Reserve ``words`` words; return the first word address (names an output region if given)."""
        if self._next + words > self.config.mem_depth:
            raise ProblemTooLarge(
                f"the problem needs more than Config.mem_depth={self.config.mem_depth} words of "
                f"{self.config.mem_width} bytes; use a larger mem_depth or smaller operands")
        addr = self._next
        self._next += words
        if name is not None:
            self.outputs[name] = Region(addr, words)
        return addr

    def put(self, words: np.ndarray, name: str = None) -> int:
        """Allocate and fill ``words`` ((n, mem_width) uint8); return the address."""
        addr = self.alloc(len(words), name)
        self.memory[addr:addr + len(words)] = words
        return addr

    def emit(self, op: str, **fields) -> None:
        if not self.config.has_op(op):
            engine = next(e for e, ops in isa.ENGINE_OPS.items() if op in ops)
            raise ValueError(f"{op} needs the {engine} engine, which this Config leaves out "
                             f"(Config.engines={self.config.engines})")
        self.instructions.append(isa.encode(op, **fields))

    def build(self) -> Program:
        return Program(self.config, self.instructions + [isa.encode("HALT")], self.memory.copy(), dict(self.outputs))
