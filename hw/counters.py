"""Performance counters: every engine counts into COUNTER_BITS-wide registers cleared by reset."""
from amaranth.lib import data

from ..spec.counters import COUNTER_BITS

__all__ = ["COUNTER_BITS", "counter_layout"]


def counter_layout(names) -> data.StructLayout:
    return data.StructLayout({name: COUNTER_BITS for name in names})
