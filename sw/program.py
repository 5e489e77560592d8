"""A Program: instruction words + initial memory image + named output regions. Pure data.

The same Program runs on every backend; a failing case is saved with :meth:`Program.save` and replayed
with ``tridsa run FILE --backend B``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ..spec.config import Config
from ..spec import isa

__all__ = ["Program", "Region", "RunResult", "used_words"]


@dataclasses.dataclass(frozen=True)
class Region:
    """``words`` memory words starting at word address ``addr``."""
    addr: int
    words: int


def used_words(memory: np.ndarray) -> int:
    """Words of a ``(depth, width)`` uint8 memory image up to its last non-zero word (width a multiple of 4)."""
    words = memory.view(np.uint32).any(axis=1)
    return len(words) - int(np.argmax(words[::-1])) if words.any() else 0


@dataclasses.dataclass
class Program:
    """Instructions (``isa.INSTR_BITS``-bit ints), a memory image and the regions the results land in.

    ``memory`` is a ``(config.mem_depth, config.mem_width)`` uint8 array: word ``w`` holds bytes
    ``memory[w]``, byte 0 least significant.
    """
    config: Config
    instructions: list
    memory: np.ndarray
    outputs: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        shape = (self.config.mem_depth, self.config.mem_width)
        self.memory = np.asarray(self.memory, dtype=np.uint8)
        if self.memory.shape != shape:
            raise ValueError(f"Program.memory has shape {self.memory.shape}, the config needs {shape}")
        for word in self.instructions:
            if not 0 <= int(word) < 1 << isa.INSTR_BITS:
                raise ValueError(f"instruction {word:#x} does not fit {isa.INSTR_BITS} bits")

    def save(self, path) -> None:
        """Write the Program to ``path`` (a compressed .npz)."""
        meta = dict(config=self.config.to_dict(), instructions=[hex(int(w)) for w in self.instructions],
                    outputs={k: [r.addr, r.words] for k, r in self.outputs.items()})
        used = self.loaded_words
        with open(path, "wb") as f:
            np.savez_compressed(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                                memory=self.memory[:used])

    @classmethod
    def load(cls, path) -> "Program":
        if not Path(path).exists():
            raise FileNotFoundError(f"no Program file at {path}")
        try:
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile) or not {"meta", "memory"} <= set(data.files):
                raise ValueError("no meta and memory entries")
            with data:
                meta = json.loads(bytes(data["meta"]).decode())
                config = Config.from_dict(meta["config"])
                memory = np.zeros((config.mem_depth, config.mem_width), np.uint8)
                memory[:len(data["memory"])] = data["memory"]
        except (ValueError, KeyError, OSError, EOFError, UnicodeDecodeError):
            raise ValueError(f"{path} is not a Program file written by Program.save") from None
        return cls(config=config, instructions=[int(w, 16) for w in meta["instructions"]], memory=memory,
                   outputs={k: Region(*v) for k, v in meta["outputs"].items()})

    @property
    def loaded_words(self) -> int:
        """Words of the memory image the host writes: up to the last non-zero word (the rest is zero)."""
        return used_words(self.memory)

    @property
    def host_bytes(self) -> int:
        """Bytes moved between host and accelerator memory: the loaded image in, the output regions out."""
        return (self.loaded_words + sum(r.words for r in self.outputs.values())) * self.config.mem_width

    def read(self, memory: np.ndarray, name: str) -> np.ndarray:
        """The words of output region ``name`` in a final memory image."""
        region = self.outputs[name]
        return memory[region.addr:region.addr + region.words]


@dataclasses.dataclass
class RunResult:
    """What a backend returns: the final memory image, the status and the performance counters.

    ``counters`` holds at least ``cycles`` (on the golden backend the cycle model's estimate),
    ``busy_gemm`` and the other engines' busy cycles, ``retired`` (instructions executed).
    """
    memory: np.ndarray
    error: int
    error_pc: int
    counters: dict

    @property
    def error_name(self) -> str:
        return isa.ERROR_NAMES.get(self.error, f"UNKNOWN_{self.error}")
