"""Memory layout of the GATHER instruction (gateware, golden model and driver share it).

Layout (addresses in memory words of ``W = Config.mem_width`` bytes, everything little-endian):

* **table**: ``rows`` rows of ``dim`` elements (int8 or int32); row ``r`` starts at word
  ``table_addr + r * row_words`` (:func:`row_words`), unused bytes of its last word are ignored;
* **indices**, **weights**, **offsets**: int32 arrays packed ``W // 4`` per word from their address;
  ``n_bags + 1`` offsets delimit the bags (bag ``b`` is ``indices[off[b]:off[b+1]]``). An index word
  is the row in bits ``[0:31]`` and the cache's *bypass* hint in bit :data:`BYPASS_BIT` = 31 (a miss
  of a bypass lookup is not allocated, see :mod:`tridsa.sw.row_cache`); plain row indices (bit 31
  clear) give plain LRU;
* **output**: ``n_bags`` rows of ``dim`` int32, each on :func:`out_words` whole words, unused lanes 0;
  in mode ``copy`` and with ``narrow``, ``n_bags`` rows of ``dim`` elements of the table's type laid out
  as table rows.

The mean mode divides with a radix-2 divider: :data:`MEAN_DIVIDE_STEPS` cycles per output word.
"""
from __future__ import annotations

import numpy as np

from .config import ceil_div

__all__ = ["DTYPES", "MODES", "BYPASS_BIT", "ROW_MASK", "MEAN_DIVIDE_STEPS", "ROWS_AHEAD", "row_words", "out_words",
           "line_words", "int32_words", "gather_regions"]

#: mode field code -> pooling mode.
MODES = ("sum", "mean", "max", "copy")
#: dtype field code -> element type of the table.
DTYPES = {0: np.dtype(np.int8), 1: np.dtype(np.int32)}
#: Bit of an index word that carries the bypass hint; the row is the bits below it.
BYPASS_BIT = 31
ROW_MASK = (1 << BYPASS_BIT) - 1
#: Steps of the mean mode's radix-2 divider: bits of its numerator ``2|s| + n < 2**34``.
MEAN_DIVIDE_STEPS = 34
#: Cache lines of missed rows the gather engine's rows reader holds (in flight or buffered).
ROWS_AHEAD = 16


def row_words(config, dim: int, dtype: int) -> int:
    """Words of one table row."""
    return ceil_div(dim * DTYPES[dtype].itemsize, config.mem_width)


def out_words(config, dim: int, dtype: int = 0, mode: int = 0, narrow: int = 0) -> int:
    """Words of one output row: ``dim`` int32, or in mode copy (3) and narrow a table row (:func:`row_words`)."""
    return row_words(config, dim, dtype) if mode == 3 or narrow else ceil_div(dim * 4, config.mem_width)


def line_words(config) -> int:
    """Words of one cache line: the largest row a GATHER accepts."""
    return max(1, config.cache_row_bytes // config.mem_width)


def int32_words(config, n: int) -> int:
    """Words of ``n`` packed int32 values."""
    return ceil_div(n, config.mem_width // 4)


def gather_regions(fields: dict, config) -> tuple:
    """``(inputs, output)``: the ``(first word, words)`` regions a GATHER reads (table, indices, offsets,
    and weights if weighted) and the one it writes (``n_bags`` rows of :func:`out_words`)."""
    dim, dtype, n, bags = fields["dim"], fields["dtype"], fields["n_indices"], fields["n_bags"]
    inputs = [(fields["table_addr"], fields["rows"] * row_words(config, dim, dtype)),
              (fields["idx_addr"], int32_words(config, n)), (fields["off_addr"], int32_words(config, bags + 1))]
    if fields["weighted"]:
        inputs.append((fields["w_addr"], int32_words(config, n)))
    return inputs, (fields["out_addr"], bags * out_words(config, dim, dtype, fields["mode"], fields["narrow"]))
