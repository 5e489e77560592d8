"""Lowering of matmuls to GEMM instructions (validation, layout, instruction fields)."""
from __future__ import annotations

import dataclasses

import numpy as np

from .gemm_layout import GemmGeometry, pack_a, pack_b, pack_params, unpack_c
from .operands import PRECISIONS, int32_vector, integer_matrix, operand_signedness
from .requant import OUT_FORMATS, ROUNDING, Requant

__all__ = ["GemmCall", "emit_gemm", "emit_gemm_batch", "gemm_words", "resolve_out_dtype"]

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
    """One emitted GEMM instruction: where its result lands and how to read it back.

    ``batch`` None: one matmul, :meth:`result` is (M, N); else ``batch`` problems, (batch, M, N).
    """
    region: str
    geometry: GemmGeometry
    out_dtype: str
    macs: int
    batch: int | None = None

    def result(self, program, memory) -> np.ndarray:
        words = program.read(memory, self.region)
        if self.batch is None:
            values = unpack_c(words, self.geometry)
        else:
            per_problem = words.reshape(self.batch, self.geometry.c_words, -1)
            values = np.stack([unpack_c(w, self.geometry) for w in per_problem])
        return values.astype(_NUMPY_OUT[self.out_dtype])


def emit_gemm(builder, a, b, bias=None, requant=None, relu=False, precision="int8", out_dtype=None,
              name="c") -> GemmCall:
    """Validate a matmul ``requant(a @ b + bias)``, put its operands in memory and emit one GEMM instruction."""
    a, b = integer_matrix(a, "a"), integer_matrix(b, "b")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a is {a.shape} and b is {b.shape}: a.shape[1] must equal b.shape[0]")
    if requant is not None and not isinstance(requant, Requant):
        raise TypeError(f"requant must be a tridsa.Requant or None, got {type(requant).__name__}")
    call = emit_gemm_batch(builder, a[None], b[None], bias, requant, relu, precision, out_dtype, name)
    return dataclasses.replace(call, batch=None)


def emit_gemm_batch(builder, a, b, bias=None, requant=None, relu=False, precision="int8", out_dtype=None,
                    name="c") -> GemmCall:
    """``batch`` independent same-shape matmuls in ONE GEMM instruction (one fixed cost for all).

    ``a`` (batch, M, K) and ``b`` (batch, K, N) integer arrays; ``bias`` None, (N,) for every problem or
    (batch, N); ``requant`` None, one :class:`Requant` for every problem, or a sequence of ``batch``
    Requants (per problem, e.g. per-channel) with one zero point and rounding. Problem ``g``'s operands
    are laid out at ``g`` times one problem's words from each region's start (``isa`` field ``batch``).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is invalid: expected one of {', '.join(PRECISIONS)}")
    if precision == "int4" and not builder.config.int4:
        raise ValueError("precision='int4' needs a Config with int4=True")
    a = integer_matrix(a, "a", ndim=3)
    b = integer_matrix(b, "b", ndim=3)
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ValueError(f"a is {a.shape} and b is {b.shape}: a.shape[0] must equal b.shape[0] "
                         "and a.shape[2] must equal b.shape[1]")
    batch, m, k = a.shape
    n = b.shape[2]
    if max(m, k, n, batch) >= 1 << 16:
        raise ValueError(f"matmul dimensions and batch must be < 65536, got M={m} K={k} N={n} batch={batch}")
    a_signed = operand_signedness(a, "a", precision)
    b_signed = operand_signedness(b, "b", precision)
    requants = _problem_requants(requant, batch)
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"relu must be True or False, got {relu!r}")
    out = resolve_out_dtype(out_dtype, requants[0])
    biases = _problem_biases(bias, batch, n)
    geo = GemmGeometry(builder.config, m, k, n, precision == "int4", OUT_FORMATS[out])
    params = []
    for rq, gbias in zip(requants, biases):
        mult, shift = rq.channel_arrays(n) if rq is not None else (np.zeros(n, np.int64), np.zeros(n, np.int64))
        params.append(pack_params(gbias, mult, shift, geo))
    zero_point, rounding = (0, 0) if requants[0] is None else (requants[0].zero_point, ROUNDING[requants[0].rounding])
    fields = dict(
        m=m, k=k, n=n, batch=batch,
        a_addr=builder.put(np.concatenate([pack_a(x, geo) for x in a])),
        b_addr=builder.put(np.concatenate([pack_b(x, geo) for x in b])),
        p_addr=builder.put(np.concatenate(params)),
        c_addr=builder.alloc(batch * geo.c_words, name),
        int4=int(geo.int4), a_signed=int(a_signed), b_signed=int(b_signed), requant=int(requants[0] is not None),
        rounding=rounding, out_format=OUT_FORMATS[out], relu=int(bool(relu)), zero_point=zero_point)
    builder.emit("GEMM", **fields)
    return GemmCall(name, geo, out, batch * m * n * k, batch)


def gemm_words(geo: GemmGeometry) -> int:
    """Memory words one problem of :func:`emit_gemm_batch` takes (operands, parameters, result)."""
    return geo.a_words + geo.b_words + geo.p_words + geo.c_words


def _problem_requants(requant, batch) -> list:
    """One Requant (or None) per problem; all share the instruction's zero point and rounding."""
    if requant is None or isinstance(requant, Requant):
        return [requant] * batch
    if not isinstance(requant, (list, tuple)) or len(requant) != batch:
        raise TypeError(f"requant must be None, a tridsa.Requant or a sequence of batch={batch} of them, "
                        f"got {type(requant).__name__}")
    if not all(isinstance(rq, Requant) for rq in requant):
        raise TypeError("every requant of the sequence must be a tridsa.Requant")
    if len({(rq.zero_point, rq.rounding) for rq in requant}) > 1:
        raise ValueError("the requants of one batch must share zero_point and rounding (one GEMM instruction)")
    return list(requant)


def _problem_biases(bias, batch, n) -> list:
    """One int32 bias vector (N,) per problem."""
    if bias is None:
        return [np.zeros(n, np.int64)] * batch
    bias = np.asarray(bias)
    if bias.ndim != 2:
        return [int32_vector(bias, "bias", n)] * batch
    if bias.shape != (batch, n):
        raise ValueError(f"bias must have shape ({n},) or ({batch}, {n}), got {bias.shape}")
    return [int32_vector(row, "bias", n) for row in bias]
