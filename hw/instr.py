"""Amaranth views of the instruction words, generated from the one table in :mod:`tridsa.spec.isa`."""
from amaranth import signed, unsigned
from amaranth.lib import data

from ..spec import isa

__all__ = ["instr_layout"]


def instr_layout(op_name: str) -> data.StructLayout:
    """Layout of an ``isa.INSTR_BITS``-bit instruction word for ``op_name`` (opcode first)."""
    op = isa.OPCODES[op_name]
    fields = {"opcode": unsigned(isa.OPCODE_BITS)}
    used = isa.OPCODE_BITS
    for field in op.fields:
        fields[field.name] = signed(field.width) if field.signed else unsigned(field.width)
        used += field.width
    fields["_reserved"] = unsigned(isa.INSTR_BITS - used)
    return data.StructLayout(fields)
