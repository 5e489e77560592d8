"""Golden semantics of the GATHER instruction: error checks, results and cache counters.

Layout: :mod:`tridsa.spec.gather_layout`.

The pooling is :func:`tridsa.sw.embedding.embedding_bag` on an integer table (int32 wrap-around sums,
TFLite rounding for ``mean``, first-of-equals for ``max``, empty bag -> zeros). Mode ``copy`` is the
sum written at the table's element width (wrapping): with one row per bag it copies the gathered rows,
which is how the driver moves FBGEMM rowwise-quantized rows (raw bytes) through the engine. ``narrow``
(modes sum and max) writes every pooled element as :func:`narrowed`: divided by ``2**out_shift``, rounded
half up and saturated to the table's element type (the int8 output of a quantized embedding stage, a
quarter of the int32 row's bytes). The cache is flushed at
the start of every GATHER and sees the indices ``indices[0:off[n_bags]]`` in order, so its counters are
:func:`tridsa.sw.row_cache.simulate` of that trace with the words' bypass hints.
"""
from __future__ import annotations

import numpy as np

from ..spec import isa
from ..spec.config import ceil_div
from ..spec.gather_layout import BYPASS_BIT, DTYPES, MODES, ROW_MASK, gather_regions, line_words, out_words, row_words
from .embedding import embedding_bag
from .quantize import round_shift
from .row_cache import simulate

__all__ = ["narrowed", "check_gather", "execute_gather", "gather_counters", "COUNTER_NAMES"]

#: Cache counters of the golden model (the hardware's ``gather_*`` counters of the same names).
COUNTER_NAMES = ("lookups", "hits", "misses", "evictions", "bypasses", "bytes_read")


def narrowed(pooled, shift: int, dtype: int) -> np.ndarray:
    """A narrow GATHER's output elements: ``pooled`` (int32 values) divided by ``2**shift``, rounded half
    up (``floor(x / 2**shift + 1/2)``), saturated to the element type of table dtype code ``dtype``."""
    info = np.iinfo(DTYPES[dtype])
    return np.clip(round_shift(pooled, shift, "half_up"), info.min, info.max).astype(DTYPES[dtype])


def _int32s(memory, addr: int, n: int) -> np.ndarray:
    words = memory[addr:addr + ceil_div(n, memory.shape[1] // 4)]
    return np.ascontiguousarray(words).reshape(-1).view("<i4")[:n].astype(np.int64)


def check_gather(memory: np.ndarray, fields: dict, config) -> int:
    """The error code the hardware reports for a GATHER (0 if legal).

    Priority: BAD_MODE (weights with a mode other than sum, narrow with mode mean or copy), BAD_SHAPE (``dim == 0`` or a
    row longer than a cache line), ADDR_RANGE (a region past the end of memory), BAD_OFFSETS
    (``off[0] != 0``, a decrease, or ``off[n_bags] > n_indices``; int32 compares), INDEX_RANGE (the row
    field, bits ``[0:31]``, of any of the ``n_indices`` index words ``>= rows``; the hint bit is ignored). The two data checks read memory, which the
    hardware does in a check pass before it writes anything.
    """
    if (fields["weighted"] and fields["mode"] != 0) or (fields["narrow"] and fields["mode"] in (1, 3)):
        return isa.ERRORS["BAD_MODE"]
    dim, dtype = fields["dim"], fields["dtype"]
    if dim == 0 or row_words(config, dim, dtype) > line_words(config):
        return isa.ERRORS["BAD_SHAPE"]
    n, bags = fields["n_indices"], fields["n_bags"]
    inputs, output = gather_regions(fields, config)
    if any(addr + words > config.mem_depth for addr, words in inputs + [output]):
        return isa.ERRORS["ADDR_RANGE"]
    off = _int32s(memory, fields["off_addr"], bags + 1)
    if off[0] != 0 or np.any(np.diff(off) < 0) or off[-1] > n:
        return isa.ERRORS["BAD_OFFSETS"]
    idx = _int32s(memory, fields["idx_addr"], n) & ROW_MASK
    if np.any(idx >= fields["rows"]):
        return isa.ERRORS["INDEX_RANGE"]
    return 0


def _table(memory, fields, config) -> np.ndarray:
    dim, dtype = fields["dim"], fields["dtype"]
    rw = row_words(config, dim, dtype)
    words = memory[fields["table_addr"]:fields["table_addr"] + fields["rows"] * rw]
    raw = np.ascontiguousarray(words).reshape(fields["rows"], rw * config.mem_width)
    size = DTYPES[dtype].itemsize
    return raw[:, :dim * size].copy().view(DTYPES[dtype].newbyteorder("<")).astype(DTYPES[dtype])


def _trace(memory, fields) -> tuple:
    """(rows, allocate flags, offsets) of the pooled indices."""
    off = _int32s(memory, fields["off_addr"], fields["n_bags"] + 1)
    words = _int32s(memory, fields["idx_addr"], int(off[-1])) & 0xFFFFFFFF
    return words & ROW_MASK, (words >> BYPASS_BIT) == 0, off


def execute_gather(memory: np.ndarray, fields: dict, config) -> int:
    """Execute one GATHER in place on ``memory`` ((depth, width) uint8); return the error code."""
    error = check_gather(memory, fields, config)
    if error:
        return error
    bags = fields["n_bags"]
    if bags == 0:
        return 0
    idx, _, off = _trace(memory, fields)
    weights = _int32s(memory, fields["w_addr"], idx.size) if fields["weighted"] else None
    copy = fields["mode"] == 3
    pooled = embedding_bag(_table(memory, fields, config), idx, off, "sum" if copy else MODES[fields["mode"]],
                           per_sample_weights=weights, include_last_offset=True)
    if fields["narrow"]:
        pooled = narrowed(pooled, fields["out_shift"], fields["dtype"])
    dtype = DTYPES[fields["dtype"]] if copy or fields["narrow"] else np.dtype(np.int32)
    ow = out_words(config, fields["dim"], fields["dtype"], fields["mode"], fields["narrow"])
    out = np.zeros((bags, ow * config.mem_width // dtype.itemsize), dtype.newbyteorder("<"))
    out[:, :fields["dim"]] = pooled.astype(dtype)               # copy: wraps to the element width
    memory[fields["out_addr"]:fields["out_addr"] + bags * ow] = out.view(np.uint8).reshape(bags * ow, -1)
    return 0


def gather_counters(memory: np.ndarray, fields: dict, config) -> dict:
    """Counters of one legal GATHER: the row cache's (cold, hinted LRU) plus ``bytes_read`` of row reads."""
    idx, allocate, _ = _trace(memory, fields)
    counters = simulate(idx, config.cache_sets, config.cache_ways, allocate)
    counters["bytes_read"] = counters["misses"] * row_words(config, fields["dim"], fields["dtype"]) * config.mem_width
    return counters
