"""Lowering of matmuls to GEMM instructions (validation, layout, instruction fields)."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..spec import isa
from ..spec.gemm_layout import GemmGeometry, pack_a, pack_b, pack_c, pack_params, unpack_c
from .operands import PRECISIONS, int32_vector, integer_matrix, operand_signedness
from ..spec.requant import OUT_FORMATS, ROUNDING
from .requant import Requant

__all__ = ["GemmCall", "GemmProblems", "emit_gemm", "emit_gemm_batch", "emit_problems", "gemm_problems",
           "gemm_words", "resolve_out_dtype"]

#: Largest M, K, N and batch of one instruction (its 16-bit fields).
_FIELD_MAX = isa.field_max("GEMM", "m")

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
        words = program.read(memory, self.region)[:max(1, self.batch or 1) * self.geometry.c_words]
        if self.batch is None:
            values = unpack_c(words, self.geometry)
        else:
            per_problem = words.reshape(self.batch, self.geometry.c_words, -1)
            values = np.stack([unpack_c(w, self.geometry) for w in per_problem])
        return values.astype(_NUMPY_OUT[self.out_dtype])


@dataclasses.dataclass
class GemmProblems:
    """``batch`` validated same-shape matmuls ``requant(a[g] @ b[g] + bias[g])`` and their output mode.

    ``mult``/``shift`` are per problem and column (zeros without requant); :meth:`part` cuts a sub-problem
    (problems, rows, columns, reduction range) for the tiling driver (:mod:`tridsa.sw.tiling`).
    """
    a: np.ndarray              # (batch, M, K)
    b: np.ndarray              # (batch, K, N)
    bias: np.ndarray           # (batch, N) int64
    mult: np.ndarray           # (batch, N) int64
    shift: np.ndarray          # (batch, N) int64
    requant: bool
    zero_point: int
    rounding: int
    relu: bool
    int4: bool
    a_signed: bool
    b_signed: bool
    out: str                   # output dtype name (OUT_FORMATS)

    @property
    def shape(self): return self.a.shape[0], self.a.shape[1], self.a.shape[2], self.b.shape[2]
    @property
    def macs(self):
        batch, m, k, n = self.shape
        return batch * m * k * n

    def geometry(self, config, out=None) -> GemmGeometry:
        _, m, k, n = self.shape
        return GemmGeometry(config, m, k, n, self.int4, OUT_FORMATS[out or self.out])

    def part(self, problems=slice(None), rows=slice(None), cols=slice(None), depth=slice(None)) -> "GemmProblems":
        return dataclasses.replace(self, a=self.a[problems, rows, depth], b=self.b[problems, depth, cols],
                                   bias=self.bias[problems, cols], mult=self.mult[problems, cols],
                                   shift=self.shift[problems, cols])


def gemm_problems(config, a, b, bias=None, requant=None, relu=False, precision="int8", out_dtype=None) -> GemmProblems:
    """Validate ``batch`` matmuls (arguments as :func:`emit_gemm_batch`); every check runs before anything runs."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is invalid: expected one of {', '.join(PRECISIONS)}")
    if precision == "int4" and not config.int4:
        raise ValueError("precision='int4' needs a Config with int4=True")
    a = integer_matrix(a, "a", ndim=3)
    b = integer_matrix(b, "b", ndim=3)
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ValueError(f"a is {a.shape} and b is {b.shape}: a.shape[0] must equal b.shape[0] "
                         "and a.shape[2] must equal b.shape[1]")
    batch, m, k = a.shape
    n = b.shape[2]
    a_signed = operand_signedness(a, "a", precision)
    b_signed = operand_signedness(b, "b", precision)
    if not b_signed and not config.unsigned_b:
        raise ValueError(f"b is unsigned ({b.dtype}), which this chip's GEMM engine does not take: the compact engine "
                         "(Config.gemm_engine=\"compact\") multiplies signed B only (Config.unsigned_b); pass b as int8")
    requants = _problem_requants(requant, batch)
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"relu must be True or False, got {relu!r}")
    out = resolve_out_dtype(out_dtype, requants[0])
    biases = np.stack(_problem_biases(bias, batch, n))
    zeros = np.zeros(n, np.int64)
    mults, shifts = zip(*(rq.channel_arrays(n) if rq is not None else (zeros, zeros) for rq in requants))
    zero_point, rounding = (0, 0) if requants[0] is None else (requants[0].zero_point, ROUNDING[requants[0].rounding])
    return GemmProblems(a, b, biases, np.stack(mults).astype(np.int64), np.stack(shifts).astype(np.int64),
                        requants[0] is not None, zero_point, rounding, bool(relu), precision == "int4",
                        a_signed, b_signed, out)


def emit_problems(builder, problems: GemmProblems, name="c", stage="whole", partials=None) -> GemmCall:
    """Lay out ``problems`` and emit ONE (batched) GEMM instruction.

    ``stage`` "whole": the complete result. A reduction split over instructions (K chunks) runs "first"
    (int32 sums of the first chunk plus the bias), "middle" (int32, adds ``partials``) and "last" (adds
    ``partials``, then the requant, ReLU and output format): ``partials`` is the previous chunk's int32
    result (batch, M, N), placed at the output region the instruction reads in accumulate mode.
    """
    batch, m, k, n = problems.shape
    if max(m, k, n, batch) > _FIELD_MAX:
        raise ValueError(f"matmul dimensions and batch must be <= {_FIELD_MAX}, got M={m} K={k} N={n} batch={batch}")
    final = stage in ("whole", "last")
    out = problems.out if final else "int32"
    geo = problems.geometry(builder.config, out)
    accumulate = stage in ("middle", "last")
    params = np.concatenate([pack_params(problems.bias[g], problems.mult[g], problems.shift[g], geo)
                             for g in range(batch)])
    fields = dict(
        m=m, k=k, n=n, batch=batch,
        a_addr=builder.put(np.concatenate([pack_a(x, geo) for x in problems.a])),
        b_addr=builder.put(np.concatenate([pack_b(x, geo) for x in problems.b])),
        p_addr=builder.put(params), int4=int(problems.int4), a_signed=int(problems.a_signed),
        b_signed=int(problems.b_signed), requant=int(problems.requant and final),
        rounding=problems.rounding if final else 0, out_format=OUT_FORMATS[out],
        relu=int(problems.relu and final), zero_point=problems.zero_point if final else 0,
        accumulate=int(accumulate))
    if accumulate:
        geo32 = problems.geometry(builder.config, "int32")
        tiles = np.stack([_c_tiles(np.asarray(p, np.int64), geo32) for p in partials])
        fields["c_addr"] = builder.put(pack_c(tiles.reshape(-1, *tiles.shape[2:]), geo32), name)
    else:
        fields["c_addr"] = builder.alloc(batch * geo.c_words, name)
    builder.emit("GEMM", **fields)
    return GemmCall(name, geo, out, problems.macs, batch)


def _c_tiles(values: np.ndarray, geo: GemmGeometry) -> np.ndarray:
    """(M, N) values -> (nt*mt, rows, cols) zero-padded tiles in the C layout's (column-block major) order."""
    R, C = geo.config.rows, geo.config.cols
    full = np.zeros((geo.mt * R, geo.nt * C), np.int64)
    full[:geo.m, :geo.n] = values
    return full.reshape(geo.mt, R, geo.nt, C).transpose(2, 0, 1, 3).reshape(-1, R, C)


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
    return emit_problems(builder, gemm_problems(builder.config, a, b, bias, requant, relu, precision, out_dtype), name)


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
