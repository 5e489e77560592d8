"""Lowering of matmuls to GEMM instructions (validation, layout, instruction fields)."""
from __future__ import annotations

import dataclasses

import numpy as np

from .gemm_layout import GemmGeometry, pack_a, pack_b, pack_params, unpack_c
from .operands import PRECISIONS, int32_vector, integer_matrix, operand_signedness
from .requant import OUT_FORMATS, ROUNDING, Requant

__all__ = ["GemmCall", "emit_gemm", "resolve_out_dtype"]

_NUMPY_OUT = {"int32": np.int32, "int8": np.int8, "uint8": np.uint8, "int4": np.int8}


def resolve_out_dtype(out_dtype, requant) -> str:
    if out_dtype is None:
        return "int8" if requant is not None else "int32"
    name = out_dtype if isinstance(out_dtype, str) else np.dtype(out_dtype).name
    if name not in OUT_FORMATS:
        raise ValueError(f"out_dtype={out_dtype!r} is invalid: expected None or one of {', '.join(OUT_FORMATS)}")
    if requant is None and name != "int32":
        raise ValueError(f"out_dtype={name!r} needs a requant; without one the output is int32")
    return name


@dataclasses.dataclass
class GemmCall:
    """One emitted GEMM: where its result lands and how to read it back."""
    region: str
    geometry: GemmGeometry
    out_dtype: str
    macs: int

    def result(self, program, memory) -> np.ndarray:
        values = unpack_c(program.read(memory, self.region), self.geometry)
        return values.astype(_NUMPY_OUT[self.out_dtype])


def emit_gemm(builder, a, b, bias=None, requant=None, relu=False, precision="int8", out_dtype=None,
              name="c") -> GemmCall:
    """Validate a matmul, put its operands in memory and emit one GEMM instruction."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is invalid: expected one of {', '.join(PRECISIONS)}")
    if precision == "int4" and not builder.config.int4:
        raise ValueError("precision='int4' needs a Config with int4=True")
    a = integer_matrix(a, "a")
    b = integer_matrix(b, "b")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a is {a.shape} and b is {b.shape}: a.shape[1] must equal b.shape[0]")
    (m, k), n = a.shape, b.shape[1]
    if max(m, k, n) >= 1 << 16:
        raise ValueError(f"matmul dimensions must be < 65536, got M={m} K={k} N={n}")
    a_signed = operand_signedness(a, "a", precision)
    b_signed = operand_signedness(b, "b", precision)
    if requant is not None and not isinstance(requant, Requant):
        raise TypeError(f"requant must be a tridsa.Requant or None, got {type(requant).__name__}")
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"relu must be True or False, got {relu!r}")
    out = resolve_out_dtype(out_dtype, requant)
    bias = np.zeros(n, np.int64) if bias is None else int32_vector(bias, "bias", n)
    if requant is not None:
        mult, shift = requant.channel_arrays(n)
        zero_point, rounding = requant.zero_point, ROUNDING[requant.rounding]
    else:
        mult, shift = np.zeros(n, np.int64), np.zeros(n, np.int64)
        zero_point, rounding = 0, 0
    geo = GemmGeometry(builder.config, m, k, n, precision == "int4", OUT_FORMATS[out])
    fields = dict(
        m=m, k=k, n=n,
        a_addr=builder.put(pack_a(a, geo)), b_addr=builder.put(pack_b(b, geo)),
        p_addr=builder.put(pack_params(bias, mult, shift, geo)),
        c_addr=builder.alloc(geo.c_words, name),
        int4=int(geo.int4), a_signed=int(a_signed), b_signed=int(b_signed), requant=int(requant is not None),
        rounding=rounding, out_format=OUT_FORMATS[out], relu=int(bool(relu)), zero_point=zero_point)
    builder.emit("GEMM", **fields)
    return GemmCall(name, geo, out, m * n * k)
