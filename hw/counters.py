"""Performance counters: every engine counts into ``Config.counter_bits``-wide registers cleared by reset."""
from amaranth.lib import data

__all__ = ["counter_layout"]


def counter_layout(config, names) -> data.StructLayout:
    return data.StructLayout({name: config.counter_bits for name in names})
