"""Instruction set: one table of opcodes and fields, used by the driver, golden model and gateware.

Every instruction is one ``INSTR_BITS``-bit word. Bits ``[0:8]`` hold the opcode; the operation's fields
follow in the order listed, least significant first. Addresses count memory *words*
(``Config.mem_width`` bytes each). ``python -m tridsa.spec.isa`` prints the encoding table that
``docs/isa.md`` holds (a test checks they agree).
"""
from __future__ import annotations

import dataclasses

__all__ = ["INSTR_BITS", "Field", "Op", "OPS", "OPCODES", "ENGINE_OPS", "ERRORS", "ERROR_NAMES", "encode", "decode",
           "field_max", "markdown_table"]

INSTR_BITS = 256
OPCODE_BITS = 8


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    width: int
    doc: str
    signed: bool = False
    default: int | None = None      # value when :func:`encode` is not given the field (None: required)


@dataclasses.dataclass(frozen=True)
class Op:
    name: str
    code: int
    doc: str
    fields: tuple

    def offsets(self) -> dict:
        """Bit offset of every field (after the opcode)."""
        offset, result = OPCODE_BITS, {}
        for field in self.fields:
            result[field.name] = offset
            offset += field.width
        assert offset <= INSTR_BITS, self.name
        return result


_ADDR = 32
#: GATHER's address fields: 30 bits (every Config.mem_depth is <= 2**24 words, so ADDR_RANGE stays reachable)
#: leave room for its output format fields in one instruction word.
_GATHER_ADDR = 30

OPS = (
    Op("NOP", 0x00, "Do nothing.", ()),
    Op("HALT", 0x01, "Stop: the accelerator raises `halted`; later instructions are not executed.", ()),
    Op("GEMM", 0x10, "C = requant(A @ B + bias) over the whole M x K x N problem (tiled by the sequencer).", (
        Field("m", 16, "rows of A and C (>= 1)"),
        Field("k", 16, "reduction depth (>= 1)"),
        Field("n", 16, "columns of B and C (>= 1)"),
        Field("a_addr", _ADDR, "A in row-block layout: ceil(M/rows) blocks of K-rows of `rows` bytes"),
        Field("b_addr", _ADDR, "B in column-block layout: ceil(N/cols) blocks of K-rows of `cols` bytes"),
        Field("c_addr", _ADDR, "C output tiles, column-block major (see docs/architecture.md)"),
        Field("p_addr", _ADDR, "per column block: bias, multiplier, shift words (int32 x cols each)"),
        Field("int4", 1, "1: operands are packed int4 pairs (two MACs per PE per cycle)"),
        Field("a_signed", 1, "1: A elements are signed"),
        Field("b_signed", 1, "1: B elements are signed"),
        Field("requant", 1, "1: requantize (multiplier/shift from p_addr); 0: int32 acc + bias"),
        Field("rounding", 2, "0 tflite, 1 half_up, 2 half_even"),
        Field("out_format", 2, "0 int32, 1 int8, 2 uint8, 3 int4"),
        Field("relu", 1, "1: clamp below at the zero point"),
        Field("zero_point", 16, "output zero point", signed=True),
        Field("batch", 16, "independent problems of this shape and mode, operands back to back: problem g "
              "uses a_addr + g*A words, b_addr + g*B words, p_addr + g*P words, c_addr + g*C words "
              "(0 or 1: one problem)", default=0),
        Field("accumulate", 1, "1: the int32 tiles already at c_addr (partial sums of an earlier K chunk, laid out "
              "as an int32 C) replace the bias; the result overwrites them from c_addr in out_format "
              "(docs/workloads.md, Any size)", default=0),
    )),
    Op("GATHER", 0x20, "embedding_bag: pool table rows per bag through the row cache (see docs/gather.md).", (
        Field("table_addr", _GATHER_ADDR, "table: `rows` rows of `dim` int8/int32 elements, each row on whole words"),
        Field("rows", 24, "rows of the table; an index >= rows is INDEX_RANGE"),
        Field("dim", 12, "elements per row (>= 1; the row must fit one cache line)"),
        Field("dtype", 1, "0 int8 table, 1 int32 table"),
        Field("idx_addr", _GATHER_ADDR, "n_indices int32 index words, packed: row in bits [0:31], bit 31 = cache bypass hint"),
        Field("n_indices", 24, "number of indices (all are range checked)"),
        Field("off_addr", _GATHER_ADDR, "n_bags + 1 int32 offsets, packed: 0, non-decreasing, last <= n_indices"),
        Field("n_bags", 24, "number of bags (output rows)"),
        Field("w_addr", _GATHER_ADDR, "n_indices int32 per-sample weights, packed (read only if weighted)"),
        Field("out_addr", _GATHER_ADDR, "n_bags output rows of dim int32 (mode copy, narrow: of the table's type, laid out as table rows)"),
        Field("mode", 2, "0 sum, 1 mean, 2 max, 3 copy (the sum at the table's element width: one row per bag copies rows)"),
        Field("weighted", 1, "1: sum of weight * row (mode sum only)"),
        Field("narrow", 1, "1: each output element is round(result / 2**out_shift), ties up, saturated to the "
              "table's element type (modes sum and max only; docs/gather.md)", default=0),
        Field("out_shift", 5, "right shift of a narrow output (0-31)", default=0),
    )),
    Op("RNG", 0x30, "Write the Philox4x32-10 word stream of (key, counter) to memory (see docs/sketch.md).", (
        Field("n", 32, "uint32 words wanted (>= 1); whole memory words are written: n rounds up to mem_width/4"),
        Field("out_addr", 24, "first output word (addresses are < 2**24 = the largest Config.mem_depth)"),
        Field("key0", 32, "Philox key word 0"),
        Field("key1", 32, "Philox key word 1"),
        Field("ctr0", 32, "start counter word 0 (least significant)"),
        Field("ctr1", 32, "start counter word 1"),
        Field("ctr2", 32, "start counter word 2"),
        Field("ctr3", 32, "start counter word 3 (most significant)"),
    )),
    Op("SKETCH", 0x31, "Y = A @ Omega, Omega (K x k) generated on the fly from the parameter block (docs/sketch.md).", (
        Field("m", 16, "rows of A and Y (>= 1)"),
        Field("K", 16, "columns of A = rows of Omega (>= 1)"),
        Field("k", 16, "columns of Omega and Y: the sketch size (>= 1)"),
        Field("a_addr", _ADDR, "A int8 in the GEMM row-block layout (blocks of Config.rows rows)"),
        Field("y_addr", _ADDR, "Y int32 tiles of rows x 4*rng_lanes, row-major tiles, row-major inside"),
        Field("p_addr", _ADDR, "parameter block: key0 key1 ctr0..ctr3 threshold lo span-1 (uint32 each)"),
        Field("dist", 2, "0 rademacher, 1 sparse_sign, 2 uniform, 3 gaussian"),
        Field("a_signed", 1, "1: A elements are signed"),
    )),
)

OPCODES = {op.name: op for op in OPS}

# engine name -> the instructions it executes. ``Config.engines`` picks which engines a chip has; an
# instruction of a missing engine is ILLEGAL_OPCODE (golden model and gateware alike).
ENGINE_OPS = {"gemm": ("GEMM",), "gather": ("GATHER",), "sketch": ("RNG", "SKETCH")}
_BY_CODE = {op.code: op for op in OPS}

# Status register error codes (0 = no error). The first error stops the program.
ERRORS = {
    "OK": 0,
    "ILLEGAL_OPCODE": 1,
    "ADDR_RANGE": 2,
    "BAD_SHAPE": 3,
    "BAD_MODE": 4,
    "INDEX_RANGE": 5,
    "BAD_OFFSETS": 6,
    "OVERLAP": 7,      # an output region overlaps an input region of the same instruction
}
ERROR_NAMES = {code: name for name, code in ERRORS.items()}


def encode(op_name: str, **values) -> int:
    """Pack one instruction; every field of the op must be given (or have a default) and fit its width."""
    if op_name not in OPCODES:
        raise ValueError(f"unknown op {op_name!r}: expected one of {sorted(OPCODES)}")
    op = OPCODES[op_name]
    word = op.code
    offsets = op.offsets()
    names = {f.name for f in op.fields}
    values = {**{f.name: f.default for f in op.fields if f.default is not None}, **values}
    if set(values) != names:
        raise ValueError(f"{op_name} needs fields {sorted(names)}, got {sorted(values)}")
    for field in op.fields:
        value = int(values[field.name])
        lo, hi = ((-(1 << (field.width - 1)), (1 << (field.width - 1)) - 1) if field.signed
                  else (0, (1 << field.width) - 1))
        if not lo <= value <= hi:
            raise ValueError(f"{op_name}.{field.name}={value} does not fit {field.width} bits ({lo}..{hi})")
        word |= (value & ((1 << field.width) - 1)) << offsets[field.name]
    return word


def field_max(op_name: str, field_name: str) -> int:
    """Largest value an unsigned field of ``op_name`` holds (the driver checks sizes against it)."""
    field = next(f for f in OPCODES[op_name].fields if f.name == field_name)
    assert not field.signed, field
    return (1 << field.width) - 1


def decode(word: int) -> tuple:
    """Unpack an instruction word into ``(op, fields)``; ``op`` is None for an unknown opcode."""
    op = _BY_CODE.get(word & ((1 << OPCODE_BITS) - 1))
    if op is None:
        return None, {}
    fields = {}
    for field in op.fields:
        raw = (word >> op.offsets()[field.name]) & ((1 << field.width) - 1)
        if field.signed and raw >> (field.width - 1):
            raw -= 1 << field.width
        fields[field.name] = raw
    return op, fields


#: The memory semantics of a Program (docs/isa.md): what overlapping instructions may and may not do.
ORDERING = """## Ordering and hazards

A Program's result is that of its instructions run one after another, in order (the golden model).
A chip built with `Config.overlap` (the default) overlaps consecutive instructions where that cannot
change the result; without it every instruction starts when the previous one is done.

Regions are `[start, end)` word intervals. GEMM reads A `[a_addr, a_addr + batch * A words)`, B
likewise, its parameters P, in accumulate mode C, and writes C `[c_addr, c_addr + batch * C words)`;
GATHER reads its table (`rows` rows), indices, offsets and (weighted) weights and writes its output.
Two instructions have a hazard when one reads a region the other writes (read after write, write after
read) or both write a word (write after write).

* A GEMM after a GEMM starts its setup, checks and A/B reads while the previous GEMM drains (requant,
  last writes). A GEMM whose A or B region meets the C region of the GEMM still draining waits for its
  last write (read after write). Its own writes (C) and its P/Q reads start only after the previous
  GEMM's last write, so write after read and write after write need no wait.
* A GATHER and a GEMM run side by side: the dispatcher starts an instruction on the other of the two
  engines once every instruction in flight passed its checks (a GEMM its field checks, a GATHER also its
  check pass over offsets and indices), and it then touches memory only when it has no hazard with
  any instruction of the other engine still in flight (else it waits until they are done). The
  instructions that follow on its engine are checked the same way; the other engine takes no new
  instruction until all of its own are done.
* Any other instruction (RNG, SKETCH, NOP, HALT, and any instruction on another engine otherwise) starts
  when every earlier instruction is done.
* Errors: an instruction is *after* another when it comes later in the Program, whether or not it is in
  flight. No instruction touches memory before every instruction before it passed its checks, so the
  first failing instruction reports its index (`error_pc`) after every earlier instruction is done (their
  writes are in memory), and nothing after it reads or writes memory: an instruction after it is never
  started, or was started on the same engine and is dropped before its first access.
""" + "\n"


def markdown_table() -> str:
    """The encoding table of every instruction and the error codes, as Markdown."""
    lines = [f"# Instruction encoding\n\nEvery instruction is {INSTR_BITS} bits; bits [0:8) are the opcode.\n"
             "Addresses are in memory words. Generated by `python -m tridsa.spec.isa`.\n"]
    for op in OPS:
        lines.append(f"## {op.name} (opcode 0x{op.code:02x})\n\n{op.doc}\n")
        if op.fields:
            lines.append("| bits | field | meaning |\n|---|---|---|")
            for field in op.fields:
                start = op.offsets()[field.name]
                kind = " (signed)" if field.signed else ""
                lines.append(f"| [{start}:{start + field.width}) | `{field.name}` | {field.doc}{kind} |")
            lines.append("")
    lines.append(ORDERING)
    lines.append("## Status error codes\n\n| code | name |\n|---|---|")
    lines += [f"| {code} | {name} |" for name, code in ERRORS.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
