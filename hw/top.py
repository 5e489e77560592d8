"""Top level: command queue -> dispatcher -> engines, the shared memory and the status register.

Host protocol: push instruction words into ``cmd`` (a stream; the queue holds ``Config.queue_depth``).
The dispatcher issues them in order. It starts an instruction on an engine that is ``ready`` when no
instruction is in flight, or when the last instruction issued runs on that same engine (with
``Config.overlap`` an engine may take the next instruction while it drains the previous one: see
:class:`tridsa.hw.gemm.GemmEngine`), or, for the two engines that run side by side (GEMM and GATHER,
:func:`tridsa.hw.engine_port.side_by_side`), on the other engine once every instruction in flight passed
its checks. Side by side, the younger engine's instructions touch memory only on ``go``: no region they
read or write meets one the older engine's instructions write, and none they write meets one those read
(:func:`tridsa.hw.engine_port.regions_conflict`); an arbiter shares the memory port between the two.
Instructions retire in order: the oldest in flight runs on ``head``, and a ``done`` of the younger engine
is owed until the older engine's instructions retired. NOP and HALT wait until nothing is in flight.
``HALT`` or the first error raises ``halted``; ``error`` then holds the error code
(:data:`tridsa.spec.isa.ERRORS`) and ``error_pc`` the index of the failing instruction; after an engine
reported an error nothing more is issued. After halting, the dispatcher keeps draining ``cmd`` so a host
never blocks.
Counters count from the first instruction popped until ``halted``. The chip has the engines named in
``Config.engines``; an instruction of a missing engine is ILLEGAL_OPCODE.

``host`` is a memory port for the host (a UART bridge on an FPGA): it owns the memory whenever no
instruction is in flight. Simulation backends load memory in bulk instead and keep ``host.req.valid`` low.
"""
from amaranth import *
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec import isa
from .counters import counter_layout
from .engines import ENGINES, engine_class
from .engine_port import regions_conflict
from .memory import MemArbiter, MemoryModel, MemPort, has_write_port

__all__ = ["Top", "counter_names"]


def counter_names(config) -> tuple:
    """The Top's counters, in port order: cycles, retired instructions, memory words read/written by
    engines, then every engine's own counters as ``"<engine>_<counter>"``."""
    return ("cycles", "retired", "mem_reads", "mem_writes") + tuple(
        f"{name}_{c}" for name in config.engines for c in engine_class(name, config).COUNTERS)


class Top(wiring.Component):
    """The accelerator with its memory.

    Parameters
    ----------
    config:
        The :class:`tridsa.Config`.
    storage:
        ``"amaranth"`` or ``"verilog"``, see :class:`tridsa.hw.memory.MemoryModel`.
    init:
        Initial memory words (ints), for ``storage="amaranth"``.
    stall_seed:
        Random memory stalls for tests, see :class:`tridsa.hw.memory.MemoryModel`.
    """

    def __init__(self, config, storage="amaranth", init=(), stall_seed=0):
        self.config = config
        self.memory = MemoryModel(config, storage=storage, init=init, stall_seed=stall_seed)
        self.counter_names = counter_names(config)
        super().__init__({
            "cmd": In(stream.Signature(isa.INSTR_BITS)),
            "halted": Out(1),
            "error": Out(8),
            "error_pc": Out(32),
            "counters": Out(counter_layout(config, self.counter_names)),
            "dump": In(1),
            "host": In(MemPort(config, top_level=True)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.memory = self.memory
        if cfg.queue_depth:
            m.submodules.queue = queue = fifo.SyncFIFOBuffered(width=isa.INSTR_BITS, depth=cfg.queue_depth)
            m.d.comb += [queue.w_data.eq(self.cmd.payload), queue.w_en.eq(self.cmd.valid),
                         self.cmd.ready.eq(queue.w_rdy)]
        else:                               # no queue: the dispatcher reads the host's stream directly
            queue = fifo.FIFOInterface(width=isa.INSTR_BITS, depth=0)
            m.d.comb += [queue.r_data.eq(self.cmd.payload), queue.r_rdy.eq(self.cmd.valid),
                         self.cmd.ready.eq(queue.r_en)]
        engines = {name: engine_class(name, cfg)(cfg) for name in cfg.engines}
        for name, engine in engines.items():
            m.submodules[name] = engine
        m.d.comb += self.memory.dump.eq(self.dump)

        word = queue.r_data
        opcode = word[:isa.OPCODE_BITS]
        pc = Signal(32)
        started = Signal()
        counters = self.counters
        n = len(engines)
        # Engines that run side by side with another (a GATHER beside a GEMM): they publish the memory
        # regions of their instructions in flight and wait for ``go`` (see the module docstring).
        side = [index for index, engine in enumerate(engines.values()) if hasattr(engine, "go")]
        cross = len(side) >= 2
        young = Signal(range(n + 1))      # index + 1 of the engine of the last issued instruction, 0 = none
        head = Signal(range(n))           # the engine of the oldest instruction in flight
        # issued, not retired (an engine holds <= 3 with overlap, else 1)
        count = [Signal(range(4 if cfg.overlap else 2), name=f"count{i}") for i in range(n)]
        owed = [Signal(range(4), name=f"owed{i}") for i in range(n)]     # done, not retired (younger than head)
        owed_error = [Signal(8, name=f"owed_error{i}") for i in range(n)]
        failed = Signal()                 # an engine reported an error: nothing more is issued
        in_flight = Cat(c != 0 for c in count).any()
        for engine in engines.values():
            m.d.comb += engine.instr.eq(word)

        # Memory port: the engines' ports while instructions are in flight (only one engine has them, or
        # two engines side by side through an arbiter), else the host's.
        port = self.memory.port
        with m.If(~in_flight):
            m.d.comb += [port.req.valid.eq(self.host.req.valid), port.req.payload.eq(self.host.req.payload),
                         self.host.req.ready.eq(port.req.ready)]
        m.d.comb += [self.host.resp.valid.eq(port.resp.valid & ~in_flight),
                     self.host.resp.payload.eq(port.resp.payload)]
        if cross:
            m.submodules.arbiter = arbiter = MemArbiter(cfg, n, buffered=False)
            for index, engine in enumerate(engines.values()):
                wiring.connect(m, engine.mem, arbiter.port(index))
            with m.If(in_flight):
                m.d.comb += [port.req.valid.eq(arbiter.mem.req.valid), port.req.payload.eq(arbiter.mem.req.payload),
                             arbiter.mem.req.ready.eq(port.req.ready)]
            m.d.comb += [arbiter.mem.resp.valid.eq(port.resp.valid & in_flight),
                         arbiter.mem.resp.payload.eq(port.resp.payload)]
            # hazards between the two engines' instructions in flight (docs/isa.md, "Ordering and hazards")
            a, b = (list(engines.values())[i] for i in side)
            conflict = regions_conflict(a, b)
            for index in side:
                engine = list(engines.values())[index]
                m.d.comb += engine.go.eq((head == index) | ~conflict)
        else:
            for index, engine in enumerate(engines.values()):
                with m.If(young == index + 1):
                    m.d.comb += [port.req.valid.eq(engine.mem.req.valid), port.req.payload.eq(engine.mem.req.payload),
                                 engine.mem.req.ready.eq(port.req.ready)]
                m.d.comb += [engine.mem.resp.valid.eq(port.resp.valid & (young == index + 1)),
                             engine.mem.resp.payload.eq(port.resp.payload)]
                if hasattr(engine, "go"):
                    m.d.comb += engine.go.eq(1)

        issue = Signal(n)                 # the instruction at ``pc + in flight`` starts on engine i
        retire = Signal()                 # the oldest instruction in flight (on ``head``) retires
        retire_error = Signal(8)
        with m.FSM():
            with m.State("FETCH"):
                with m.If(queue.r_rdy & ~failed):
                    with m.Switch(opcode):
                        with m.Case(isa.OPCODES["NOP"].code):
                            with m.If(~in_flight):
                                m.d.comb += queue.r_en.eq(1)
                                m.d.sync += [pc.eq(pc + 1), counters.retired.eq(counters.retired + 1)]
                        with m.Case(isa.OPCODES["HALT"].code):
                            with m.If(~in_flight):
                                m.d.comb += queue.r_en.eq(1)
                                m.next = "HALTED"
                        for index, engine in enumerate(engines.values()):
                            with m.Case(*(isa.OPCODES[op].code for op in engine.OPS)):
                                # on the engine of the last instruction (it may take the next one while it
                                # drains), or beside it when every instruction of it passed its checks
                                beside = Const(0)
                                if cross and index in side:
                                    beside = Cat((young == other + 1) & (head == other)
                                                 & list(engines.values())[other].checked
                                                 for other in side if other != index).any()
                                with m.If(engine.ready & (count[index] != 3)
                                          & (~in_flight | (young == index + 1) | beside)):
                                    m.d.comb += [queue.r_en.eq(1), engine.start.eq(1), issue[index].eq(1)]
                                    m.d.sync += young.eq(index + 1)
                                    with m.If(~in_flight):
                                        m.d.sync += head.eq(index)
                        with m.Default():
                            with m.If(~in_flight):
                                m.d.comb += queue.r_en.eq(1)
                                m.d.sync += [self.error.eq(isa.ERRORS["ILLEGAL_OPCODE"]), self.error_pc.eq(pc)]
                                m.next = "HALTED"
                    with m.If(queue.r_en):
                        m.d.sync += started.eq(1)
                # Instructions retire in order: the oldest in flight is at ``pc``, on ``head``. An engine's
                # ``done`` for a younger instruction (the engine beside ``head``) is owed until then.
                for index, engine in enumerate(engines.values()):
                    is_head = head == index
                    owes = owed[index] != 0
                    with m.If(is_head):
                        m.d.comb += retire.eq(owes | engine.done)
                        m.d.comb += retire_error.eq(Mux(owes, Mux(owed[index] == 1, owed_error[index], 0), engine.error))
                    if cross and index in side:
                        keep = engine.done & (~is_head | owes)        # a done that does not retire now
                        m.d.sync += owed[index].eq(owed[index] + keep - (is_head & owes))
                        with m.If(keep):
                            m.d.sync += owed_error[index].eq(engine.error)
                    if cross:   # an error of the engine beside the head stops the issue until it retires
                        with m.If(engine.done & (engine.error != 0)):
                            m.d.sync += failed.eq(1)
                    m.d.sync += count[index].eq(count[index] + issue[index] - (retire & is_head))
                with m.If(retire):
                    with m.If(retire_error != 0):
                        m.d.sync += [self.error.eq(retire_error), self.error_pc.eq(pc)]
                        m.next = "HALTED"
                    with m.Else():
                        m.d.sync += [pc.eq(pc + 1), counters.retired.eq(counters.retired + 1)]
                    # the head's last instruction retires: the engine beside it (if any) is the oldest now
                    issued = sum(issue[i] * (i + 1) for i in range(n))         # at most one bit of issue
                    next_young = Mux(issue.any(), issued, young)
                    for index in range(n):
                        with m.If((head == index) & (count[index] == 1) & ~issue[index]):
                            with m.If(next_young == index + 1):
                                m.d.sync += young.eq(0)
                            with m.Else():
                                m.d.sync += head.eq(next_young - 1)
            with m.State("HALTED"):
                m.d.comb += [self.halted.eq(1), queue.r_en.eq(1)]

        with m.If(started & ~self.halted):
            m.d.sync += counters.cycles.eq(counters.cycles + 1)
        # Engine traffic, in words, counted a cycle after the memory accepts it: the arbiter's grant ends at
        # two registers, not in the enables of two counters (FPGA timing; an engine is done cycles later).
        accepted = in_flight & port.req.valid & port.req.ready
        wrote, read = Signal(), Signal()
        engine_write = Const(0)
        if has_write_port(cfg):                 # the memory's write port: the GEMM engine's writes, or the host's
            wmem, host = engines["gemm"].wmem, self.host.req
            host_write = ~in_flight & host.valid & host.payload.we
            m.d.comb += [self.memory.write.valid.eq(wmem.valid | host_write),
                         self.memory.write.payload.addr.eq(Mux(host_write, host.payload.addr, wmem.payload.addr)),
                         self.memory.write.payload.wdata.eq(Mux(host_write, host.payload.wdata, wmem.payload.wdata))]
            engine_write = wmem.valid
        m.d.sync += [wrote.eq((accepted & port.req.payload.we) | engine_write), read.eq(accepted & ~port.req.payload.we)]
        with m.If(wrote):
            m.d.sync += counters.mem_writes.eq(counters.mem_writes + 1)
        with m.If(read):
            m.d.sync += counters.mem_reads.eq(counters.mem_reads + 1)
        for name, engine in engines.items():
            for counter in engine.COUNTERS:
                m.d.comb += getattr(counters, f"{name}_{counter}").eq(getattr(engine.counters, counter))
        return m
