"""Lowering of ``embedding_bag`` to GATHER instructions: validation, memory layout, emission.

Validation is :mod:`tridsa.sw.embedding`'s (torch's rules), so a bad argument raises there, before
anything runs. The driver lowers what the instruction does not have:

* ``padding_idx``: padding entries (and their weights) are removed from the bags, which is exact in
  every mode (they add nothing, are not counted by ``mean``, never win ``max``) and saves lookups;
* ``include_last_offset`` / 2-D indices: the instruction always takes ``n_bags + 1`` offsets;
* rows longer than a cache line: the table is split into column chunks of at most one line, one
  GATHER per chunk sharing the indices, offsets and weights; the chunks' outputs are concatenated;
* the row cache policy: with ``cache_hints=True`` (the default) the indices are profiled
  (:func:`tridsa.sw.cache_hints.hot_plan`), the table is laid out hottest row first and every index
  word carries the bypass hint of a cold row; ``cache_hints=False`` keeps the table order and plain LRU; a
  :class:`~tridsa.sw.cache_hints.HotPlan` (e.g. profiled on the previous batch) is applied as it is.

:class:`TableBatch` lowers the embedding_bags of several tables (one DLRM step) to ONE embedding_bag,
as FBGEMM's table-batched embedding (TBE) does: the tables are stacked into one table, every table's
indices are shifted by its first row, and the bags are ordered sample-major, so one GATHER pools all of
them and its output is ``(batch, tables, dim)``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .builder import ProblemTooLarge, ProgramBuilder
from ..spec import isa
from ..spec.config import ceil_div
from .cache_hints import HotPlan, hot_plan, identity_plan
from .embedding import _bags, _check_mode, _check_weights
from ..spec.gather_layout import BYPASS_BIT, DTYPES, MODES, line_words, out_words, row_words
from .gather_golden import COUNTER_NAMES, gather_counters, narrowed

__all__ = ["GatherCall", "TableBatch", "emit_gather", "gather_program", "run_gather", "rowwise_gather", "pack_table",
           "pack_int32"]

_MODE_CODES = {mode: code for code, mode in enumerate(MODES)}
_DTYPE_CODES = {dtype: code for code, dtype in DTYPES.items()}
#: Largest table rows, indices and bags of one instruction (its 24-bit fields), and elements per row.
_MAX_COUNT = isa.field_max("GATHER", "rows")
_MAX_DIM = isa.field_max("GATHER", "dim")
_MAX_SHIFT = isa.field_max("GATHER", "out_shift")


def pack_int32(values, width: int) -> np.ndarray:
    """int32 values -> (words, width) uint8, packed ``width // 4`` per word, zero padded."""
    v = np.asarray(values, np.int64).astype("<i4")
    per = width // 4
    padded = np.zeros(max(1, ceil_div(v.size, per)) * per, "<i4")
    padded[:v.size] = v
    return padded.view(np.uint8).reshape(-1, width)


def pack_table(table: np.ndarray, config) -> np.ndarray:
    """(rows, dim) int8/int32 table -> (rows * row_words, mem_width) uint8, one row per whole words."""
    dtype = table.dtype
    rw = row_words(config, table.shape[1], _DTYPE_CODES[dtype])
    raw = np.ascontiguousarray(table.astype(dtype.newbyteorder("<"))).view(np.uint8).reshape(table.shape[0], -1)
    out = np.zeros((table.shape[0], rw * config.mem_width), np.uint8)
    out[:, :raw.shape[1]] = raw
    return out.reshape(-1, config.mem_width)


@dataclasses.dataclass
class GatherCall:
    """The GATHER instructions of one ``embedding_bag`` and how to read their result back."""
    regions: list            # (output region name, first column, dim) per column chunk
    n_bags: int
    dim: int
    golden_counters: dict    # the cache model's counters summed over the instructions (gather_*)
    dtype: np.dtype = np.dtype(np.int32)     # of the output: int32, or the table's in mode copy

    def result(self, program, memory) -> np.ndarray:
        out = np.zeros((self.n_bags, self.dim), self.dtype)
        for name, col, dim in self.regions:
            if self.n_bags:
                words = program.read(memory, name)
                values = np.ascontiguousarray(words).view(self.dtype.newbyteorder("<")).reshape(self.n_bags, -1)
                out[:, col:col + dim] = values[:, :dim]
        return out


def _host_table(table) -> np.ndarray:
    """A table in host memory: 2-D int8/int32, any number of rows (:func:`run_gather` stages what a call uses)."""
    tab = np.asarray(table)
    if tab.dtype not in _DTYPE_CODES:
        raise TypeError(f"table dtype must be int8 or int32 for the gather engine, got {tab.dtype} "
                        "(rowwise-quantized tables: use embedding_bag_rowwise)")
    if tab.ndim != 2 or min(tab.shape) == 0:
        raise ValueError(f"table must be 2-D (num_rows, dim) with num_rows, dim >= 1, got shape {tab.shape}")
    if tab.shape[1] > _MAX_DIM:
        raise ValueError(f"table shape {tab.shape} is too large: dim <= {_MAX_DIM}")
    return tab


def _table(table) -> np.ndarray:
    """A table one GATHER instruction takes (at most :data:`_MAX_COUNT` rows)."""
    tab = _host_table(table)
    if tab.shape[0] > _MAX_COUNT:
        raise ValueError(f"table shape {tab.shape} is too large: num_rows <= {_MAX_COUNT} and dim <= {_MAX_DIM}")
    return tab


def normalize_bags(tab, indices, offsets, mode, per_sample_weights, include_last_offset, padding_idx):
    """Validate an embedding_bag (torch's rules) and lower what the instruction does not have:
    ``(indices, offsets (n_bags + 1), weights or None, mode)`` with padding entries removed."""
    if mode != "copy":
        mode = _check_mode(mode)
    num_rows = tab.shape[0]
    idx, starts, ends = _bags(indices, offsets, include_last_offset, num_rows)
    weights = _check_weights(per_sample_weights, mode, idx.size, integer=True)
    if padding_idx is not None:
        if isinstance(padding_idx, (bool, np.bool_)) or not isinstance(padding_idx, (int, np.integer)):
            raise TypeError(f"padding_idx must be an int or None, got {padding_idx!r}")
        if not -num_rows <= padding_idx < num_rows:
            raise ValueError(f"padding_idx={padding_idx} must be in {-num_rows}..{num_rows - 1} "
                             f"(table has {num_rows} rows)")
        keep = idx != padding_idx % num_rows
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        starts, ends = kept_before[starts], kept_before[ends]
        idx = idx[keep]
        weights = None if weights is None else weights[keep]
    n_bags = int(starts.size)
    if idx.size > _MAX_COUNT or n_bags > _MAX_COUNT:
        raise ValueError(f"{idx.size} indices and {n_bags} bags: both must be <= {_MAX_COUNT}")
    return idx, np.append(starts, ends[-1] if n_bags else 0), weights, mode


def emit_gather(builder: ProgramBuilder, table, indices, offsets=None, mode="sum", per_sample_weights=None,
                include_last_offset=False, padding_idx=None, name="emb", cache_hints=True, out_shift=None) -> GatherCall:
    """Validate an embedding_bag, lay out its operands and emit one GATHER per column chunk.

    ``mode`` is torch's ("sum", "mean", "max") or "copy": the rows' sum at the table's element width
    (wrapping), so a bag of one row returns that row as it is (how rowwise-quantized rows travel).
    ``out_shift``: None for int32 results, or 0-31 for a narrow GATHER (modes sum and max): results
    :func:`~tridsa.sw.gather_golden.narrowed` to the table's element type."""
    cfg = builder.config
    tab = _table(table)
    num_rows, dim = tab.shape
    idx, off, weights, mode = normalize_bags(tab, indices, offsets, mode, per_sample_weights, include_last_offset,
                                             padding_idx)
    narrow = _check_out_shift(out_shift, mode)
    n_bags = off.size - 1
    plan = _plan(cache_hints, idx, num_rows, cfg)
    rows_at, allocate = plan.lookups(idx)
    words = rows_at | (~allocate).astype(np.int64) << BYPASS_BIT
    dtype = _DTYPE_CODES[tab.dtype]
    shared = dict(rows=num_rows, dtype=dtype, mode=_MODE_CODES[mode], weighted=int(weights is not None),
                  narrow=narrow, out_shift=out_shift or 0, n_indices=int(idx.size), n_bags=n_bags,
                  idx_addr=builder.put(pack_int32(words, cfg.mem_width)),
                  off_addr=builder.put(pack_int32(off, cfg.mem_width)),
                  w_addr=builder.put(pack_int32(weights, cfg.mem_width)) if weights is not None else 0)
    chunk = _chunk(cfg, tab.dtype)
    regions, totals = [], dict.fromkeys(COUNTER_NAMES, 0)
    laid_out = tab if cache_hints is False else tab[plan.order]
    for col in range(0, dim, chunk):
        part = laid_out[:, col:col + chunk]
        region = f"{name}{col}"
        fields = dict(shared, dim=part.shape[1], table_addr=builder.put(pack_table(part, cfg)),
                      out_addr=builder.alloc(n_bags * out_words(cfg, part.shape[1], dtype, _MODE_CODES[mode], narrow),
                                             region))
        builder.emit("GATHER", **fields)
        for key, value in gather_counters(builder.memory, fields, cfg).items():
            totals[key] += value
        regions.append((region, col, part.shape[1]))
    assert all(row_words(cfg, d, dtype) <= line_words(cfg) for _, _, d in regions)
    return GatherCall(regions, n_bags, dim, {f"gather_{k}": v for k, v in totals.items()},
                      tab.dtype if mode == "copy" or narrow else np.dtype(np.int32))


def _plan(cache_hints, idx, num_rows: int, config) -> HotPlan:
    """The layout and hints of ``cache_hints``: True profiles ``idx`` (:func:`hot_plan`), False is plain LRU,
    a :class:`HotPlan` of a ``num_rows``-row table is used as it is (e.g. one profiled on an earlier batch)."""
    if isinstance(cache_hints, HotPlan):
        if cache_hints.order.shape != (num_rows,):
            raise ValueError(f"cache_hints is a HotPlan of a {cache_hints.order.size}-row table, the table has "
                             f"{num_rows} rows")
        return cache_hints
    if not isinstance(cache_hints, (bool, np.bool_)):
        raise TypeError(f"cache_hints must be True, False or a HotPlan, got {cache_hints!r}")
    return hot_plan(idx, num_rows, config.cache_sets * config.cache_ways) if cache_hints else identity_plan(num_rows)


def _check_out_shift(out_shift, mode) -> int:
    """The GATHER ``narrow`` field of ``out_shift`` (None: 0), or one clear error."""
    if out_shift is None:
        return 0
    if isinstance(out_shift, (bool, np.bool_)) or not isinstance(out_shift, (int, np.integer)) \
            or not 0 <= out_shift <= _MAX_SHIFT:
        raise ValueError(f"out_shift must be None or an integer in 0..{_MAX_SHIFT}, got {out_shift!r}")
    if mode not in ("sum", "max"):
        raise ValueError(f"out_shift (a narrow output) needs mode 'sum' or 'max', got mode={mode!r}")
    return 1


def gather_program(config, *args, **kwargs):
    """A Program of one embedding_bag (arguments as :func:`emit_gather`) and its :class:`GatherCall`."""
    builder = ProgramBuilder(config)
    call = emit_gather(builder, *args, **kwargs)
    return builder.build(), call


def run_gather(config, run, table, indices, offsets=None, mode="sum", per_sample_weights=None,
               include_last_offset=False, padding_idx=None, cache_hints=True, out_shift=None):
    """An embedding_bag of any size (arguments as :func:`emit_gather`), Program after Program.

    A call whose table and operands fit the accelerator memory is one Program. Otherwise only the rows
    the call touches are staged (FBGEMM's UVM-cache idea: the table stays in host memory, the
    accelerator memory holds the rows of the current Program) and the bags are split over as many
    Programs as their staged rows need; a bag too large even alone runs a cache line of columns at a time
    and, in modes sum and max, as sub-bags combined on the host (int32 wrap-around sum, max): exact.
    Unweighted int32 sums of bags of at most one row run in mode copy (see below). ``out_shift`` as
    :func:`emit_gather` (sub-bags are combined at int32 and narrowed here).
    ``run(program) -> RunResult``. Returns ``(out, runs, counters)``: the (n_bags, dim) result, the ``(program, result)`` of every Program and the cache model's counters.
    """
    tab = _host_table(table)
    idx, off, weights, mode = normalize_bags(tab, indices, offsets, mode, per_sample_weights, include_last_offset,
                                             padding_idx)
    _check_out_shift(out_shift, mode)
    single = np.diff(off) <= 1
    if mode != "sum" or weights is not None or out_shift is not None or not single.any():
        return _run_bags(config, run, tab, idx, off, weights, mode, cache_hints, out_shift)
    # A bag of at most one row is that row: GATHER mode copy writes it at the table's width (a quarter of
    # the int32 sum's bytes for int8), widened here. Worth a Program of its own if it saves more port
    # words than the fixed cost of one more GATHER.
    saved = int(single.sum()) * (out_words(config, tab.shape[1], _DTYPE_CODES[tab.dtype], 0)
                                 - out_words(config, tab.shape[1], _DTYPE_CODES[tab.dtype], 3))
    if not single.all() and saved <= _SPLIT_WORTH:
        return _run_bags(config, run, tab, idx, off, weights, mode, cache_hints, out_shift)
    out = np.zeros((off.size - 1, tab.shape[1]), np.int32)
    runs, counters = [], {}
    for pick, pick_mode in ((single, "copy"), (~single, "sum")):
        if pick.any():
            lengths = np.diff(off)[pick]
            positions = np.repeat(off[:-1][pick] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) \
                + np.arange(lengths.sum())
            part, part_runs, part_counters = _run_bags(config, run, tab, idx[positions],
                                                       np.concatenate([[0], np.cumsum(lengths)]), None, pick_mode,
                                                       cache_hints)
            out[pick] = part
            runs += part_runs
            for key, value in part_counters.items():
                counters[key] = counters.get(key, 0) + value
    return out, runs, counters


#: Port words a separate GATHER must save to be worth its fixed cost.
_SPLIT_WORTH = 64


def _run_bags(config, run, tab, idx, off, weights, mode, cache_hints, out_shift=None):
    """:func:`run_gather` on validated bags (``off``: n_bags + 1 offsets, padding removed)."""
    if tab.shape[0] * row_words(config, min(tab.shape[1], _chunk(config, tab.dtype)), _DTYPE_CODES[tab.dtype]) \
            <= config.mem_depth and tab.shape[0] <= _MAX_COUNT:
        try:
            program, call = gather_program(config, tab, idx, off, mode, weights, True, cache_hints=cache_hints,
                                           out_shift=out_shift)
        except ProblemTooLarge:
            pass
        else:
            result = run(program)
            return call.result(program, result.memory), [(program, result)], call.golden_counters
    longest = int(np.diff(off).max(initial=0))
    while True:
        try:
            if longest >= int(np.diff(off).max(initial=0)):
                return _staged(config, run, tab, idx, off, weights, mode, cache_hints, out_shift)
            # sum and max of a bag too large for the memory: sub-bags of at most ``longest`` rows, combined here
            counts = np.maximum(1, -(-np.diff(off) // longest))          # sub-bags per bag
            starts = np.cumsum(counts) - counts                          # each bag's first sub-bag
            within = np.arange(counts.sum()) - np.repeat(starts, counts)
            sub_off = np.append(np.repeat(off[:-1], counts) + longest * within, off[-1])
            parts, runs, counters = _staged(config, run, tab, idx, sub_off, weights, mode, cache_hints)
            if mode == "max":
                total = np.maximum.reduceat(parts, starts)
            else:
                total = (((np.add.reduceat(parts.astype(np.int64), starts) + (1 << 31)) & 0xFFFFFFFF)
                         - (1 << 31)).astype(np.int32)
            if out_shift is not None:
                total = narrowed(total, out_shift, _DTYPE_CODES[tab.dtype])
            return total, runs, counters
        except ProblemTooLarge:
            if mode not in ("sum", "max") or longest <= 1:
                raise
            longest = max(1, min(longest, int(np.diff(off).max(initial=0))) // 2)


def _staged(config, run, tab, idx, off, weights, mode, cache_hints, out_shift=None):
    """:func:`run_gather`'s staged path for validated bags (``off``: n_bags + 1 offsets); raises
    ProblemTooLarge if one bag's rows do not fit even a cache line of columns at a time."""
    n_bags = off.size - 1
    out = np.zeros((n_bags, tab.shape[1]), tab.dtype if mode == "copy" or out_shift is not None else np.int32)
    runs, counters = [], {}
    first, size, width = 0, max(1, n_bags), tab.shape[1]
    while first < n_bags or not runs:
        last = min(n_bags, first + size)
        lo, hi = off[first], off[last]
        rows, local = np.unique(idx[lo:hi], return_inverse=True)
        staged = tab[rows] if rows.size else tab[:1]
        try:
            parts = []
            for col in range(0, tab.shape[1], width):
                program, call = gather_program(config, staged[:, col:col + width], local, off[first:last + 1] - lo,
                                               mode, None if weights is None else weights[lo:hi], True,
                                               cache_hints=cache_hints, out_shift=out_shift)
                parts.append((col, program, call))
        except ProblemTooLarge:
            if size > 1:
                size = max(1, size // 2)
            elif width > _chunk(config, tab.dtype):     # one bag at a time: one cache line of columns at a time
                width = _chunk(config, tab.dtype)
            else:
                raise
            continue
        for col, program, call in parts:
            result = run(program)
            runs.append((program, result))
            out[first:last, col:col + width] = call.result(program, result.memory)
            for key, value in call.golden_counters.items():
                counters[key] = counters.get(key, 0) + value
        first = last
    return out, runs, counters


def _chunk(config, dtype) -> int:
    """Elements of one column chunk of a table row (a cache line)."""
    return line_words(config) * config.mem_width // np.dtype(dtype).itemsize


def rowwise_gather(config, run, qtable, bits, indices, offsets=None, mode="sum", per_sample_weights=None,
                   include_last_offset=False, cache_hints=True):
    """FBGEMM's rowwise-quantized embedding_bag, split where the memory traffic ends.

    GATHERs in mode copy fetch the fused row (quantized values, scale, bias) of every index through the
    row cache, one bag per index (:func:`run_gather`, so any table size); the host then dequantizes and
    pools those rows with FBGEMM's float32 arithmetic (:func:`tridsa.sw.embedding.embedding_bag_rowwise`
    over the gathered rows, which is that function over the table, bit for bit). Arguments as
    :func:`~tridsa.sw.embedding.embedding_bag_rowwise` (validated the same way, before anything runs).
    Returns ``(out float32, runs, counters)`` as :func:`run_gather`.
    """
    from .embedding import embedding_bag_rowwise, unpack_rowwise
    q = np.asarray(qtable)
    unpack_rowwise(q, bits)
    mode = _check_mode(mode)
    idx, starts, ends = _bags(indices, offsets, include_last_offset, q.shape[0])
    weights = _check_weights(per_sample_weights, mode, idx.size, integer=False)
    rows, runs, counters = run_gather(config, run, q.view(np.int8), idx, np.arange(idx.size), "copy",
                                      cache_hints=cache_hints)
    bags = np.append(starts, ends[-1] if ends.size else 0)        # bags are contiguous runs of positions
    out = embedding_bag_rowwise(rows.view(np.uint8), bits, np.arange(idx.size), bags, mode, weights,
                                include_last_offset=True)
    return out, runs, counters


class TableBatch:
    """Table-batched embedding: ``embedding_bag`` of several same-width tables as one call.

    ``tables``: a sequence of 2-D int8/int32 arrays, all with the same ``dim`` and dtype, any row counts.
    In the stacked table (never built: a call stages the rows it touches) table ``t``'s row ``r`` is row
    ``first_row[t] + r``.

    ``TableBatch(tables)(acc, indices_list, offsets_list, mode)`` returns ``(batch, len(tables), dim)``
    int32 where ``out[:, t]`` is ``acc.embedding_bag(tables[t], indices_list[t], offsets_list[t], mode)``
    bit for bit (pooling never mixes bags, and a bag only holds rows of its own table). ``acc`` is
    anything with the driver's ``embedding_bag`` (an :class:`~tridsa.sw.driver.Accelerator`, a
    :class:`~tridsa.sw.profile.CheckedAccelerator`).
    """

    def __init__(self, tables):
        tables = [_host_table(t) for t in tables]
        if not tables:
            raise ValueError("tables must hold at least one table")
        for t, tab in enumerate(tables):
            if (tab.shape[1], tab.dtype) != (tables[0].shape[1], tables[0].dtype):
                raise ValueError(f"tables[{t}] is {tab.dtype} with dim {tab.shape[1]}; every table must match "
                                 f"tables[0] ({tables[0].dtype}, dim {tables[0].shape[1]})")
        self.tables = tables
        self.num_tables = len(tables)
        self.rows = np.array([tab.shape[0] for tab in tables], np.int64)
        self.first_row = np.concatenate([[0], np.cumsum(self.rows)[:-1]])

    def stacked_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (sorted) of the stacked table, gathered from the tables (the stack is never built)."""
        table_of = np.searchsorted(self.first_row, rows, side="right") - 1
        out = np.empty((rows.size, self.tables[0].shape[1]), self.tables[0].dtype)
        for t in np.unique(table_of):
            pick = table_of == t
            out[pick] = self.tables[t][rows[pick] - self.first_row[t]]
        return out

    def lower(self, indices_list, offsets_list, per_sample_weights=None, include_last_offset=False):
        """The one embedding_bag: ``(indices, offsets, weights)`` of the stacked table, ``include_last_offset=True``
        form, bag ``b * num_tables + t`` = table ``t``'s bag ``b``.

        Every table's bags are validated with torch's rules (errors name the table); all tables need
        the same number of bags. ``per_sample_weights``: None or one weight array per table.
        """
        T = self.num_tables
        if len(indices_list) != T or len(offsets_list) != T:
            raise ValueError(f"indices_list and offsets_list must hold one entry per table ({T}), "
                             f"got {len(indices_list)} and {len(offsets_list)}")
        if per_sample_weights is not None and len(per_sample_weights) != T:
            raise ValueError(f"per_sample_weights must be None or hold one array per table ({T})")
        flat, weights, starts, ends, base = [], [], [], [], 0
        for t in range(T):
            try:
                idx, s, e = _bags(indices_list[t], offsets_list[t], include_last_offset, int(self.rows[t]))
                if per_sample_weights is not None:
                    weights.append(_check_weights(per_sample_weights[t], "sum", idx.size, integer=True))
            except (TypeError, ValueError, IndexError) as exc:
                raise type(exc)(f"table {t}: {exc}") from None
            if t and s.size != starts[0].size:
                raise ValueError(f"table {t} has {s.size} bags, table 0 has {starts[0].size}: "
                                 "every table needs one bag per sample")
            flat.append(idx + self.first_row[t])
            starts.append(s + base)
            ends.append(e + base)
            base += idx.size
        starts, ends = np.stack(starts, axis=1).reshape(-1), np.stack(ends, axis=1).reshape(-1)  # sample-major
        lengths = ends - starts
        off = np.concatenate([[0], np.cumsum(lengths)])
        positions = np.repeat(starts - off[:-1], lengths) + np.arange(off[-1])
        indices = np.concatenate(flat)[positions]
        return indices, off, (np.concatenate(weights)[positions] if weights else None)

    def __call__(self, acc, indices_list, offsets_list, mode="sum", per_sample_weights=None,
                 include_last_offset=False, **kwargs):
        """Pool every table's bags in one ``acc.embedding_bag`` call -> ``(batch, tables, dim)`` int32."""
        indices, off, weights = self.lower(indices_list, offsets_list, per_sample_weights, include_last_offset)
        if weights is not None:
            kwargs["per_sample_weights"] = weights
        # Only the rows the call touches are stacked (FBGEMM's UVM-cache idea); the last bag ends at the end
        # of ``indices``: plain offsets suffice
        rows, local = np.unique(indices, return_inverse=True)
        staged = self.stacked_rows(rows) if rows.size else self.tables[0][:1]
        out = acc.embedding_bag(staged, local, off[:-1], mode, **kwargs)
        return out.reshape(-1, self.num_tables, self.tables[0].shape[1])
