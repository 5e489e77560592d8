"""Conversions between memory images ((depth, width) uint8) and what simulators load and dump."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..sw.program import used_words

__all__ = ["to_ints", "from_ints", "write_hex", "read_hex"]


def to_ints(memory: np.ndarray) -> list:
    """Words as Python ints (byte 0 least significant)."""
    return [int.from_bytes(row.tobytes(), "little") for row in memory]


def from_ints(words, width: int) -> np.ndarray:
    return np.array([list(int(w).to_bytes(width, "little")) for w in words], dtype=np.uint8).reshape(-1, width)


def write_hex(memory: np.ndarray, path: Path) -> None:
    """``$readmemh`` file of the words up to the last non-zero one (the simulator zeroes the rest)."""
    used = used_words(memory)
    lines = [row[::-1].tobytes().hex() for row in memory[:used]]
    Path(path).write_text("\n".join(lines) + "\n" if lines else "")


def read_hex(path: Path, depth: int, width: int) -> np.ndarray:
    """Parse a ``$writememh`` dump (comments and ``@address`` lines allowed)."""
    memory = np.zeros((depth, width), np.uint8)
    addr = 0
    for line in Path(path).read_text().splitlines():
        line = line.split("//")[0].strip()
        if not line:
            continue
        for token in line.split():
            if token.startswith("@"):
                addr = int(token[1:], 16)
                continue
            if any(c in token for c in "xXzZ"):
                raise ValueError(f"memory word {addr} is undefined ({token[:16]}...) in {path}")
            memory[addr] = np.frombuffer(bytes.fromhex(token.rjust(2 * width, "0"))[::-1], np.uint8)
            addr += 1
    return memory
