"""Random Programs, a differential runner (golden vs a gateware backend) and a shrinker.

``tridsa fuzz --backend verilator --n N --seed S [--out DIR]`` runs ``N`` random Programs on the golden
model and on backend ``B`` and compares the final memory image, the error code, ``error_pc`` and the
``retired`` count bit for bit. A failing Program is shrunk (drop instructions, shrink shape fields, zero
memory words) and both versions are saved with :meth:`Program.save`, so ``tridsa run FILE --backend B
--check`` replays them. Program ``i`` of seed ``S`` is a pure function of ``(config, S, i)``.

What a Program holds (see :func:`random_program`):

* a chain of *structured* instructions of every op that has a generator in :data:`GENERATORS` (GEMM, batched
  or not, via :func:`tridsa.sw.gemm_ops.emit_gemm_batch` or raw random operands, GATHER via ``emit_gather``,
  RNG, SKETCH):
  odd shapes, INT4, every rounding/output format/distribution, reserved instruction bits set, inputs
  that alias each other or an earlier instruction's output, outputs that overwrite earlier regions;
* optionally one *risky* instruction: fields drawn generically from the :mod:`tridsa.spec.isa` table (so a
  new op is fuzzed the moment it is added to ``OPS``), a structured instruction with one field pushed to
  an edge (zero size, past the end of memory, top bits set), an output aliasing its own input, tampered
  index/offset memory, or an unknown opcode; it usually ends the Program with an error code;
* junk instructions after the error or ``HALT`` (they must not run), and random junk in unused memory.

Undefined behaviour the generator avoids (:func:`undefined_reason`): a *legal* instruction whose output
region overlaps one of its own input regions (the engines stream inputs while they write, so the result
would depend on timing). Where the golden model reports such aliasing as an error (``OVERLAP``) the case
is generated, since then no memory is written. Instructions are also kept below a work bound
(:data:`MAX_COST` estimated cycles per Program) so a run stays short.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import re
import time
from pathlib import Path

import numpy as np

from ..spec import isa
from .builder import ProblemTooLarge, ProgramBuilder
from ..spec.config import Config, ceil_div
from .cycle_model import MEAN_WORD_CYCLES
from .golden import EXECUTORS, execute
from .program import Program, Region

__all__ = ["random_program", "Mismatch", "compare", "shrink", "fuzz", "FuzzReport", "undefined_reason",
           "GENERATORS", "REGIONS", "make_backend", "MAX_COST", "cycle_limit", "run_bounded"]

#: Default bound on the estimated cycles of one Program's executed instructions.
MAX_COST = 20_000
#: :func:`cycle_limit`: a run may take CYCLE_FACTOR x the estimate + CYCLE_SLACK per instruction.
CYCLE_FACTOR, CYCLE_SLACK = 4, 200



def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(f"tridsa.sw.{module}") is not None
    except ModuleNotFoundError:
        return False


# ---- regions read and written by a legal instruction, and its estimated work ------------------
def _gemm_regions(fields, memory, config):
    from .gemm_golden import geometry, problems, regions
    g, spans = geometry(fields, config), regions(fields, config)
    cost = problems(fields) * g.mt * g.nt * (g.k_rows + 2 * config.rows + g.tile_words) + 50
    return [spans["a"], spans["b"], spans["p"]], [spans["c"]], cost


def _gather_regions(fields, memory, config):
    from ..spec.gather_layout import gather_regions, out_words, row_words
    rw = row_words(config, fields["dim"], fields["dtype"])
    n, bags = fields["n_indices"], fields["n_bags"]
    inputs, output = gather_regions(fields, config)
    ow = out_words(config, fields["dim"], fields["dtype"], fields["mode"], fields["narrow"])
    divide = MEAN_WORD_CYCLES * bags * ow if fields["mode"] == 1 else 0
    cost = n * (rw + 4) + bags * (ow + 4) + divide + 50
    return inputs, [output], cost


def _rng_regions(fields, memory, config):
    from .sketch_ops import RngGeometry
    g = RngGeometry(config, fields["n"])
    return [], [(fields["out_addr"], g.words)], g.beats + g.words + 50


def _sketch_regions(fields, memory, config):
    from .sketch_golden import geometry
    g = geometry(fields, config)
    inputs = [(fields["a_addr"], g.a_words), (fields["p_addr"], g.p_words)]
    cost = g.mt * g.nct * (g.K + g.tile_words + 20) + 50
    return inputs, [(fields["y_addr"], g.y_words)], cost


#: op name -> function(fields, memory, config) -> (input regions, output regions, estimated cycles), for a
#: legal instruction. Ops without an entry are fuzzed only with instructions the golden model rejects.
REGIONS = {"GEMM": _gemm_regions, "GATHER": _gather_regions, "RNG": _rng_regions, "SKETCH": _sketch_regions}


def _overlap(a, b):
    return a[1] > 0 and b[1] > 0 and a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def _step(memory, word, config):
    """Run one instruction on ``memory`` in place: ``(op, fields, error, cost, undefined reason or None)``."""
    op, fields = isa.decode(int(word))
    if op is None:
        return None, {}, isa.ERRORS["ILLEGAL_OPCODE"], 1, None
    if op.name in ("NOP", "HALT"):
        return op, fields, 0, 1, None
    before = memory.copy()
    error = EXECUTORS[op.name](memory, fields, config)
    if error:
        return op, fields, error, 10, None
    if op.name not in REGIONS:
        return op, fields, 0, 0, f"{op.name} has no region model (legal instances are not generated)"
    inputs, outputs, cost = REGIONS[op.name](fields, before, config)
    for out in outputs:
        for inp in inputs:
            if _overlap(out, inp):
                return op, fields, 0, cost, f"legal {op.name} writes {out} over its own input {inp}"
    return op, fields, 0, cost, None


def _walk(program: Program):
    """``(why the Program is undefined or None, estimated cycles of the instructions it executes)``."""
    memory = program.memory.copy()
    total = 0
    for word in program.instructions:
        op, _, error, cost, reason = _step(memory, word, program.config)
        if reason:
            return reason, total
        total += cost
        if error or (op is not None and op.name == "HALT"):
            return None, total
    return "the Program has no HALT", total


def undefined_reason(program: Program, max_cost: int = MAX_COST):
    """Why ``program`` is outside what the architecture defines (or too long to fuzz), else None."""
    reason, total = _walk(program)
    if reason is None and total > max_cost:
        return f"estimated {total} cycles > max_cost={max_cost}"
    return reason


def cycle_limit(program: Program) -> int:
    """Cycles a gateware run of ``program`` may take before it counts as a hang: the estimate of
    :func:`undefined_reason` (which Programs are kept below) with a wide margin, plus the memory
    latency per instruction. A hang then fails within seconds as "no halt within N cycles"."""
    _, total = _walk(program)
    per_instruction = CYCLE_SLACK + 8 * program.config.mem_latency
    return CYCLE_FACTOR * total + per_instruction * len(program.instructions)


# ---- generators --------------------------------------------------------------------------------
class _Context:
    """State of one Program being generated: builder, golden memory state, regions, cost."""

    def __init__(self, config, rng, max_cost):
        self.config, self.rng, self.max_cost = config, rng, max_cost
        self.builder = ProgramBuilder(config)
        self.regions = []         # (addr, words) of every region put or written so far
        self.cost = 0
        self._outputs = 0

    # -- sizes and data ------------------------------------------------------------------------
    def dim(self, unit, hi_units=3):
        """A small size, often ragged around multiples of ``unit``."""
        r = self.rng.random()
        if r < 0.15:
            return 1
        if r < 0.45:
            return int(self.rng.integers(1, unit * hi_units + 2))
        return max(1, unit * int(self.rng.integers(1, hi_units + 1)) + int(self.rng.integers(-1, 2)))

    def data(self, words):
        """Random operand words: uniform bytes, extremes, or small values."""
        shape = (words, self.config.mem_width)
        kind = self.rng.integers(4)
        if kind == 0:
            return self.rng.integers(0, 256, shape, dtype=np.uint8)
        if kind == 1:
            return self.rng.choice(np.array([0x00, 0x7F, 0x80, 0xFF, 0x01, 0x88, 0x77], np.uint8), shape)
        if kind == 2:
            return (self.rng.integers(-3, 4, shape) & 0xFF).astype(np.uint8)
        return np.zeros(shape, np.uint8) if self.rng.random() < 0.3 else self.rng.integers(0, 256, shape, dtype=np.uint8)

    # -- memory ---------------------------------------------------------------------------------
    def operand(self, words, data=None):
        """Address of an input of ``words`` words: fresh random data, or (aliasing) an existing region."""
        fits = [a for a, _ in self.regions if a + words <= self.config.mem_depth]
        if data is None and fits and self.rng.random() < 0.25:
            return int(self.rng.choice(fits))
        addr = self.builder.put(self.data(words) if data is None else data)
        self.regions.append((addr, words))
        return addr

    def output(self, words, inputs):
        """Address of an output region: fresh, or one overwriting an earlier region it may not alias."""
        cands = [a for a, _ in self.regions if a + words <= self.config.mem_depth
                 and not any(_overlap((a, words), i) for i in inputs)]
        self._outputs += 1
        name = f"out{self._outputs}"
        if cands and self.rng.random() < 0.2:
            addr = int(self.rng.choice(cands))
            self.builder.outputs[name] = Region(addr, words)
        else:
            addr = self.builder.alloc(words, name)
        self.regions.append((addr, words))
        return addr

    def reserved_bits(self, word):
        """Set random bits above an instruction's fields (they must be ignored)."""
        op, _ = isa.decode(word)
        used = isa.OPCODE_BITS + sum(f.width for f in op.fields) if op else isa.INSTR_BITS
        if used < isa.INSTR_BITS and self.rng.random() < 0.2:
            word |= int(self.rng.integers(1, 1 << 62)) << used & ((1 << isa.INSTR_BITS) - 1)
        return word


def _gen_gemm(ctx):
    cfg, rng = ctx.config, ctx.rng
    m, k, n = ctx.dim(cfg.rows), ctx.dim(max(cfg.rows, cfg.cols) * 2, 2), ctx.dim(cfg.cols)
    int4 = cfg.int4 and rng.random() < 0.3
    batch = int(rng.choice([0, 1, 1, 1, 2, 3]))   # 0 and 1: one problem
    if rng.random() < 0.35:                      # through the driver's lowering
        from .gemm_ops import emit_gemm_batch
        from .requant import Requant
        lo, hi = (-8, 8) if int4 else (-128, 128)
        a = rng.integers(lo, hi, (max(1, batch), m, k))
        b = rng.integers(lo, hi, (max(1, batch), k, n))
        if rng.random() < 0.3:                   # unsigned operands
            a, b = (a - lo).astype(np.uint8), (b - lo).astype(np.uint8)
        requant = out = None
        if rng.random() < 0.6:
            requant = Requant(multiplier=int(rng.integers(1, 1 << 31)), shift=int(rng.integers(20, 45)),
                              zero_point=int(rng.integers(-5, 6)),
                              rounding=str(rng.choice(["tflite", "half_up", "half_even"])))
            out = str(rng.choice(["int8", "uint8", "int4", "int32"]))
            if out in ("uint8",):
                requant = dataclasses.replace(requant, zero_point=abs(requant.zero_point))
        bias_shape = (n,) if rng.random() < 0.5 else (len(a), n)        # shared or per problem
        bias = rng.integers(-(1 << 20), 1 << 20, bias_shape) if rng.random() < 0.5 else None
        before = ctx.builder._next
        try:
            emit_gemm_batch(ctx.builder, a, b, bias, requant, bool(rng.random() < 0.3), "int4" if int4 else "int8",
                            out, name=f"gemm{len(ctx.builder.instructions)}")
        except ValueError as exc:            # e.g. a zero point outside the output format: raw fields instead
            if "zero_point" not in str(exc):
                raise
        else:
            ctx.regions.append((before, ctx.builder._next - before))
            return ctx.builder.instructions.pop()
    from .gemm_golden import geometry
    requant = int(rng.random() < 0.6)
    fields = dict(m=m, k=k, n=n, batch=batch, int4=int(int4), a_signed=int(rng.integers(2)),
                  b_signed=int(rng.integers(2)),
                  requant=requant, rounding=int(rng.integers(3)), out_format=int(rng.integers(4)) if requant else 0,
                  relu=int(rng.integers(2)), zero_point=int(rng.integers(-8, 9)) if rng.random() < 0.8
                  else int(rng.integers(-(1 << 15), 1 << 15)))
    g = geometry(dict(fields, a_addr=0, b_addr=0, c_addr=0, p_addr=0), cfg)
    blocks = max(1, batch) * g.nt                               # column blocks of the whole batch
    p = np.zeros((blocks, 3, cfg.mem_width), np.uint8)
    p[:, 0] = ctx.data(blocks)                                  # bias: any int32
    mult = rng.integers(0, 1 << 32, (blocks, cfg.cols), dtype=np.uint64)   # the hardware uses bits [0:31)
    shift = rng.choice([0, 1, 31, 40, 62, 63, 64 + 30, 255], (blocks, cfg.cols)) if rng.random() < 0.3 \
        else rng.integers(25, 45, (blocks, cfg.cols))
    p[:, 1, :4 * cfg.cols] = mult.astype("<u4").view(np.uint8).reshape(blocks, -1)
    p[:, 2, :4 * cfg.cols] = shift.astype("<u4").view(np.uint8).reshape(blocks, -1)
    a_words, b_words, c_words = (max(1, batch) * words for words in (g.a_words, g.b_words, g.c_words))
    a_addr = ctx.operand(a_words)
    b_addr = a_addr if rng.random() < 0.1 and a_addr + b_words <= cfg.mem_depth else ctx.operand(b_words)
    p_addr = ctx.operand(len(p), p.reshape(-1, cfg.mem_width))
    inputs = [(a_addr, a_words), (b_addr, b_words), (p_addr, len(p))]
    fields.update(a_addr=a_addr, b_addr=b_addr, p_addr=p_addr, c_addr=ctx.output(c_words, inputs))
    return isa.encode("GEMM", **fields)


def _gen_gather(ctx):
    from ..spec.gather_layout import line_words
    from .gather_ops import emit_gather
    cfg, rng = ctx.config, ctx.rng
    dtype = np.int8 if rng.random() < 0.5 else np.int32
    per_line = line_words(cfg) * cfg.mem_width // np.dtype(dtype).itemsize
    dim = int(rng.integers(1, per_line + 1)) if rng.random() < 0.8 else int(rng.integers(per_line, 2 * per_line + 2))
    rows = int(rng.integers(1, 40))
    info = np.iinfo(dtype)
    table = (rng.integers(info.min, int(info.max) + 1, (rows, dim)) if rng.random() < 0.5
             else rng.integers(-4, 5, (rows, dim))).astype(dtype)
    n = int(rng.integers(0, 24))
    hot = rng.integers(0, rows, max(1, rows // 4))
    idx = np.where(rng.random(n) < 0.6, rng.choice(hot, n), rng.integers(0, rows, n)).astype(np.int64)
    bags = int(rng.integers(0, 6))
    offsets = np.sort(rng.integers(0, n + 1, bags)) if bags else np.zeros(0, np.int64)
    if bags:
        offsets[0] = 0
    mode = str(rng.choice(["sum", "mean", "max"]))
    weights = (rng.integers(-1000, 1000, n) if rng.random() < 0.5 else rng.integers(-(1 << 31), 1 << 31, n)) \
        if mode == "sum" and rng.random() < 0.4 else None
    pad = int(rng.integers(0, rows)) if rng.random() < 0.15 else None
    shift = int(rng.integers(0, isa.field_max("GATHER", "out_shift") + 1)) if mode != "mean" and rng.random() < 0.3 \
        else None
    before = ctx.builder._next
    count = len(ctx.builder.instructions)
    emit_gather(ctx.builder, table, idx, offsets, mode, weights, include_last_offset=False, padding_idx=pad,
                name=f"emb{count}_", out_shift=shift)
    ctx.regions.append((before, ctx.builder._next - before))
    words = ctx.builder.instructions[count:]
    del ctx.builder.instructions[count:]
    return words


def _gen_rng(ctx):
    from .sketch_ops import RngGeometry
    cfg, rng = ctx.config, ctx.rng
    n = int(rng.integers(1, 4 * cfg.mem_width)) if rng.random() < 0.8 else int(rng.integers(1, 400))
    near_wrap = [0, 1, 0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF]
    ctr = [int(rng.choice(near_wrap)) if rng.random() < 0.4 else int(rng.integers(0, 1 << 32)) for _ in range(4)]
    key = [int(rng.integers(0, 1 << 32)) for _ in range(2)]
    out = ctx.output(RngGeometry(cfg, n).words, [])
    return isa.encode("RNG", n=n, out_addr=out, key0=key[0], key1=key[1], **{f"ctr{i}": ctr[i] for i in range(4)})


def _gen_sketch(ctx):
    from ..spec.sketch_layout import DISTRIBUTIONS
    from .sketch_dist import dist_params
    from .sketch_golden import geometry
    from .sketch_ops import pack_params
    cfg, rng = ctx.config, ctx.rng
    m, K, k = ctx.dim(cfg.rows), ctx.dim(8, 3), ctx.dim(4 * cfg.rng_lanes)
    dist = str(rng.choice(DISTRIBUTIONS))
    params = {"sparse_sign": lambda: dict(nnz=int(rng.integers(1, k + 1))),
              "uniform": lambda: dict(lo=(lo := int(rng.integers(-(1 << 31), 1 << 31))),
                                      hi=int(rng.integers(lo, min(lo + (1 << int(rng.integers(0, 33))), 1 << 31))))
              }.get(dist, dict)()
    key = [int(rng.integers(0, 1 << 32)) for _ in range(2)]
    ctr = [int(rng.integers(0, 1 << 32)) if rng.random() < 0.7 else 0xFFFFFFFF for _ in range(4)]
    fields = dict(m=m, K=K, k=k, dist=DISTRIBUTIONS.index(dist), a_signed=int(rng.integers(2)))
    g = geometry(fields, cfg)
    a_addr = ctx.operand(g.a_words)
    p_addr = ctx.operand(g.p_words, pack_params(key, ctr, dist_params(dist, k, **params), cfg))
    inputs = [(a_addr, g.a_words), (p_addr, g.p_words)]
    return isa.encode("SKETCH", **fields, a_addr=a_addr, p_addr=p_addr, y_addr=ctx.output(g.y_words, inputs))


#: op name -> (module the generator needs, generator(ctx) -> instruction word or list of words).
GENERATORS = {"GEMM": ("gemm_ops", _gen_gemm), "GATHER": ("gather_ops", _gen_gather),
              "RNG": ("sketch_ops", _gen_rng), "SKETCH": ("sketch_ops", _gen_sketch)}


def _structured_ops(config):
    """Ops with a generator on this chip (an op of a missing engine is still reached by raw words)."""
    return [name for name, (module, _) in GENERATORS.items()
            if name in isa.OPCODES and config.has_op(name) and _have(module)]


def _edge_value(rng, field, config):
    """A value for ``field`` biased to edges: 0, 1, all ones, near the end of memory, random."""
    lo, hi = ((-(1 << (field.width - 1)), (1 << (field.width - 1)) - 1) if field.signed
              else (0, (1 << field.width) - 1))
    depth = config.mem_depth
    choices = [0, 1, hi, lo, int(rng.integers(lo, hi, endpoint=True)), int(rng.integers(0, 9))]
    if field.name.endswith("addr"):
        choices += [depth - 1, depth, depth - int(rng.integers(1, 9)), int(rng.integers(0, depth))] * 2
    return int(np.clip(choices[int(rng.integers(len(choices)))], lo, hi))


def _random_fields(rng, op, config):
    return isa.encode(op.name, **{f.name: _edge_value(rng, f, config) for f in op.fields})


def _mutate(rng, word, config):
    """One field of ``word`` pushed to an edge value, or one bit flipped."""
    op, fields = isa.decode(word)
    if op is None or not op.fields:
        return word
    field = op.fields[int(rng.integers(len(op.fields)))]
    if rng.random() < 0.3:
        bit = int(rng.integers(field.width))
        value = fields[field.name] ^ (1 << bit)
        if field.signed and value >= 1 << (field.width - 1):
            value -= 1 << field.width
        fields[field.name] = value
    else:
        fields[field.name] = _edge_value(rng, field, config)
    return isa.encode(op.name, **fields)


def _self_alias(rng, word, config):
    """The output address of ``word`` moved onto one of its input regions."""
    op, fields = isa.decode(word)
    outs = [f.name for f in op.fields if f.name in ("c_addr", "out_addr", "y_addr")]
    ins = [f.name for f in op.fields if f.name.endswith("_addr") and f.name not in outs]
    if not outs or not ins:
        return word
    fields[outs[0]] = fields[str(rng.choice(ins))] + int(rng.integers(0, 2))
    try:
        return isa.encode(op.name, **fields)
    except ValueError:
        return word


def _tamper_gather(rng, ctx, word):
    """Break a GATHER's data: an index out of range or decreasing offsets (written to the memory image)."""
    op, fields = isa.decode(word)
    mem = ctx.builder.memory
    flat = lambda addr, n: mem[addr:addr + ceil_div(max(n, 1), ctx.config.mem_width // 4)].reshape(-1).view("<i4")
    if fields["n_indices"] and (rng.random() < 0.5 or not fields["n_bags"]):
        idx = flat(fields["idx_addr"], fields["n_indices"])
        idx[int(rng.integers(fields["n_indices"]))] = int(rng.choice([fields["rows"], -1, 1 << 30]))
    elif fields["n_bags"]:
        off = flat(fields["off_addr"], fields["n_bags"] + 1)
        pos = int(rng.integers(fields["n_bags"] + 1))
        off[pos] = int(rng.choice([-1, fields["n_indices"] + 1, off[max(pos - 1, 0)] - 1]))
    return word


def _risky(ctx, structured):
    """One instruction that probably fails a check (an error code), or None."""
    rng, cfg = ctx.rng, ctx.config
    kind = rng.random()
    if kind < 0.1:
        codes = sorted(set(range(256)) - {op.code for op in isa.OPS})
        return int(rng.integers(0, 1 << 62)) << 8 | int(rng.choice(codes))
    if kind < 0.4 or not structured:
        ops = [op for op in isa.OPS if op.fields]
        return _random_fields(rng, ops[int(rng.integers(len(ops)))], cfg)
    name = str(rng.choice(structured))
    words = GENERATORS[name][1](ctx)
    word = words[0] if isinstance(words, list) else words
    kind = rng.random()
    if name == "GATHER" and kind < 0.6:
        return _tamper_gather(rng, ctx, word)
    if kind < 0.75:
        return _mutate(rng, word, cfg)
    return _self_alias(rng, word, cfg)


def _junk(rng, config, structured_words):
    choices = [isa.encode("NOP"), int(rng.integers(0, 1 << 62)) << 8 | int(rng.integers(0x40, 0x100))]
    choices += structured_words
    return [choices[int(rng.integers(len(choices)))] for _ in range(int(rng.integers(0, 4)))]


def random_program(config: Config, rng, instructions: int = 8, p_risky: float = 0.35,
                   max_cost: int = MAX_COST) -> Program:
    """A random, well-defined Program (see the module docstring); ``rng`` is a ``numpy.random.Generator``.

    At most ``instructions`` instructions run before the final one; the Program always ends in ``HALT``
    (possibly followed by junk that must not run) and ``undefined_reason(program, max_cost)`` is None.
    """
    for _attempt in range(50):
        program = _attempt_program(config, rng, instructions, p_risky, max_cost)
        if program is not None and undefined_reason(program, max_cost) is None:
            return program
    raise RuntimeError("could not generate a well-defined Program (is the Config too small?)")


def _attempt_program(config, rng, instructions, p_risky, max_cost):
    ctx = _Context(config, rng, max_cost)
    if rng.random() < 0.3:                      # junk at the top of memory: it must survive untouched
        n = int(rng.integers(1, min(64, config.mem_depth // 4)))
        ctx.builder.memory[config.mem_depth - n:] = rng.integers(0, 256, (n, config.mem_width), dtype=np.uint8)
    structured = _structured_ops(config)
    words, cost, stopped = [], 0, False
    target = int(rng.integers(1, instructions + 1))

    def accept(new_words):
        """Append ``new_words`` if they are well defined and within budget; stop at an error.

        The golden state is recomputed from the current initial image, which the generators extend.
        """
        nonlocal cost, stopped
        state = execute(Program(config, words, ctx.builder.memory)).memory
        add, error = 0, 0
        for w in new_words:
            _, _, error, c, reason = _step(state, w, config)
            if reason or cost + add + c > max_cost:
                return False
            add += c
            if error:
                new_words = new_words[:new_words.index(w) + 1]
                break
        words.extend(new_words)
        cost += add
        stopped = bool(error)
        return True

    try:
        while len(words) < target and not stopped:
            if rng.random() < 0.1 or not structured:
                words.append(isa.encode("NOP") | (int(rng.integers(0, 1 << 62)) << 8 if rng.random() < 0.5 else 0))
                continue
            new = GENERATORS[str(rng.choice(structured))][1](ctx)
            if not accept([ctx.reserved_bits(w) for w in (new if isinstance(new, list) else [new])]):
                break
        if not stopped and rng.random() < p_risky:
            for _ in range(20):
                snapshot = ctx.builder.memory.copy()
                word = _risky(ctx, structured)
                if word is not None and accept([word]):
                    break
                ctx.builder.memory[:] = snapshot
    except ProblemTooLarge:
        return None
    sample = [w for w in words if isa.decode(w)[0] is not None]
    tail = [] if stopped else [isa.encode("HALT")]
    tail += _junk(rng, config, sample[:2]) + [isa.encode("HALT")]
    return Program(config, words + tail, ctx.builder.memory.copy(), dict(ctx.builder.outputs))


# ---- differential runner -------------------------------------------------------------------------
@dataclasses.dataclass
class Mismatch:
    """How a backend's run differs from the golden model's (``kind``: status, memory, retired, hang, crash)."""
    kind: str
    detail: str

    def __str__(self):
        return f"{self.kind}: {self.detail}"


def make_backend(name: str, config: Config, max_cycles: int = 1_000_000):
    """Backend ``name`` with a cycle bound, so a hang fails quickly instead of blocking the campaign
    (:func:`compare` replaces the bound by each Program's :func:`cycle_limit`)."""
    from ..sim.backend import get_backend
    backend = get_backend(name, config)
    if hasattr(backend, "max_cycles"):
        backend.max_cycles = max_cycles
    return backend


def run_bounded(backend, program: Program, max_cycles: int):
    """``backend.run(program)`` with at most ``max_cycles`` cycles on a backend that has a cycle limit
    (the simulators: their ``max_cycles``; restored afterwards, the backend may be shared)."""
    if getattr(backend, "max_cycles", None) is None:
        return backend.run(program)
    before, backend.max_cycles = backend.max_cycles, max_cycles
    try:
        return backend.run(program)
    finally:
        backend.max_cycles = before


_NO_HALT = re.compile(r"no halt within \d+ cycles")


def compare(program: Program, backend) -> Mismatch | None:
    """Run ``program`` on the golden model and on ``backend``; None if they agree bit for bit.

    Compared: error code, ``error_pc``, the ``retired`` counter and the whole final memory image (so a
    write outside an instruction's output region is caught too). The run is bounded by
    :func:`cycle_limit`: a hang is a ``hang`` mismatch ("no halt within N cycles"); any other backend
    exception (a simulator failure) is a ``crash`` mismatch.
    """
    want = execute(program)
    try:
        got = run_bounded(backend, program, cycle_limit(program))
    except Exception as exc:        # noqa: BLE001 - every backend failure is a finding
        hang = _NO_HALT.search(str(exc))          # cocotb puts it in the log tail, amaranth in the message
        if hang:
            return Mismatch("hang", hang.group())
        text = str(exc).strip().splitlines()
        return Mismatch("crash", f"{type(exc).__name__}: {text[0] if text else ''}")
    if (got.error, got.error_pc) != (want.error, want.error_pc):
        return Mismatch("status", f"golden {isa.ERROR_NAMES.get(want.error, want.error)} at {want.error_pc}, "
                        f"{backend.name} {isa.ERROR_NAMES.get(got.error, got.error)} at {got.error_pc}")
    diff = np.nonzero((got.memory != want.memory).any(axis=1))[0]
    if len(diff):
        first = int(diff[0])
        return Mismatch("memory", f"{len(diff)} words differ, first at word {first}: golden "
                        f"{want.memory[first].tobytes().hex()} {backend.name} {got.memory[first].tobytes().hex()}")
    retired = got.counters.get("retired")
    if retired is not None and retired != want.counters["retired"]:
        return Mismatch("retired", f"golden retired {want.counters['retired']}, {backend.name} {retired}")
    return None


# ---- shrinking -------------------------------------------------------------------------------------
def _shrunk_fields(word):
    """Smaller variants of an instruction: each size field halved or 1, each flag cleared."""
    op, fields = isa.decode(word)
    if op is None:
        yield word & 0xFF
        return
    for field in op.fields:
        value = fields[field.name]
        if field.name.endswith("addr") or value == 0:
            continue
        for smaller in dict.fromkeys((1 if value > 1 else 0, value // 2, value - 1)):
            if 0 <= smaller < value or (field.signed and abs(smaller) < abs(value)):
                yield isa.encode(op.name, **dict(fields, **{field.name: smaller}))
    used = isa.OPCODE_BITS + sum(f.width for f in op.fields)
    if word >> used:
        yield word & ((1 << used) - 1)


def shrink(program: Program, fails, budget: int = 60, log=None) -> Program:
    """A smaller Program for which ``fails(program)`` still holds (greedy, at most ``budget`` calls).

    Steps: drop instructions (keeping a final HALT), shrink size fields and clear reserved bits, then
    zero runs of memory words (halving). Candidates outside the defined architecture
    (:func:`undefined_reason`) are skipped without a call.
    """
    calls = 0

    def test(candidate):
        nonlocal calls
        if calls >= budget or undefined_reason(candidate, max_cost=10 * MAX_COST) is not None:
            return False
        calls += 1
        ok = bool(fails(candidate))
        if log:
            log(f"shrink try {calls}/{budget}: {len(candidate.instructions)} instructions -> "
                f"{'still fails' if ok else 'passes'}")
        return ok

    def with_(instructions=None, memory=None):
        return Program(program.config, list(program.instructions if instructions is None else instructions),
                       program.memory if memory is None else memory, dict(program.outputs))

    changed = True
    while changed and calls < budget:
        changed = False
        i = len(program.instructions) - 2
        while i >= 0 and calls < budget:             # drop instructions, last first
            candidate = with_(program.instructions[:i] + program.instructions[i + 1:])
            if test(candidate):
                program, changed = candidate, True
            i -= 1
        for i, word in enumerate(list(program.instructions)):
            for variant in _shrunk_fields(word):
                candidate = with_(program.instructions[:i] + [variant] + program.instructions[i + 1:])
                if test(candidate):
                    program, changed = candidate, True
                    break
    used = np.nonzero(program.memory.any(axis=1))[0]
    chunk = max(1, len(used) // 2)
    while chunk >= 1 and calls < budget and len(used):
        for start in range(0, len(used), chunk):
            memory = program.memory.copy()
            memory[used[start:start + chunk]] = 0
            candidate = with_(memory=memory)
            if test(candidate):
                program = candidate
        used = np.nonzero(program.memory.any(axis=1))[0]
        chunk //= 2
    return program


# ---- campaign --------------------------------------------------------------------------------------
@dataclasses.dataclass
class FuzzReport:
    """Outcome of :func:`fuzz`: Programs and instructions run, ops and error codes covered, failures."""
    backend: str
    seed: int
    programs: int = 0
    instructions: int = 0
    ops: dict = dataclasses.field(default_factory=dict)
    errors: dict = dataclasses.field(default_factory=dict)
    failures: list = dataclasses.field(default_factory=list)   # (index, Mismatch, saved paths)
    seconds: float = 0.0
    retried: list = dataclasses.field(default_factory=list)    # tasks run again after a worker died (--ray)

    def summary(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items()))
        errs = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items()))
        lines = [f"fuzz {self.backend}: seed {self.seed}, {self.programs} Programs, {self.instructions} "
                 f"instructions executed in {self.seconds:.1f} s, {len(self.failures)} failing",
                 f"  instructions by op: {ops}", f"  final status: {errs}"]
        lines += [f"  worker lost: {retry}" for retry in self.retried]
        for index, mismatch, paths in self.failures:
            lines.append(f"  FAIL program {index}: {mismatch}" + (f" -> {', '.join(map(str, paths))}" if paths else ""))
        return "\n".join(lines)


def program_rng(seed: int, index: int):
    """The random generator of Program ``index`` of campaign ``seed``."""
    return np.random.default_rng([seed, index])


def fuzz(config: Config, backend: str = "verilator", n: int = 100, seed: int = 0, out=None,
         instructions: int = 8, max_cost: int = MAX_COST, shrink_budget: int = 40, progress=None,
         start: int = 0, backend_obj=None) -> FuzzReport:
    """Run Programs ``start .. start+n-1`` of ``seed`` on golden and ``backend``; shrink and save failures."""
    runner = backend_obj or make_backend(backend, config)
    report = FuzzReport(backend=backend, seed=seed)
    t0 = time.perf_counter()
    for index in range(start, start + n):
        program = random_program(config, program_rng(seed, index), instructions, max_cost=max_cost)
        want = execute(program)
        executed = program.instructions[:want.counters["retired"] + (1 if want.error else 0)]
        report.instructions += len(executed)
        for word in executed:
            op, _ = isa.decode(word)
            name = op.name if op else "illegal"
            report.ops[name] = report.ops.get(name, 0) + 1
        status = isa.ERROR_NAMES.get(want.error, str(want.error))
        report.errors[status] = report.errors.get(status, 0) + 1
        mismatch = compare(program, runner)
        paths = []
        if mismatch is not None:
            if out is not None:
                folder = Path(out)
                folder.mkdir(parents=True, exist_ok=True)
                base = folder / f"fail-seed{seed}-{index}"
                program.save(f"{base}.npz")
                small = shrink(program, lambda p: compare(p, runner) is not None, shrink_budget)
                small.save(f"{base}-min.npz")
                final = compare(small, runner) or mismatch
                Path(f"{base}.txt").write_text(
                    f"backend {backend} seed {seed} program {index}\noriginal: {mismatch}\nshrunk: {final}\n"
                    f"replay: tridsa run {base}-min.npz --backend {backend} --check\n")
                paths = [Path(f"{base}.npz"), Path(f"{base}-min.npz")]
            report.failures.append((index, mismatch, paths))
        report.programs += 1
        report.seconds = time.perf_counter() - t0
        if progress:
            progress(report, n)
    return report
