"""The shared memory port, the simulated memory, an arbiter and a credit-based block reader.

Memory port protocol (:class:`MemPort`, seen from the requester):

* ``req`` is a stream of ``{addr, we, wdata}``; the memory accepts at most one request per cycle (a
  simulation may stall it: ``ready`` low, see :class:`MemoryModel`'s ``stall_seed``).
* A read's data comes back on ``resp`` (valid only, no ready) exactly ``Config.mem_latency`` cycles
  after its request was accepted, in request order. Requesters never issue a read they have no
  buffer space for (credits), so responses cannot be refused.
* A write takes effect when it is accepted; a later read of the same word sees it.

A chip with the compact GEMM engine (``Config.gemm_engine``) also has a write port (:func:`write_port`): a
stream of ``{addr, wdata}`` without ``ready``, the block RAM's own write port beside the read of ``port``,
so an engine writes its outputs while it reads its operands. Every write of that chip comes through it
(the top level passes the host's writes on to it: ``port`` only reads, and a write request on ``port``
writes nothing and gets no response). A word is written in the cycle it is offered; the engine never
writes a word it reads while writing (its output region does not meet its inputs).
"""
from __future__ import annotations

from amaranth import *
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .skid import SkidBuffer

__all__ = ["MemPort", "MemoryModel", "MemArbiter", "BlockReader", "write_port", "has_write_port", "block_ram",
           "registered_read"]


def block_ram(shape, depth, init=()):
    """A :class:`~amaranth.lib.memory.Memory` for block RAM whose reads of a word in the cycle it is written
    are never used (``no_rw_check``: synthesis adds no logic to emulate them; read them with
    :func:`registered_read`)."""
    return Memory(shape=shape, depth=depth, init=init, attrs={"no_rw_check": 1})


def registered_read(m, memory, addr, name):
    """The word of ``memory`` at ``addr`` one cycle later: a combinational read port and a reset-less register
    that synthesis merges into the block RAM (a synchronous read port would get logic that makes a read of
    a word being written return the old word; with :func:`block_ram` that read is undefined on an FPGA)."""
    port = memory.read_port(domain="comb")
    data = Signal(memory.shape, name=name, reset_less=True)
    m.d.comb += port.addr.eq(addr)
    m.d.sync += data.eq(port.data)
    return data


def write_port(config) -> stream.Signature:
    """The memory's write port of a compact-engine chip (writer side): always ready, one word per cycle."""
    return stream.Signature(data.StructLayout({"addr": config.addr_bits, "wdata": config.mem_bits}), always_ready=True)


def has_write_port(config) -> bool:
    """Whether the chip's memory has the write port: a chip whose GEMM engine is the compact one (it writes
    through it)."""
    return config.gemm_engine == "compact" and "gemm" in config.engines


class MemPort(wiring.Signature):
    """Requester side of a memory port for ``config``.

    ``top_level=True`` gives ``resp`` a real (ignored) ``ready`` signal instead of a constant, so the
    port can be a port of a Verilog top module; the requester must still accept every response.
    """

    def __init__(self, config, top_level=False):
        self.config = config
        req = data.StructLayout({"addr": config.addr_bits, "we": 1, "wdata": config.mem_bits})
        super().__init__({
            "req": Out(stream.Signature(req)),
            "resp": In(stream.Signature(config.mem_bits, always_ready=not top_level)),
        })


class MemoryModel(wiring.Component):
    """Single-port memory with fixed read latency; the simulation and FPGA memory of tridsa.

    Parameters
    ----------
    storage:
        ``"amaranth"``: an :class:`amaranth.lib.memory.Memory` initialised from ``init`` (Python
        simulation, FPGA block RAM). ``"verilog"``: an instance of ``tridsa_sim_mem`` (``sim/sim_mem.v``),
        which ``$readmemh``-s ``+mem_in=FILE`` at time 0 and ``$writememh``-s ``+mem_out=FILE`` while
        ``dump`` is high, so HDL simulators load and dump whole memory images without Python.
    stall_seed:
        Random stalls for tests (``"amaranth"`` storage; ``sim/sim_mem.v`` has its own from a plusarg): the
        port refuses about one request in four, in a pattern an xorshift32 generator makes from this seed.
        0 (the default, and every chip) never stalls: ``port.req.ready`` is then constant.
    """

    def __init__(self, config, storage="amaranth", init=(), stall_seed=0):
        if storage not in ("amaranth", "verilog"):
            raise ValueError(f"storage must be 'amaranth' or 'verilog', not {storage!r}")
        if not (isinstance(stall_seed, int) and 0 <= stall_seed < 1 << 32):
            raise ValueError(f"stall_seed must be an integer in 0..2**32-1, not {stall_seed!r}")
        self.config, self.storage, self.stall_seed = config, storage, stall_seed
        # Created here (not in elaborate) so a Python simulation can read the final contents.
        # A word read in the cycle it is written is never used (one request per cycle on ``port``; the write port
        # writes no word an engine reads): a block_ram
        self.storage_memory = (block_ram(config.mem_bits, config.mem_depth, init)
                               if storage == "amaranth" else None)
        ports = {"port": In(MemPort(config)), "dump": In(1)}
        if has_write_port(config):
            ports["write"] = In(write_port(config))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        stall = Signal()
        m.d.comb += self.port.req.ready.eq(~stall)
        if self.stall_seed:
            state = Signal(32, init=self.stall_seed)
            shifted = [Signal(32, name=f"xorshift{k}") for k in range(3)]
            m.d.comb += [shifted[0].eq(state ^ (state << 13)[:32]), shifted[1].eq(shifted[0] ^ (shifted[0] >> 17)),
                         shifted[2].eq(shifted[1] ^ (shifted[1] << 5)[:32])]
            m.d.sync += [state.eq(shifted[2]), stall.eq(shifted[2][:2] == 0)]
        # With mem_latency >= 2 the request is registered before the RAM (one of the latency cycles): the
        # arbiter's grant and payload mux then end at a register, not at the block RAM's inputs (FPGA timing);
        # with mem_latency >= 3 twice, so that the first register can sit beside the arbiter and the second
        # beside the block RAMs, which spread across the die. The order of accesses, and so what every read
        # returns, is unchanged.
        req_valid, req = self.port.req.valid & self.port.req.ready, self.port.req.payload
        for stage in range(request_stages(cfg.mem_latency)):
            accepted, payload = req_valid, req
            req_valid = Signal(name=f"req{stage}_valid")
            req = Signal.like(self.port.req.payload, name=f"req{stage}_payload", reset_less=True)   # req_valid: holds one
            m.d.sync += [req_valid.eq(accepted), req.eq(payload)]
        rdata = Signal(cfg.mem_bits)
        write = req_valid & req.we
        waddr, wdata = req.addr, req.wdata
        if has_write_port(cfg):         # every write comes through the write port (``port`` only reads)
            w = self.write
            write, waddr, wdata = w.valid, w.payload.addr, w.payload.wdata
        if self.storage == "amaranth":
            m.submodules.storage = storage = self.storage_memory
            wr = storage.write_port()
            m.d.comb += [wr.addr.eq(waddr), wr.data.eq(wdata), wr.en.eq(write),
                         rdata.eq(registered_read(m, storage, req.addr, "rd_data"))]
        else:
            m.submodules.storage = Instance(
                "tridsa_sim_mem", p_WIDTH=cfg.mem_bits, p_DEPTH=cfg.mem_depth, p_ABITS=cfg.addr_bits,
                i_clk=ClockSignal(), i_addr=req.addr, i_waddr=waddr, i_we=write, i_wdata=wdata,
                i_dump=self.dump, o_rdata=rdata, o_stall=stall)
        # One cycle in the RAM, the rest (after the request register) in a delay line.
        valid = Signal()
        m.d.sync += valid.eq(req_valid & ~req.we)
        payload = rdata
        for stage in range(cfg.mem_latency - 1 - request_stages(cfg.mem_latency)):
            v, d = Signal(name=f"lat{stage}_valid"), Signal(cfg.mem_bits, name=f"lat{stage}_data", reset_less=True)
            m.d.sync += [v.eq(valid), d.eq(payload)]
            valid, payload = v, d
        m.d.comb += [self.port.resp.valid.eq(valid), self.port.resp.payload.eq(payload)]
        return m


def request_stages(mem_latency):
    """Registers of :class:`MemoryModel` between an accepted request and the RAM: 0 with ``mem_latency`` 1, 1
    with 2, 2 with 3 or more (the RAM's read takes one more cycle, a delay line the rest)."""
    return min(mem_latency - 1, 2)


class MemArbiter(wiring.Component):
    """Round-robin arbiter of ``n`` requesters onto one memory port.

    A request that the memory stalls keeps its grant until accepted, so ``mem.req`` obeys the stream
    rules (payload stable while valid and not ready) even when other requesters become valid.

    Read responses are returned to the requester that issued them: the granted index travels down a
    ``mem_latency``-long delay line beside the read, because the memory answers exactly that many cycles later.

    Every requester's requests pass through a :class:`~tridsa.hw.skid.SkidBuffer` first: a requester's
    ``req.ready`` is then a register, so the grant (a function of every requester's ``valid``) never
    reaches back into a requester's logic (FPGA timing). It costs one cycle of latency, not throughput.
    A request a requester handed over may still wait in its buffer: ``idle`` is high when none does, and
    an engine reports ``done`` only then (its last write has reached the memory). ``pending`` has one bit
    per requester: a request of that requester still waits in its buffer. ``buffered=False`` leaves the
    skid buffers out (the top level's arbiter between engines, whose requests come from their own arbiters'
    buffers).
    """

    def __init__(self, config, n, buffered=True):
        self.config, self.n, self.buffered = config, n, buffered
        super().__init__({"mem": Out(MemPort(config)), "idle": Out(1), "pending": Out(n),
                          **{f"p{i}": In(MemPort(config)) for i in range(n)}})

    def port(self, i):
        return getattr(self, f"p{i}")

    def elaborate(self, platform):
        m = Module()
        n = self.n
        ports = []
        for i in range(n):
            if not self.buffered:
                ports.append(self.port(i).req)
                continue
            m.submodules[f"skid{i}"] = skid = SkidBuffer(self.port(i).req.payload.shape())
            wiring.connect(m, wiring.flipped(self.port(i).req), skid.i)
            ports.append(skid.o)
        m.d.comb += [self.pending.eq(Cat(p.valid for p in ports)),      # a skid entry implies o.valid
                     self.idle.eq(~self.pending.any())]
        last = Signal(range(n), init=n - 1)
        grant = Signal(range(n))
        stalled = Signal()          # a request was presented and not accepted: keep its grant
        held = Signal(range(n))
        # Priority starts after the last granted requester.
        with m.If(stalled):
            m.d.comb += grant.eq(held)
        with m.Else():
            with m.Switch(last):
                for start in range(n):
                    with m.Case(start):
                        order = [(start + 1 + k) % n for k in range(n)]
                        for idx in reversed(order):
                            with m.If(ports[idx].valid):
                                m.d.comb += grant.eq(idx)
        m.d.sync += [stalled.eq(self.mem.req.valid & ~self.mem.req.ready), held.eq(grant)]
        with m.Switch(grant):
            for i, p in enumerate(ports):
                with m.Case(i):
                    m.d.comb += [self.mem.req.payload.eq(p.payload), self.mem.req.valid.eq(p.valid),
                                 p.ready.eq(self.mem.req.ready)]
        accepted = self.mem.req.valid & self.mem.req.ready
        with m.If(accepted):
            m.d.sync += last.eq(grant)
        tag = grant
        for stage in range(self.config.mem_latency):
            tag_next = Signal(range(n), name=f"tag{stage}")
            m.d.sync += tag_next.eq(tag)
            tag = tag_next
        for i in range(n):
            m.d.comb += [self.port(i).resp.payload.eq(self.mem.resp.payload),
                         self.port(i).resp.valid.eq(self.mem.resp.valid & (tag == i))]
        return m


class BlockReader(wiring.Component):
    """Reads runs of consecutive words and streams them out, keeping reads in flight.

    ``cmd`` takes ``{addr, count}``: read words ``addr .. addr+count-1`` (``count >= 1``). Words leave on
    ``words`` in address order. A read is issued only while ``in flight + buffered < depth`` (credits),
    so the response FIFO can never overflow and the memory port is never blocked by this reader.
    ``depth`` defaults to ``Config.stream_fifo_depth`` (one read in flight per cycle); a deeper reader
    also reads ahead of a consumer that pauses.
    """

    def __init__(self, config, count_bits=24, depth=None):
        self.config = config
        self.depth = depth or config.stream_fifo_depth
        cmd = data.StructLayout({"addr": config.addr_bits, "count": count_bits})
        super().__init__({"cmd": In(stream.Signature(cmd)), "words": Out(stream.Signature(config.mem_bits)),
                          "mem": Out(MemPort(config)), "idle": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = fifo.SyncFIFOBuffered(width=self.config.mem_bits, depth=self.depth)
        addr = Signal(self.config.addr_bits)
        remaining = Signal.like(self.cmd.payload.count)
        credits = Signal(range(self.depth + 1))       # reads issued and not yet popped from the buffer
        issue = self.mem.req.valid & self.mem.req.ready
        pop = self.words.valid & self.words.ready
        m.d.sync += credits.eq(credits + issue - pop)
        m.d.comb += [self.mem.req.payload.addr.eq(addr), self.mem.req.payload.we.eq(0),
                     self.mem.req.valid.eq((remaining != 0) & (credits < self.depth)),
                     self.cmd.ready.eq((remaining == 0) | ((remaining == 1) & issue))]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [addr.eq(self.cmd.payload.addr), remaining.eq(self.cmd.payload.count)]
        with m.Elif(issue):
            m.d.sync += [addr.eq(addr + 1), remaining.eq(remaining - 1)]
        m.d.comb += [buffer.w_data.eq(self.mem.resp.payload), buffer.w_en.eq(self.mem.resp.valid),
                     self.words.payload.eq(buffer.r_data), self.words.valid.eq(buffer.r_rdy),
                     buffer.r_en.eq(self.words.ready)]
        m.d.comb += self.idle.eq((remaining == 0) & (credits == 0))
        return m
