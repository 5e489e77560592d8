"""Performance counters: every engine counts into COUNTER_BITS-wide registers cleared by reset."""
from amaranth.lib import data

__all__ = ["COUNTER_BITS", "counter_layout"]

COUNTER_BITS = 48


def counter_layout(names) -> data.StructLayout:
    return data.StructLayout({name: COUNTER_BITS for name in names})
