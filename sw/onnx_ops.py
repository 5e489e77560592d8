"""The ONNX nodes and node patterns the accelerator runs, read from their inputs and attributes.

Each handler takes ``(acc, node, inputs)`` and returns ``(outputs, stats, note)``; ``inputs`` are the
node's input arrays (None for an absent optional input). Semantics follow onnx's reference
implementation (``onnx.reference.ops``) bit for bit, see :mod:`tridsa.sw.onnx_kernels`;
``com.microsoft`` ``QGemm`` (which onnx has no reference for) follows ``QLinearMatMul``'s arithmetic
with ``scale = alpha * a_scale * b_scale / y_scale``.

Patterns (several nodes run as one engine call):

* QDQ: ``DequantizeLinear`` on both inputs (and on an int32 bias whose scale is ``x_scale * w_scale``)
  -> ``MatMul`` | ``Conv`` | ``Gemm`` [-> ``Relu``] -> ``QuantizeLinear`` runs as the equivalent
  ``QLinearMatMul`` / ``QLinearConv`` (integer accumulation, ``scale = x_scale * w_scale / y_scale``);
* ``Gather`` (axis 0, integer table) -> ``ReduceSum`` | ``ReduceMean`` over the index axis runs as
  embedding bags on the gather engine.
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from .onnx_kernels import OutputQuant, Unsupported, gather_reduce, integer_conv, integer_matmul

__all__ = ["NODE_HANDLERS", "qdq_group", "gather_group", "attributes"]


def attributes(node) -> dict:
    """A node's attributes as Python values."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _decode(value):
    return value.decode() if isinstance(value, bytes) else value


def _int32(x):
    return np.asarray(x).astype(np.int32)


def _conv_attrs(node) -> dict:
    attrs = attributes(node)
    return dict(auto_pad=_decode(attrs.get("auto_pad", "NOTSET")), pads=attrs.get("pads"),
                strides=attrs.get("strides"), dilations=attrs.get("dilations"), group=attrs.get("group", 1))


def _out_dtype(zero_point, fallback):
    return np.asarray(zero_point).dtype if zero_point is not None else np.dtype(fallback)


def qlinear_matmul(acc, node, inputs):
    a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp = inputs
    b_centered = _int32(b) if b_zp is None else _int32(b) - np.asarray(b_zp).astype(np.int32)
    out = OutputQuant(a_scale * b_scale / y_scale, 0 if y_zp is None else y_zp, _out_dtype(y_zp, a.dtype))
    y, stats, note = integer_matmul(acc, a, a_zp, b_centered, out=out)
    return [y], stats, note


def _conv_weights(w, w_zp):
    """QLinearConv's ``W - w_zero_point`` (a per-output-channel zero point along axis 0)."""
    W = _int32(w)
    if w_zp is None:
        return W
    w_zp = np.asarray(w_zp)
    if w_zp.ndim == 1 and w_zp.shape[0] == W.shape[0]:
        return W - w_zp.reshape((-1,) + (1,) * (W.ndim - 1)).astype(np.int32)
    return W - w_zp.astype(np.int32)


def qlinear_conv(acc, node, inputs):
    x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp = inputs[:8]
    bias = inputs[8] if len(inputs) > 8 else None
    if np.size(w_scale) > 1:
        w_scale = np.expand_dims(w_scale, (0,) + tuple(range(2, np.ndim(w))))
    out = OutputQuant(x_scale * w_scale / y_scale, 0 if y_zp is None else y_zp, _out_dtype(y_zp, x.dtype))
    y, stats, note = integer_conv(acc, x, x_zp, _conv_weights(w, w_zp), bias, out, **_conv_attrs(node))
    return [y], stats, note


def matmul_integer(acc, node, inputs):
    a, b, a_zp, b_zp = (list(inputs) + [None, None])[:4]
    b_centered = _int32(b) if b_zp is None else _int32(b) - np.asarray(b_zp)
    y, stats, note = integer_matmul(acc, a, a_zp, b_centered)
    return [y.astype(np.int32)], stats, note


def conv_integer(acc, node, inputs):
    x, w, x_zp, w_zp = (list(inputs) + [None, None])[:4]
    W = _int32(w)
    if w_zp is not None:
        w_zp = np.asarray(w_zp)
        W = W - (w_zp if w_zp.ndim == 0 else np.expand_dims(w_zp, tuple(range(1, W.ndim))))
    y, stats, note = integer_conv(acc, x, x_zp, W, None, None, **_conv_attrs(node))
    return [y.astype(np.int32)], stats, note


def _gemm_operands(a, b, attrs):
    if attrs.get("transA", 0):
        a = np.swapaxes(a, -1, -2)
    if attrs.get("transB", 0):
        b = np.swapaxes(b, -1, -2)
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


def qgemm(acc, node, inputs):
    """com.microsoft QGemm: ``A, a_scale, a_zp, B, b_scale, b_zp, [C int32], [y_scale], [y_zp]``."""
    inputs = list(inputs) + [None] * (9 - len(inputs))
    a, a_scale, a_zp, b, b_scale, b_zp, c, y_scale, y_zp = inputs
    attrs = attributes(node)
    a, b = _gemm_operands(np.asarray(a), np.asarray(b), attrs)
    b_centered = _int32(b) if b_zp is None else _int32(b) - np.asarray(b_zp).astype(np.int32)
    if c is not None and np.asarray(c).size not in (1, b.shape[-1]):
        raise Unsupported("QGemm bias C that is not per output column")
    bias = None if c is None else np.broadcast_to(np.asarray(c, np.int64).reshape(-1), (b.shape[-1],))
    alpha = np.float32(attrs.get("alpha", 1.0))
    if y_scale is None:                      # float output: alpha * a_scale * b_scale * (integer product)
        y, stats, note = integer_matmul(acc, a, a_zp, b_centered, bias)
        return [(y.astype(np.float32) * (alpha * a_scale * b_scale)).astype(np.float32)], stats, note
    out = OutputQuant(alpha * a_scale * b_scale / y_scale, 0 if y_zp is None else y_zp, _out_dtype(y_zp, a.dtype))
    y, stats, note = integer_matmul(acc, a, a_zp, b_centered, bias, out)
    return [y], stats, note


#: Single nodes the GEMM engine runs: (domain, op_type) -> handler.
NODE_HANDLERS = {
    ("", "QLinearMatMul"): qlinear_matmul,
    ("", "QLinearConv"): qlinear_conv,
    ("", "MatMulInteger"): matmul_integer,
    ("", "ConvInteger"): conv_integer,
    ("com.microsoft", "QGemm"): qgemm,
}


# -- QDQ pattern ---------------------------------------------------------------------------------------
def _dq_arrays(dq_node, q, scale, zero_point):
    """A DequantizeLinear's ``(q - zero_point)`` as int and its scale, both broadcast to ``q``'s shape."""
    attrs = attributes(dq_node)
    if attrs.get("block_size", 0):
        raise Unsupported("blocked DequantizeLinear")
    q = np.asarray(q)
    if q.dtype not in (np.int8, np.uint8, np.int32):
        raise Unsupported(f"DequantizeLinear of type {q.dtype}")
    scale = np.asarray(scale)
    shape = [1] * q.ndim
    if scale.size > 1:
        axis = attrs.get("axis", 1) % q.ndim
        shape[axis] = scale.size
    full_scale = np.broadcast_to(scale.reshape(shape) if scale.size > 1 else scale.reshape(()), q.shape)
    zp = np.zeros((), np.int64) if zero_point is None else np.asarray(zero_point).astype(np.int64)
    zp = zp.reshape(shape) if zp.size > 1 else zp.reshape(())
    return q.astype(np.int64) - zp, full_scale


def _per_tensor(q, scale, zero_point, what):
    """The scale and zero point of a per-tensor quantized int8/uint8 input, or Unsupported."""
    if np.size(scale) != 1 or (zero_point is not None and np.size(zero_point) != 1):
        raise Unsupported(f"{what} quantized per channel (the engine needs a per-tensor input zero point)")
    if np.asarray(q).dtype not in (np.int8, np.uint8):
        raise Unsupported(f"{what} of type {np.asarray(q).dtype}")
    return np.asarray(scale).reshape(()), None if zero_point is None else np.asarray(zero_point).reshape(())


def _column_scale(full_scale, axis):
    """The scale as one value per output column / channel along ``axis``, or Unsupported."""
    line = np.moveaxis(full_scale, axis, -1).reshape(-1, full_scale.shape[axis])
    if not (line == line[:1]).all():
        raise Unsupported("weights quantized along an axis that is not the output channel")
    return line[0]


def qdq_group(acc, nodes, get):
    """Run a QDQ group ``[anchor, (Relu), QuantizeLinear]``; ``get(name)`` returns a tensor (DQ inputs)."""
    anchor, q_node = nodes[0], nodes[-1]
    relu = len(nodes) == 3
    dq = [get.producer(name) for name in anchor.input if name]
    x_q, x_scale, x_zp = (get(n) if n else None for n in (list(dq[0].input) + [""])[:3])
    w_q, w_scale, w_zp = (get(n) if n else None for n in (list(dq[1].input) + [""])[:3])
    x_scale, x_zp = _per_tensor(x_q, x_scale, x_zp, "the input")
    w_centered, w_scale_full = _dq_arrays(dq[1], w_q, w_scale, w_zp)
    y_scale, y_zp = (get(n) if n else None for n in (list(q_node.input) + [""])[1:3])
    q_attrs = attributes(q_node)
    if np.size(y_scale) != 1 or (y_zp is not None and np.size(y_zp) != 1) or q_attrs.get("precision"):
        raise Unsupported("QuantizeLinear that is not per tensor")
    if y_zp is not None:
        out_dtype = np.asarray(y_zp).dtype
    else:
        out_type = q_attrs.get("output_dtype", 0)
        out_dtype = helper.tensor_dtype_to_np_dtype(out_type) if out_type else np.dtype(np.uint8)
    if np.dtype(out_dtype) not in (np.int8, np.uint8):
        raise Unsupported(f"QuantizeLinear to {np.dtype(out_dtype)}")
    y_scale = np.asarray(y_scale).reshape(())
    zero = 0 if y_zp is None else np.asarray(y_zp).reshape(())
    if anchor.op_type == "Conv":
        w_col = _column_scale(w_scale_full, 0)
    else:
        attrs = attributes(anchor)
        if anchor.op_type == "Gemm" and (attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            raise Unsupported("Gemm with alpha or beta other than 1")
        if w_centered.ndim < 2:
            raise Unsupported("1-D matmul operand")
        x_q, w_centered = _gemm_operands(np.asarray(x_q), w_centered, attrs if anchor.op_type == "Gemm" else {})
        if anchor.op_type == "Gemm" and attrs.get("transB", 0):
            w_scale_full = np.swapaxes(w_scale_full, -1, -2)
        w_col = _column_scale(w_scale_full, w_centered.ndim - 1)
    bias = None
    if len(dq) > 2:
        b_q, b_scale, b_zp = (get(n) if n else None for n in (list(dq[2].input) + [""])[:3])
        b_q = np.asarray(b_q)
        expected = x_scale * w_col
        if (b_q.dtype != np.int32 or b_zp is not None and np.any(np.asarray(b_zp) != 0)
                or not np.array_equal(np.broadcast_to(np.asarray(b_scale).reshape(-1), expected.shape), expected)):
            raise Unsupported("bias not quantized as int32 with scale x_scale * w_scale")
        bias = b_q.reshape(-1)
    if anchor.op_type == "Conv":
        scale = np.expand_dims(x_scale * w_col / y_scale, (0,) + tuple(range(2, w_q.ndim)))
        out = OutputQuant(scale, zero, out_dtype, relu)
        y, stats, note = integer_conv(acc, x_q, x_zp, w_centered, bias, out, **_conv_attrs(anchor))
    else:
        out = OutputQuant(x_scale * w_col / y_scale, zero, out_dtype, relu)
        y, stats, note = integer_matmul(acc, x_q, x_zp, w_centered, bias, out)
    return [y], stats, note


# -- Gather -> Reduce pattern --------------------------------------------------------------------------
def reduce_axes(node, get):
    """The axes of a ReduceSum/ReduceMean (attribute or input), or None if it reduces everything."""
    attrs = attributes(node)
    if "axes" in attrs:
        return list(attrs["axes"])
    if len(node.input) > 1 and node.input[1]:
        return [int(v) for v in np.asarray(get(node.input[1])).reshape(-1)]
    return None


def gather_group(acc, nodes, get):
    """Run ``[Gather, ReduceSum | ReduceMean]`` on the gather engine."""
    gather, reduce = nodes
    table, indices = get(gather.input[0]), np.asarray(get(gather.input[1]))
    if attributes(gather).get("axis", 0) % max(np.ndim(table), 1) != 0:
        raise Unsupported("Gather along an axis other than 0")
    axes = reduce_axes(reduce, get)
    rank = indices.ndim + np.ndim(table) - 1
    if axes is None or sorted(a % rank for a in axes) != [indices.ndim - 1]:
        raise Unsupported("reduction over axes other than the index axis")
    mode = "sum" if reduce.op_type == "ReduceSum" else "mean"
    y, stats, note = gather_reduce(acc, table, indices, mode, bool(attributes(reduce).get("keepdims", 1)))
    return [y], stats, note
