"""Stream driving for cocotb testbenches, written once: a source with random valid gaps, a sink with
random ready backpressure, and the stream rules checked on every cycle.

Ports follow Amaranth's flattened names (``i__valid``, ``i__ready``, ``i__payload``). Signals are driven
and sampled at the falling clock edge after the logic settles (``ReadOnly``), so the handshakes seen are
exactly those the next rising edge acts on, on any simulator. The pause probabilities come from the
caller's seeded ``random.Random`` / ``numpy`` generator, so a printed seed replays a run.
"""
from __future__ import annotations

from cocotb.triggers import FallingEdge, ReadOnly

__all__ = ["Stream", "exchange"]


class Stream:
    """The ``valid``, ``ready`` and ``payload`` handles of the stream port ``name`` of ``dut``."""

    def __init__(self, dut, name: str):
        self.name = name
        self.valid, self.ready, self.payload = (getattr(dut, f"{name}__{s}") for s in ("valid", "ready", "payload"))


async def exchange(dut, source: Stream, sink: Stream, items, encode, decode, expected: int, *, rng,
                   p_valid: float = 0.6, p_ready: float = 0.6, max_cycles: int = 10_000) -> list:
    """Send ``items`` into ``source`` and take ``expected`` beats from ``sink``; return them decoded.

    Each cycle the source offers the next item with probability ``p_valid`` (and then holds it until
    taken) and the sink is ready with probability ``p_ready``. Checked every cycle: a stalled sink beat
    keeps ``valid`` and its payload until taken (AssertionError naming the beat otherwise). Times out
    after ``max_cycles``. Call it at a falling edge; it returns at one.
    """
    pending, current, got, stalled = list(items), None, [], None
    for _ in range(max_cycles):
        if current is None and pending and rng.random() < p_valid:
            current = pending.pop(0)
            source.payload.value = encode(current)
        source.valid.value = int(current is not None)
        ready = int(rng.random() < p_ready)
        sink.ready.value = ready
        await ReadOnly()
        if current is not None and int(source.ready.value):
            current = None
        valid = int(sink.valid.value)
        bits = int(sink.payload.value.to_unsigned()) if valid else None
        if stalled is not None:
            assert valid and bits == stalled, f"{sink.name}: beat {len(got)} dropped or changed while stalled"
        stalled = bits if valid and not ready else None
        if valid and ready:
            got.append(decode(bits))
        if len(got) == expected and current is None and not pending:
            await FallingEdge(dut.clk)
            return got
        await FallingEdge(dut.clk)
    raise AssertionError(f"timeout: {len(got)} of {expected} beats from {sink.name} after {max_cycles} cycles")
