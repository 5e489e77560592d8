"""Performance counters: every engine counts into registers of COUNTER_BITS, cleared by reset; the host
link reports each in COUNTER_BYTES."""

__all__ = ["COUNTER_BITS", "COUNTER_BYTES"]

COUNTER_BITS = 48
COUNTER_BYTES = -(-COUNTER_BITS // 8)
