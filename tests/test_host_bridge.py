# amaranth: UnusedElaboratable=no
"""The host bridge (hw/host_bridge.py) alone in Amaranth's simulator: request frames in as bytes on its
``rx`` stream, replies out of ``tx``, a memory and the accelerator's command stream modelled by the
testbench. The frames come from the driver's own encoder (``spec.host_link.request_frame``); replies
are checked against the protocol of ``spec/host_link.py`` byte for byte. Fast: no UART, no Verilator
(the whole board design over the UART is tests/test_fpga.py's uart-sim tests)."""
import random

from amaranth.sim import Simulator

from tridsa import Config
from tridsa.hw.host_bridge import HostBridge
from tridsa.spec import host_link as link

CFG = Config(rows=1, cols=1, int4=False, mem_width=4, mem_depth=64, queue_depth=0, engines=("gemm",))
COUNTERS = ("cycles", "gemm_busy")
TIMEOUT = 40


def _reply(code, payload=b""):
    body = bytes([code]) + (payload if code == 0 else b"")
    return bytes([link.REP_SYNC]) + body + bytes([link.crc8(body)])


def _run(seed, script):
    """Send each ``(frame bytes, gap cycles after it)`` of ``script``; return the reply bytes, the memory,
    the pushed instructions and the number of clear pulses."""
    rng = random.Random(seed)
    dut = HostBridge(CFG, COUNTERS, TIMEOUT)
    mem = {a: rng.randrange(1 << 32) for a in range(CFG.mem_depth)}
    out = {"tx": bytearray(), "pushed": [], "clears": 0, "mem": mem}
    state = {"halted": 0}

    async def memory(ctx):          # req ready at random; a read's data two cycles later
        pending, ready = [], False
        async for clk_edge, rst, req_valid, addr, we, wdata in ctx.tick().sample(
                dut.mem.req.valid, dut.mem.req.payload.addr, dut.mem.req.payload.we, dut.mem.req.payload.wdata):
            ctx.set(dut.mem.resp.valid, 0)
            pending = [(t - 1, v) for t, v in pending]
            if pending and pending[0][0] == 0:
                ctx.set(dut.mem.resp.valid, 1)
                ctx.set(dut.mem.resp.payload, pending.pop(0)[1])
            if req_valid and ready:
                if we:
                    mem[addr] = wdata
                else:
                    pending.append((2, mem[addr]))
            ready = rng.random() < 0.7
            ctx.set(dut.mem.req.ready, ready)

    async def accelerator(ctx):     # takes a pushed instruction after a few cycles; counters are constants
        ctx.set(dut.counters.as_value(), 0x123456789ABC | (0x0000DEADBEEF << CFG.counter_bits))
        ctx.set(dut.error, 7)
        ctx.set(dut.error_pc, 0x01020304)
        ready = False
        async for clk_edge, rst, valid, payload, clear in ctx.tick().sample(dut.cmd.valid, dut.cmd.payload, dut.clear):
            out["clears"] += clear
            if clear:
                state["halted"] = 0
            if valid and ready:         # taken at this edge
                out["pushed"].append(payload)
            ready = rng.random() < 0.3
            ctx.set(dut.cmd.ready, ready)
            ctx.set(dut.halted, state["halted"])

    async def host(ctx):
        ctx.set(dut.tx.ready, 1)
        for frame, gap in script:
            for byte in frame:
                ctx.set(dut.rx.valid, 1)
                ctx.set(dut.rx.payload, byte)
                await ctx.tick().until(dut.rx.ready)
                ctx.set(dut.rx.valid, 0)
                for _ in range(rng.randrange(2, 6)):     # a byte time is >= 40 cycles on a UART
                    await ctx.tick()
            for _ in range(gap):
                await ctx.tick()
            if gap == 0:        # wait for the reply to end (the protocol is stop-and-wait)
                quiet = 0
                while quiet < 3 * TIMEOUT:
                    quiet = 0 if ctx.get(dut.tx.valid) else quiet + 1
                    await ctx.tick()
        for _ in range(3 * TIMEOUT):
            await ctx.tick()

    async def reply_bytes(ctx):
        async for clk_edge, rst, valid, ready, payload in ctx.tick().sample(dut.tx.valid, dut.tx.ready, dut.tx.payload):
            if valid and ready:
                out["tx"].append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(memory)
    sim.add_process(accelerator)
    sim.add_process(reply_bytes)
    sim.add_testbench(host)
    sim.run()
    return out


def test_bridge_requests_and_errors(seed):
    rng = random.Random(seed)
    width = CFG.mem_width
    data = bytes(rng.randrange(256) for _ in range(3 * width))
    instr = bytes(rng.randrange(256) for _ in range(link.INSTR_BYTES))
    bad_header = bytearray(link.request_frame("READ", 0, 1))
    bad_header[-1] ^= 1
    bad_payload = bytearray(link.request_frame("PUSH", payload=instr))
    bad_payload[-1] ^= 0x40
    script = [
        (link.request_frame("INFO"), 0),
        (link.request_frame("WRITE", 5, 3, data), 0),
        (link.request_frame("READ", 4, 5), 0),
        (link.request_frame("READ", CFG.mem_depth - 1, 2), 0),            # beyond memory
        (link.request_frame("WRITE", CFG.mem_depth, 1, data[:width]), 0),  # refused: drained, then BAD_RANGE
        (bytes(bad_header), 0),
        (bytes([link.REQ_SYNC, 0x77]) + bytes(6) + bytes([link.crc8(bytes([0x77]) + bytes(6))]), 0),   # unknown
        (link.request_frame("STATUS"), 0),
        (bytes(bad_payload), 0),
        (link.request_frame("PUSH", payload=instr), 0),
        (link.request_frame("WRITE", 0, 1, data[:width]), 0),             # BUSY: pushed and not halted
        (link.request_frame("READ", 0, 1)[:4], 0),                        # stops half-way: TIMEOUT
        (link.request_frame("CLEAR"), 0),
        (link.request_frame("READ", 5, 1), 0),
    ]
    out = _run(seed, script)
    mem = out["mem"]
    words = b"".join(mem[a].to_bytes(width, "little") for a in range(4, 9))
    info = link.MAGIC + bytes([link.PROTOCOL_VERSION]) + link.config_digest_bytes(CFG) + bytes([len(COUNTERS)])
    counters = b"".join(value.to_bytes(CFG.counter_bytes, "little") for value in (0x123456789ABC, 0xDEADBEEF))
    status = bytes([0, 7]) + (0x01020304).to_bytes(4, "little") + counters
    codes = link.REPLY_CODES
    expected = [_reply(0, info), _reply(0), _reply(0, words), _reply(codes["BAD_RANGE"]), _reply(codes["BAD_RANGE"]),
                _reply(codes["BAD_CHECKSUM"]), _reply(codes["UNKNOWN_COMMAND"]), _reply(0, status),
                _reply(codes["BAD_CHECKSUM"]), _reply(0), _reply(codes["BUSY"]), _reply(codes["TIMEOUT"]), _reply(0),
                _reply(0, data[:width])]
    got, replies = bytes(out["tx"]), []
    for frame in expected:          # split at the expected lengths, to say which reply differs
        replies.append(got[:len(frame)])
        got = got[len(frame):]
    assert [r.hex() for r in replies] == [e.hex() for e in expected] and not got, f"seed {seed}"
    assert words[width:4 * width] == data, f"seed {seed}"
    assert out["pushed"] == [int.from_bytes(instr, "little")] and out["clears"] == 1, f"seed {seed}"
