"""Quantized ONNX computations on the accelerator's engines, exact in integers.

The GEMM engine multiplies int8 or uint8 operands; ONNX's quantized ops multiply ``(a - a_zero_point)``
by ``(b - b_zero_point)``. :func:`integer_matmul` and :func:`integer_conv` map one onto the other exactly:

* a per-tensor input zero point ``za`` stays out of the operand: the engine multiplies the raw input and
  the bias absorbs ``-za * sum_k (b - zb)`` per output column (a convolution's input is padded with
  ``za`` on the host, so its padding is a real zero too);
* the other operand is ``b - zb``; when those values fit neither int8 nor uint8 they are split into
  int8 pieces ``b - zb = p0 + p1 + ...`` and K grows by the same factor (``[a, a] @ [p0; p1]``),
  likewise a per-row input zero point (``a - za`` as explicit pieces);
* the output stage is the engine's requant when :func:`tridsa.sw.onnx_requant.engine_requant` proves it
  equal to onnx's reference, else int32 out and :func:`tridsa.sw.onnx_requant.host_output_stage`.

:func:`gather_reduce` runs ``ReduceSum``/``ReduceMean`` over ``Gather(table, indices)`` as one
embedding_bag (sum) per index row on the gather engine; the reference's integer semantics (sums wrap in
the table's type, the mean truncates toward zero) are applied to the engine's exact int32 sums.

Every function returns ``(output, stats, note)``: ``stats`` the :class:`~tridsa.sw.driver.RunStats` of the
call, ``note`` says what ran on the host (empty if nothing),
and raises :class:`Unsupported` for a case the engines cannot run (the caller runs it on the host).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .onnx_requant import OUT_DTYPES, channel_values, engine_requant, host_output_stage
from .requant import wrap_int32

__all__ = ["Unsupported", "OutputQuant", "integer_matmul", "integer_conv", "conv_pads", "gather_reduce"]


class Unsupported(Exception):
    """The engines cannot run this case (the message says why); it runs on the host instead."""


@dataclasses.dataclass
class OutputQuant:
    """Output stage ``clip(rint(C * scale + zero_point))`` to ``dtype``; ``relu`` clamps at the zero point.

    ``scale`` is the float array exactly as the reference computes it (``a_scale * b_scale / y_scale``),
    broadcastable to the output; ``zero_point`` an integer array (or 0).
    """
    scale: np.ndarray
    zero_point: np.ndarray
    dtype: np.dtype
    relu: bool = False


#: Most int8 pieces an operand is split into (8-bit values minus 8-bit zero points need two).
_MAX_PIECES = 4


def operand_pieces(x: np.ndarray) -> list:
    """Same-dtype int8 or uint8 arrays summing to ``x`` (one if it fits, else int8 pieces)."""
    lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
    if -128 <= lo and hi <= 127:
        return [x.astype(np.int8)]
    if 0 <= lo and hi <= 255:
        return [x.astype(np.uint8)]
    if max(-lo, hi) > _MAX_PIECES * 127:
        raise Unsupported(f"operand values in [{lo}, {hi}] (more than {_MAX_PIECES} int8 pieces)")
    pieces, rest = [], x.astype(np.int64)
    while rest.any() or not pieces:
        piece = np.clip(rest, -128, 127)
        pieces.append(piece.astype(np.int8))
        rest = rest - piece
    return pieces


def _engine_operand(x: np.ndarray) -> np.ndarray:
    """``x`` itself (an int8/uint8 array), or Unsupported for another dtype."""
    if x.dtype in (np.int8, np.uint8):
        return x
    raise Unsupported(f"input of type {x.dtype} (the GEMM engine multiplies int8/uint8)")


def _scalar(zero_point) -> int | None:
    """A per-tensor zero point as an int (0 for None), or None if it has several values."""
    if zero_point is None:
        return 0
    values = np.unique(np.asarray(zero_point))
    if values.size != 1:
        return None
    return int(values[0])


#: Note of a call whose output stage ran on the host (int32 out of the engine).
HOST_OUTPUT_STAGE = "output stage on the host (engine requant not provably exact)"


def _finish(acc_out: np.ndarray, requant, out: OutputQuant | None, stats, pieces: int):
    """``(output, stats, note)`` from the engine result: as is, or through the host output stage.

    ``pieces``: the factor K grew by (operands split in int8 pieces), noted as it costs MACs."""
    notes = [f"K x{pieces} (operands split in int8 pieces)"] if pieces > 1 else []
    if out is None or requant is not None:
        return acc_out, stats, "; ".join(notes)
    y = host_output_stage(acc_out, out.scale, out.zero_point, out.dtype)
    y = np.maximum(y, np.asarray(out.zero_point).astype(out.dtype)) if out.relu else y
    return y, stats, "; ".join(notes + [HOST_OUTPUT_STAGE])


def _choose_requant(out: OutputQuant | None, shape: tuple, axis: int, bound: np.ndarray):
    """The engine Requant for ``out`` (or None: int32 out, host output stage)."""
    if out is None:
        return None
    if np.dtype(out.dtype) not in OUT_DTYPES:
        raise Unsupported(f"output type {np.dtype(out.dtype)}")
    scale = channel_values(out.scale, shape, axis)
    zero_point = _scalar(out.zero_point)
    if scale is None or zero_point is None:
        return None
    return engine_requant(scale.astype(np.asarray(out.scale).dtype), zero_point, bound)


def integer_matmul(acc, a, a_zero_point, b_centered, bias=None, out: OutputQuant | None = None):
    """``(a - a_zero_point) @ b_centered + bias`` (int32, wrapping) then ``out``; numpy matmul broadcasting.

    ``a``: int8/uint8 array (ndim >= 2); ``a_zero_point``: None, a scalar or an array broadcast against
    ``a`` as the reference does; ``b_centered``: the integer ``b - b_zero_point`` (ndim >= 2); ``bias``:
    None or int32 (N,).
    """
    a = _engine_operand(np.asarray(a))
    b_centered = np.asarray(b_centered, dtype=np.int64)
    if a.ndim < 2 or b_centered.ndim < 2:
        raise Unsupported("1-D matmul operand")
    za = _scalar(a_zero_point)
    if za is None:      # per-row (or otherwise varying) zero point: explicit centered pieces, no correction
        a_pieces = operand_pieces(a.astype(np.int64) - np.asarray(a_zero_point).astype(np.int64))
        za = 0
    else:
        a_pieces = [a]
    b_pieces = operand_pieces(b_centered)
    k, n = b_centered.shape[-2:]
    if a.shape[-1] != k:
        raise ValueError(f"matmul shapes {a.shape} and {b_centered.shape} do not match")
    batch_shape = np.broadcast_shapes(a.shape[:-2], b_centered.shape[:-2])
    out_shape = batch_shape + (a.shape[-2], n)
    user_bias = np.zeros(n, np.int64) if bias is None else np.asarray(bias, np.int64).reshape(n)
    # operands: every (a piece, b piece) pair side by side along K
    big_a = np.concatenate([p for p in a_pieces for _ in b_pieces], axis=-1)
    big_b = np.concatenate([p for _ in a_pieces for p in b_pieces], axis=-2)
    centered_a = np.abs(sum(p.astype(np.int64) for p in a_pieces) - za)
    a_max = centered_a.reshape(-1, k).max(axis=0)
    col_bound = (a_max @ np.abs(b_centered)).reshape(-1, n).max(axis=0) + np.abs(user_bias)
    requant = _choose_requant(out, out_shape, len(out_shape) - 1, col_bound)
    out_dtype = None if requant is None else OUT_DTYPES[np.dtype(out.dtype)]
    relu = bool(out is not None and out.relu and requant is not None)
    if b_centered.ndim == 2:
        bias_total = wrap_int32(user_bias - za * b_centered.sum(axis=0))
        flat = big_a.reshape(-1, big_a.shape[-1])
        y = acc.matmul(flat, big_b, bias=bias_total, requant=requant, relu=relu, out_dtype=out_dtype)
    else:
        a_b = np.broadcast_to(big_a, batch_shape + big_a.shape[-2:]).reshape(-1, *big_a.shape[-2:])
        b_b = np.broadcast_to(big_b, batch_shape + big_b.shape[-2:]).reshape(-1, *big_b.shape[-2:])
        sums = np.broadcast_to(b_centered, batch_shape + (k, n)).reshape(-1, k, n).sum(axis=1)
        bias_total = wrap_int32(user_bias[None, :] - za * sums)
        y = acc.matmul_batch(np.ascontiguousarray(a_b), np.ascontiguousarray(b_b), bias=bias_total,
                             requant=requant, relu=relu, out_dtype=out_dtype)
    return _finish(y.reshape(out_shape), requant, out, acc.last_run, len(a_pieces) * len(b_pieces))


def conv_pads(auto_pad: str, size: tuple, kernel: tuple, strides: tuple, dilations: tuple, pads) -> list:
    """ONNX Conv padding as ``[begin_0, begin_1, ..., end_0, end_1, ...]``."""
    rank = len(size)
    if auto_pad in ("", "NOTSET"):
        return list(pads) if pads else [0] * (2 * rank)
    if auto_pad == "VALID":
        return [0] * (2 * rank)
    begins, ends = [], []
    for i in range(rank):
        out = -(-size[i] // strides[i])
        total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size[i], 0)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins + ends


def integer_conv(acc, x, x_zero_point, w_centered, bias=None, out: OutputQuant | None = None, *,
                 auto_pad="NOTSET", pads=None, strides=None, dilations=None, group=1):
    """ONNX Conv of ``x - x_zero_point`` (int8/uint8, per-tensor zero point) with the integer weights
    ``w_centered`` (``w - w_zero_point``, OI[H]W), + int32 ``bias``, then ``out``; 1-D and 2-D only."""
    x = _engine_operand(np.asarray(x))
    w_centered = np.asarray(w_centered, dtype=np.int64)
    if x.ndim not in (3, 4) or w_centered.ndim != x.ndim:
        raise Unsupported(f"{x.ndim - 2}-D convolution (the engine runs 1-D and 2-D)")
    zx = _scalar(x_zero_point)
    if zx is None:
        raise Unsupported("x_zero_point with several values")
    if x.ndim == 3:                                    # 1-D conv as a 2-D conv of height 1
        x, w_centered = x[:, :, None, :], w_centered[:, :, None, :]
        rank1 = True
    else:
        rank1 = False
    spatial = x.shape[2:]
    kernel = w_centered.shape[2:]

    def pair(value, default):
        value = list(value) if value else [default] * (1 if rank1 else 2)
        return [default] + value if rank1 else value

    strides, dilations = pair(strides, 1), pair(dilations, 1)
    if pads:
        pads = [0, pads[0], 0, pads[1]] if rank1 else list(pads)
    pads = conv_pads(auto_pad, spatial, kernel, strides, dilations, pads)
    cout, cin_g = w_centered.shape[:2]
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=zx)
    pieces = operand_pieces(w_centered)
    n = x.shape[0]
    if len(pieces) > 1:                                # every group's channels once per piece
        xp = np.broadcast_to(xp.reshape(n, group, 1, cin_g, *xp.shape[2:]),
                             (n, group, len(pieces), cin_g, *xp.shape[2:])).reshape(n, -1, *xp.shape[2:])
    w_big = np.stack(pieces, axis=1).reshape(cout, len(pieces) * cin_g, *kernel)
    user_bias = np.zeros(cout, np.int64) if bias is None else np.asarray(bias, np.int64).reshape(cout)
    bias_total = wrap_int32(user_bias - zx * w_centered.reshape(cout, -1).sum(axis=1))
    x_max = int(np.abs(x.astype(np.int64) - zx).max())
    bound = x_max * np.abs(w_centered).reshape(cout, -1).sum(axis=1) + np.abs(user_bias)
    oh = (xp.shape[2] - dilations[0] * (kernel[0] - 1) - 1) // strides[0] + 1
    ow = (xp.shape[3] - dilations[1] * (kernel[1] - 1) - 1) // strides[1] + 1
    if oh < 1 or ow < 1:
        raise Unsupported("the kernel does not fit the padded input (empty output)")
    requant = _choose_requant(out, (n, cout, ow) if rank1 else (n, cout, oh, ow), 1, bound)
    out_dtype = None if requant is None else OUT_DTYPES[np.dtype(out.dtype)]
    relu = bool(out is not None and out.relu and requant is not None)
    weights = w_big.astype(pieces[0].dtype)
    y = acc.conv2d(np.ascontiguousarray(xp), weights, bias=bias_total, stride=tuple(strides), padding=0,
                   dilation=tuple(dilations), groups=int(group), requant=requant, relu=relu, out_dtype=out_dtype)
    if rank1:
        y = y[:, :, 0, :]
    return _finish(y, requant, out, acc.last_run, len(pieces))


def gather_reduce(acc, table, indices, mode: str, keepdims: bool):
    """``Reduce{Sum,Mean}(Gather(table, indices, axis=0), axes=[indices.ndim - 1])`` on the gather engine.

    ``table``: 2-D int8/int32; ``indices``: integer, ndim >= 1, negative values count from the end
    (as Gather's). The engine sums each index row as one bag (int32, wrapping); the result is wrapped
    to the table's type (the reference sums in it) and, for ``"mean"``, divided by the row length
    truncating toward zero (numpy's ``mean(dtype=int)``).
    """
    table, indices = np.asarray(table), np.asarray(indices)
    if table.ndim != 2 or table.dtype not in (np.int8, np.int32):
        raise Unsupported(f"table of type {table.dtype} and rank {table.ndim} (the gather engine pools 2-D int8/int32)")
    if indices.ndim < 1 or indices.shape[-1] == 0 or indices.size == 0:
        raise Unsupported("empty index rows")
    rows = table.shape[0]
    flat = indices.reshape(-1).astype(np.int64)
    if flat.min() < -rows or flat.max() >= rows:
        bad = int(flat[(flat < -rows) | (flat >= rows)][0])
        raise IndexError(f"Gather index {bad} is out of bounds for a table of {rows} rows")
    length = indices.shape[-1]
    sums = acc.embedding_bag(table, flat % rows, np.arange(0, flat.size, length), mode="sum").astype(np.int64)
    info = np.iinfo(table.dtype)
    span = 1 << info.bits
    sums = (sums - info.min) % span + info.min                     # wrap to the table's type
    if mode == "mean":
        sums = np.sign(sums) * (np.abs(sums) // length)
    y = sums.astype(table.dtype).reshape(indices.shape[:-1] + (table.shape[1],))
    if keepdims:
        y = np.expand_dims(y, indices.ndim - 1)
    return y, acc.last_run, ""
