"""Performance counters: every engine counts into registers of ``Config.counter_bits`` (default
COUNTER_BITS), cleared by reset; the host link reports each in ``Config.counter_bytes``."""

__all__ = ["COUNTER_BITS"]

COUNTER_BITS = 48
