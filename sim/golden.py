"""The golden backend: NumPy interpretation of the instruction stream (not cycle accurate)."""
from ..sw.golden import execute
from .backend_base import Backend

__all__ = ["GoldenBackend"]


class GoldenBackend(Backend):
    name = "golden"

    def run(self, program):
        self._check(program)
        return execute(program)
