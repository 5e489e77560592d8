"""Golden model of the gather engine: ``embedding_bag`` on plain and rowwise-quantized tables.

Two families of tables:

* **Plain tables** (``int8``, ``int32``, ``float32``), pooled by :func:`embedding_bag` with the
  semantics of :func:`torch.nn.functional.embedding_bag`. Float tables match torch 2.x on CPU bit
  for bit: every bag is accumulated in float32 in index order starting from ``+0.0``; a weighted
  sum uses one fused multiply-add per row (``acc = fma(w, row, acc)``, FBGEMM's kernel); ``mean``
  divides the sum by the number of non-padding entries (``acc / count``, a float32 division).
  Integer tables give integer results (``int32``), see :func:`embedding_bag`.
* **Rowwise-quantized tables** in FBGEMM's fused layout (:func:`quantize_rowwise`), pooled by
  :func:`embedding_bag_rowwise` exactly as FBGEMM's reference ``EmbeddingSpMDM`` does.

Every index, offset and weight is checked; a bad argument raises one ``TypeError``,
``ValueError`` or ``IndexError`` that names it.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "MODES", "TABLE_DTYPES", "embedding_bag",
    "rowwise_row_bytes", "quantize_rowwise", "unpack_rowwise", "dequantize_rowwise",
    "embedding_bag_rowwise",
]

#: Pooling modes, as in torch.
MODES = ("sum", "mean", "max")
#: Element types of plain tables.
TABLE_DTYPES = (np.dtype(np.int8), np.dtype(np.int32), np.dtype(np.float32))

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_FP16_MAX = float(np.finfo(np.float16).max)


# -- float32 helpers -----------------------------------------------------------------------------

def _fma32(a, b, c) -> np.ndarray:
    """Correctly rounded float32 ``a * b + c`` (IEEE fused multiply-add), elementwise.

    The float32 product is exact in float64; the float64 sum is made round-to-odd with an exact
    TwoSum error term, so the final rounding to float32 is correct (53 >= 2 * 24 + 2 bits).
    """
    p = np.asarray(a, np.float32).astype(np.float64) * np.asarray(b, np.float32).astype(np.float64)
    c = np.asarray(c, np.float32).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        s = p + c
        bp = s - p
        err = (p - (s - bp)) + (c - bp)
        even = (s.view(np.uint64) & np.uint64(1)) == 0
        inexact = (err != 0) & even & np.isfinite(s)
        s = np.where(inexact, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32)


def _wrap32(x: np.ndarray) -> np.ndarray:
    """Reduce int64 values to the int32 range modulo 2**32 (two's complement wrap-around)."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


# -- argument checking ---------------------------------------------------------------------------

def _check_mode(mode) -> str:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is invalid: must be one of {', '.join(map(repr, MODES))}")
    return mode


def _check_int_array(value, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0 and arr.dtype == np.float64:   # a bare [] comes in as float64
        arr = arr.astype(np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _bags(indices, offsets, include_last_offset: bool, num_rows: int):
    """Check indices/offsets; return flat int64 indices, bag starts, bag ends, and the 2-D shape flag."""
    if not isinstance(include_last_offset, (bool, np.bool_)):
        raise TypeError(f"include_last_offset must be True or False, got {include_last_offset!r}")
    idx = _check_int_array(indices, "indices")
    if offsets is None:
        if idx.ndim != 2:
            raise ValueError(f"offsets=None needs 2-D indices (one bag per row), got indices.ndim={idx.ndim}")
        batch, length = idx.shape
        starts = np.arange(batch, dtype=np.int64) * length
        idx = idx.reshape(-1)
        ends = starts + length
    else:
        if idx.ndim != 1:
            raise ValueError(f"indices must be 1-D when offsets are given, got indices.ndim={idx.ndim}")
        off = _check_int_array(offsets, "offsets")
        if off.ndim != 1:
            raise ValueError(f"offsets must be 1-D, got offsets.ndim={off.ndim}")
        if include_last_offset and off.size == 0:
            raise ValueError("offsets must hold at least one element when include_last_offset=True")
        if off.size and off[0] != 0:
            raise ValueError(f"offsets[0] must be 0, got {off[0]}")
        drops = np.flatnonzero(np.diff(off) < 0)
        if drops.size:
            i = int(drops[0]) + 1
            raise ValueError(f"offsets must be non-decreasing: offsets[{i}]={off[i]} < offsets[{i - 1}]={off[i - 1]}")
        if off.size and off[-1] > idx.size:
            raise ValueError(f"offsets[-1]={off[-1]} must be <= len(indices)={idx.size}")
        if include_last_offset:
            starts, ends = off[:-1], off[1:]
        else:
            starts, ends = off, np.append(off[1:], np.int64(idx.size))
    bad = np.flatnonzero((idx < 0) | (idx >= num_rows))
    if bad.size:
        pos = int(bad[0])
        raise IndexError(f"indices[{pos}]={idx[pos]} is out of range for a table of {num_rows} rows "
                         f"(allowed 0..{num_rows - 1})")
    return idx, starts, ends


def _check_weights(per_sample_weights, mode: str, n: int, integer: bool) -> np.ndarray | None:
    if per_sample_weights is None:
        return None
    if mode != "sum":
        raise ValueError(f"per_sample_weights is only supported with mode='sum', got mode={mode!r}")
    w = np.asarray(per_sample_weights)
    if w.size != n:
        raise ValueError(f"per_sample_weights must have one weight per index ({n}), got {w.size}")
    w = w.reshape(-1)
    if integer:
        w = _check_int_array(w, "per_sample_weights")
        if w.size and (w.min() < _INT32_MIN or w.max() > _INT32_MAX):
            raise ValueError("per_sample_weights of an integer table must lie in the int32 range")
        return w
    if w.dtype != np.float32:
        raise TypeError(f"per_sample_weights of a float32 table must be float32, got dtype {w.dtype}")
    return w


# -- pooling core --------------------------------------------------------------------------------

def _pool(rows_of, starts, ends, mode, weights, keep, dim, kind, fused=True):
    """Pool bag by bag, visiting the entries of every bag in index order.

    ``rows_of(positions)`` returns the row values (float32, or int64 for integers) of the given
    flat positions, already weighted for rowwise tables. ``keep`` masks out padding entries.
    ``kind`` is ``"float"``, ``"int"`` or ``"rowwise"`` (the latter pools with a callback).
    ``fused`` selects a fused multiply-add for weighted float entries (else product, then sum).
    """
    nbags = starts.size
    lengths = ends - starts
    acc_dtype = np.int64 if kind == "int" else np.float32
    acc = np.zeros((nbags, dim), acc_dtype)
    seen = np.zeros(nbags, bool)
    count = np.zeros(nbags, np.int64)
    for k in range(int(lengths.max()) if nbags else 0):
        bags = np.flatnonzero(lengths > k)
        pos = starts[bags] + k
        live = keep[pos]
        bags, pos = bags[live], pos[live]
        if not bags.size:
            continue
        count[bags] += 1
        if kind == "rowwise":
            acc[bags] = rows_of(pos, acc[bags])
            continue
        row = rows_of(pos)
        if mode == "max":
            first = ~seen[bags]
            take = first[:, None] | (row > acc[bags])   # strict: ties and NaN keep the first value
            acc[bags] = np.where(take, row, acc[bags])
            seen[bags] = True
        elif kind == "int":
            w = 1 if weights is None else weights[pos][:, None]
            acc[bags] = _wrap32(acc[bags] + _wrap32(row * w))
        elif weights is None:
            acc[bags] = acc[bags] + row
        elif fused:
            acc[bags] = _fma32(weights[pos][:, None], row, acc[bags])
        else:
            acc[bags] = acc[bags] + weights[pos][:, None] * row
    return acc, count


def embedding_bag(table, indices, offsets=None, mode: str = "sum", per_sample_weights=None,
                  include_last_offset: bool = False, padding_idx: int | None = None) -> np.ndarray:
    """Pool rows of ``table`` per bag, as :func:`torch.nn.functional.embedding_bag`.

    Parameters
    ----------
    table : ndarray, shape (num_rows, dim), dtype int8, int32 or float32
    indices : integer array
        1-D row indices, or 2-D ``(batch, length)`` with ``offsets=None`` (fixed-size bags).
    offsets : integer array or None
        Start of every bag in ``indices``: ``offsets[0] == 0``, non-decreasing,
        ``offsets[-1] <= len(indices)``. Bag ``b`` is ``indices[offsets[b]:offsets[b+1]]``; the
        last bag runs to the end of ``indices`` unless ``include_last_offset``, in which case
        ``offsets`` has one more element than there are bags and the last element ends the last
        bag.
    mode : {"sum", "mean", "max"}
    per_sample_weights : array or None
        One weight per index, ``mode="sum"`` only. float32 for a float32 table; integers in the
        int32 range for an integer table.
    padding_idx : int or None
        Entries equal to this row (negative counts from the end) are skipped: they add nothing,
        are not counted by ``mean`` and never win ``max``.

    Returns
    -------
    ndarray, shape (num_bags, dim)
        float32 for a float32 table, int32 for an integer table. A bag with no (non-padding)
        entries gives zeros in every mode.

    Notes
    -----
    Float32 tables: sequential float32 accumulation in index order from ``+0.0``; a weighted
    entry adds ``fma(w, row, acc)`` (FBGEMM's kernel, torch's path without ``padding_idx``) or,
    when ``padding_idx`` is given, ``acc + f32(w * row)`` (torch's generic loop, which rounds the
    product first); ``mean`` is ``sum / count``; ``max`` keeps the first value unless a later one
    compares strictly greater (so ties and a leading NaN keep the first, a NaN after the first
    entry is ignored). This is what torch 2.x does on CPU, bit for bit, with one exception: with
    ``padding_idx`` and ``include_last_offset`` torch runs the last bag to the end of ``indices``
    even when ``offsets[-1] < len(indices)`` (inconsistent with its own path without
    ``padding_idx``); here the last offset always ends the last bag.

    Integer tables (torch has no integer embedding_bag; this is tridsa's definition, the one the
    gather engine implements): the accumulator is int32 and wraps modulo 2**32 (two's
    complement); a weighted entry adds ``weight * row`` modulo 2**32. ``mean`` divides the wrapped
    int32 sum by the count with rounding half away from zero (``sign(s) * ((2|s| + n) // 2n)``,
    TFLite's integer average pooling). ``max`` is exact.
    """
    tab = np.asarray(table)
    if tab.dtype not in TABLE_DTYPES:
        raise TypeError(f"table dtype must be one of {', '.join(str(d) for d in TABLE_DTYPES)}, got {tab.dtype}")
    if tab.ndim != 2:
        raise ValueError(f"table must be 2-D (num_rows, dim), got shape {tab.shape}")
    mode = _check_mode(mode)
    num_rows, dim = tab.shape
    idx, starts, ends = _bags(indices, offsets, include_last_offset, num_rows)
    integer = tab.dtype.kind == "i"
    weights = _check_weights(per_sample_weights, mode, idx.size, integer)
    keep = np.ones(idx.size, bool)
    if padding_idx is not None:
        if isinstance(padding_idx, (bool, np.bool_)) or not isinstance(padding_idx, (int, np.integer)):
            raise TypeError(f"padding_idx must be an int or None, got {padding_idx!r}")
        if not -num_rows <= padding_idx < num_rows:
            raise ValueError(f"padding_idx={padding_idx} must be in {-num_rows}..{num_rows - 1} (table has {num_rows} rows)")
        keep = idx != (padding_idx % num_rows)
    work = tab.astype(np.int64) if integer else tab
    acc, count = _pool(lambda pos: work[idx[pos]], starts, ends, mode, weights, keep, dim,
                       "int" if integer else "float", fused=padding_idx is None)
    if mode == "mean":
        n = np.maximum(count, 1)[:, None]
        if integer:
            mag = (2 * np.abs(acc) + n) // (2 * n)
            acc = np.where(acc < 0, -mag, mag)
        else:
            acc = acc / n.astype(np.float32)
    return acc.astype(np.int32) if integer else acc.astype(np.float32)


# -- rowwise quantization (FBGEMM fused layout) --------------------------------------------------

def _check_bits(bits) -> int:
    if bits not in (8, 4) or isinstance(bits, bool):
        raise ValueError(f"bits={bits!r} is invalid: must be 8 or 4")
    return int(bits)


def rowwise_row_bytes(dim: int, bits: int) -> int:
    """Bytes of one fused row: ``dim`` values + fp32 scale/bias (8 bit) or ``dim/2`` + fp16 scale/bias (4 bit)."""
    bits = _check_bits(bits)
    if not isinstance(dim, (int, np.integer)) or dim < 1 or (bits == 4 and dim % 2):
        raise ValueError(f"dim={dim!r} is invalid: must be a positive integer{', even for bits=4' if bits == 4 else ''}")
    return dim + 8 if bits == 8 else dim // 2 + 4


def quantize_rowwise(table, bits: int = 8) -> np.ndarray:
    """Quantize a float32 table row by row into FBGEMM's fused layout.

    ``bits=8``: FBGEMM ``FloatToFused8BitRowwiseQuantizedSBFloat``. Per row: ``dim`` uint8 values,
    then float32 ``scale = (max - min) / 255`` and float32 ``bias = min`` (little endian);
    ``q = rint((x - min) * (255 / (max - min + 1e-8)))`` in float32, round half to even.

    ``bits=4``: FBGEMM ``FloatToFusedNBitRowwiseQuantizedSBHalf``. Per row: ``dim / 2`` bytes, two
    values per byte, the even column in the low nibble; then float16 scale and float16 bias.
    ``bias = fp16(min)``; ``scale = fp16((max - bias) / 15)`` (1 when that is 0 or its inverse is
    infinite); ``q = clip(rint((x - bias) * (1 / scale)), 0, 15)`` in float32.

    These are FBGEMM's reference formulas (``src/QuantUtils.cc``), which torch's
    ``quantized::embedding_bag_{byte,4bit}_prepack`` reproduce.

    Returns
    -------
    ndarray of uint8, shape (rows, :func:`rowwise_row_bytes` (dim, bits))
    """
    bits = _check_bits(bits)
    x = np.asarray(table)
    if x.dtype != np.float32:
        raise TypeError(f"table must be float32, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"table must be 2-D (rows, dim) with dim >= 1, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("table must hold finite values only")
    rows, dim = x.shape
    rowwise_row_bytes(dim, bits)
    if rows == 0:
        return np.zeros((0, rowwise_row_bytes(dim, bits)), np.uint8)
    lo = x.min(axis=1)
    hi = x.max(axis=1)
    if bits == 8:
        rng_ = hi - lo
        scale = rng_ / np.float32(255)
        inv = np.float32(255) / (rng_ + np.float32(1e-8))
        q = np.rint((x - lo[:, None]) * inv[:, None])
        # FBGEMM stores lrintf's result in a uint8; it always lies in 0..255 here.
        q = q.astype(np.uint8)
        sb = np.stack([scale, lo], axis=1).astype("<f4").view(np.uint8)
        return np.concatenate([q, sb], axis=1)
    if np.abs(x).max() > _FP16_MAX:
        raise ValueError(f"table values must lie within the float16 range (|x| <= {_FP16_MAX}) for bits=4")
    bias16 = lo.astype(np.float16)
    lo = bias16.astype(np.float32)
    rng_ = hi - lo
    with np.errstate(divide="ignore"):
        scale = np.where(rng_ == 0, np.float32(1), rng_ / np.float32(15)).astype(np.float32)
        scale = scale.astype(np.float16).astype(np.float32)
        scale = np.where(scale == 0, np.float32(1), scale)
        inv = np.float32(1) / scale
    bad = np.isinf(inv)
    scale = np.where(bad, np.float32(1), scale)
    inv = np.where(bad, np.float32(1), inv)
    q = np.clip(np.rint((x - lo[:, None]) * inv[:, None]), 0, 15).astype(np.uint8)
    packed = q[:, 0::2] | (q[:, 1::2] << 4)
    sb = np.stack([scale.astype(np.float16), bias16], axis=1).astype("<f2").view(np.uint8)
    return np.concatenate([packed, sb], axis=1)


def unpack_rowwise(qtable, bits: int):
    """Split a fused table into ``(q, scale, bias)``: uint8 (rows, dim), float32 (rows,), float32 (rows,)."""
    bits = _check_bits(bits)
    qt = np.asarray(qtable)
    if qt.dtype != np.uint8:
        raise TypeError(f"qtable must be uint8, got dtype {qt.dtype}")
    tail = 8 if bits == 8 else 4
    if qt.ndim != 2 or qt.shape[1] <= tail:
        raise ValueError(f"qtable must be 2-D (rows, bytes) with more than {tail} bytes per row for bits={bits}, got shape {qt.shape}")
    body = qt[:, :-tail]
    sb = np.ascontiguousarray(qt[:, -tail:])
    if bits == 8:
        sb = sb.view("<f4").astype(np.float32)
        q = body
    else:
        sb = sb.view("<f2").astype(np.float32)
        q = np.empty((qt.shape[0], 2 * body.shape[1]), np.uint8)
        q[:, 0::2] = body & 0x0F
        q[:, 1::2] = body >> 4
    return q, sb[:, 0].copy(), sb[:, 1].copy()


def dequantize_rowwise(qtable, bits: int) -> np.ndarray:
    """Dequantize a fused table as FBGEMM's reference: ``float32(double(q) * scale + double(bias))``."""
    q, scale, bias = unpack_rowwise(qtable, bits)
    out = q.astype(np.float64) * scale.astype(np.float64)[:, None] + bias.astype(np.float64)[:, None]
    return out.astype(np.float32)


def embedding_bag_rowwise(qtable, bits: int, indices, offsets=None, mode: str = "sum",
                          per_sample_weights=None, include_last_offset: bool = False) -> np.ndarray:
    """``embedding_bag`` on a fused rowwise-quantized table, as FBGEMM's reference ``EmbeddingSpMDM``.

    Per bag, in index order, starting from ``acc = +0.0`` (float32), each row with weight ``w``
    (1 without weights) does ``s = f32(w * scale)``, ``b = f32(w * bias)``,
    ``acc = fma(s, q, acc + b)`` elementwise. ``mean`` then multiplies by ``f32(1 / len)``
    (FBGEMM's ``normalize_by_lengths``; torch's quantized op only implements sum). ``max``
    (a tridsa extension; FBGEMM has none) pools the row values ``fma(scale, q, bias)`` with
    the strict comparison of :func:`embedding_bag`. Empty bags give zeros.

    Returns
    -------
    ndarray of float32, shape (num_bags, dim)
    """
    q, scale, bias = unpack_rowwise(qtable, bits)
    mode = _check_mode(mode)
    idx, starts, ends = _bags(indices, offsets, include_last_offset, q.shape[0])
    weights = _check_weights(per_sample_weights, mode, idx.size, integer=False)
    keep = np.ones(idx.size, bool)
    if mode == "max":
        def rows_of(pos):
            r = idx[pos]
            return _fma32(scale[r][:, None], q[r], bias[r][:, None])
        acc, _ = _pool(rows_of, starts, ends, mode, None, keep, q.shape[1], "float")
        return acc

    def step(pos, acc):
        r = idx[pos]
        s, b = scale[r], bias[r]
        if weights is not None:
            s, b = weights[pos] * s, weights[pos] * b
        return _fma32(s[:, None], q[r], acc + b[:, None])

    acc, _ = _pool(step, starts, ends, mode, weights, keep, q.shape[1], "rowwise")
    if mode == "mean":
        lengths = (ends - starts)
        recip = np.float32(1) / np.maximum(lengths, 1).astype(np.float32)
        acc = np.where(lengths[:, None] > 0, acc * recip[:, None], acc)
    return acc.astype(np.float32)
