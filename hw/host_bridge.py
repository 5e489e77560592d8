"""The host bridge: the board side of the framed UART protocol of :mod:`tridsa.spec.host_link`.

It turns request frames (bytes on ``rx``) into memory writes and reads on ``mem`` (the Top's ``host``
memory port), instruction pushes on ``cmd``, a reset pulse on ``clear``, and reply frames on ``tx``.
Every request gets exactly one reply; the protocol, reply codes and error recovery are documented in
:mod:`tridsa.spec.host_link` (the one definition both sides import).

Invariants:

* Nothing is pushed unless the PUSH payload checksum is right; nothing is written unless the header
  checksum is right, the range is inside memory and the accelerator is not running.
* Memory is touched only while the accelerator is idle (``busy = pushed since CLEAR and not halted``), so
  the host port never races an engine for the Top's memory.
* While a frame is incomplete, ``timeout`` idle clock cycles end it with a TIMEOUT reply; after a bad
  header, unknown command or refused WRITE the bridge drops bytes until the line has been idle that long
  and then replies, so it always recovers and never waits forever for a byte.
"""
from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec import host_link as link, isa
from .counters import counter_layout
from .engine_port import beyond_memory
from .memory import MemPort

__all__ = ["HostBridge", "crc8_next"]


def crc8_next(crc, byte):
    """The CRC-8 (:func:`tridsa.spec.host_link.crc8`) after one more byte, as a combinational expression.

    The CRC step is linear over GF(2) (init 0, no final xor), so every output bit is the XOR of the input
    bits whose unit vectors set it; the unit responses come from the software :func:`~tridsa.spec.host_link.crc8`.
    """
    inputs = Cat(crc, byte)
    responses = [link.crc8(bytes([0]), 1 << i) for i in range(8)] + [link.crc8(bytes([1 << i])) for i in range(8)]
    return Cat(Cat(inputs[i] for i in range(16) if responses[i] >> bit & 1).xor() for bit in range(8))


def _const_bytes(data: bytes) -> Const:
    return Const(int.from_bytes(data, "little"), 8 * len(data))


class HostBridge(wiring.Component):
    """Framed-protocol bridge between a UART byte stream and the accelerator Top.

    Parameters
    ----------
    config:
        The :class:`tridsa.Config` (memory width/depth; its digest is reported by INFO).
    counter_names:
        Names of the Top's counters, in order (``tridsa.hw.top.COUNTERS``).
    timeout:
        Idle clock cycles that end an incomplete frame (choose many byte times: USB serial adapters
        can pause a transfer for a few milliseconds).
    """

    def __init__(self, config, counter_names, timeout):
        if not isinstance(timeout, int) or timeout < 16:
            raise ValueError(f"timeout must be an integer >= 16 clock cycles, not {timeout!r}")
        self.config, self.counter_names, self.timeout = config, tuple(counter_names), timeout
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "mem": Out(MemPort(config)),
            "cmd": Out(stream.Signature(isa.INSTR_BITS)),
            "clear": Out(1),
            "halted": In(1),
            "error": In(8),
            "error_pc": In(32),
            "counters": In(counter_layout(self.counter_names)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        width = cfg.mem_width
        codes, cmds = link.REPLY_CODES, link.COMMANDS

        # Memory: one word at a time through ``word`` (bytes shift in at the top and out at the bottom);
        # the link is far slower than the memory, so the bridge needs no read buffer or arbiter.
        req = self.mem.req
        # -- receive side --------------------------------------------------------------------
        # Header and PUSH payload bytes shift into one register (the header is decoded before the payload
        # arrives): the header is its top HEADER_BYTES bytes.
        instr = Signal(isa.INSTR_BITS)
        header = instr[-8 * link.HEADER_BYTES:]
        command, addr, count = header[:8], header[8:40], header[40:56]
        crc = Signal(8)
        words_left = Signal(16)
        mem_addr = Signal(cfg.addr_bits)                  # the next word to write or read
        word = Signal(cfg.mem_bits)
        started = Signal()
        busy = started & ~self.halted
        status = Cat(self.halted, busy, C(0, 6), self.error, self.error_pc, Value.cast(self.counters))
        info = _const_bytes(link.MAGIC + bytes([link.PROTOCOL_VERSION]) + link.config_digest_bytes(cfg)
                            + bytes([len(self.counter_names)]))
        index = Signal(range(max(link.HEADER_BYTES, link.INSTR_BYTES, width, len(status) // 8) + 1))
        code = Signal(8)
        idle = Signal(range(self.timeout + 1))
        timed_out = idle == self.timeout
        # Decoded from the header into registers (is_cmd only until the payload starts): the header is complete
        # at least one byte time before CHECK uses them, and CHECK's decision then starts from registers.
        in_range = Signal()
        m.d.sync += in_range.eq((count != 0) & ~beyond_memory(cfg, addr, count))
        is_cmd = {name: Signal(name=f"is_{name.lower()}") for name in cmds}

        byte = self.rx.payload
        got = self.rx.valid & self.rx.ready
        with m.If(got):
            m.d.sync += idle.eq(0)
        with m.Elif(~timed_out):
            m.d.sync += idle.eq(idle + 1)

        writing = Signal()                                # a complete word waits for the memory
        m.d.comb += [req.payload.addr.eq(mem_addr), req.payload.wdata.eq(word)]
        with m.If(req.valid & req.ready):
            m.d.sync += [writing.eq(0), mem_addr.eq(mem_addr + 1)]

        # -- reply side ----------------------------------------------------------------------
        tx_crc = Signal(8)
        sent = self.tx.valid & self.tx.ready
        bytes_left = Signal(16 + width.bit_length())

        def reply(next_code):
            m.d.sync += code.eq(next_code)
            m.next = "SEND_SYNC"

        def drain(next_code):
            m.d.sync += code.eq(next_code)
            m.next = "DRAIN"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(got & (byte == link.REQ_SYNC)):
                    m.d.sync += [crc.eq(0), index.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(got):
                    m.d.sync += [instr.eq(Cat(instr[8:], byte)), crc.eq(crc8_next(crc, byte)),
                                 index.eq(index + 1)]
                    with m.If(index == link.HEADER_BYTES - 1):
                        m.next = "CHECK"
                with m.Elif(timed_out):
                    reply(codes["TIMEOUT"])
            with m.State("CHECK"):                        # receive the header checksum, decode
                m.d.comb += self.rx.ready.eq(1)
                with m.If(got):
                    m.d.sync += [crc.eq(0), index.eq(0)]
                    with m.If(byte != crc):
                        drain(codes["BAD_CHECKSUM"])
                    with m.Elif(is_cmd["WRITE"]):
                        with m.If(busy):
                            drain(codes["BUSY"])
                        with m.Elif(~in_range):
                            drain(codes["BAD_RANGE"])
                        with m.Else():
                            m.d.sync += [mem_addr.eq(addr), words_left.eq(count)]
                            m.next = "WRITE"
                    with m.Elif(is_cmd["READ"]):
                        with m.If(busy):
                            reply(codes["BUSY"])
                        with m.Elif(~in_range):
                            reply(codes["BAD_RANGE"])
                        with m.Else():
                            m.d.sync += [mem_addr.eq(addr), bytes_left.eq(count * width)]
                            reply(codes["OK"])
                    with m.Elif(is_cmd["PUSH"]):
                        m.next = "PUSH"
                    with m.Elif(is_cmd["CLEAR"]):
                        m.d.comb += self.clear.eq(1)
                        m.d.sync += started.eq(0)
                        reply(codes["OK"])
                    with m.Elif(is_cmd["STATUS"] | is_cmd["INFO"]):
                        m.d.sync += bytes_left.eq(Mux(is_cmd["STATUS"], len(status) // 8, len(info) // 8))
                        reply(codes["OK"])
                    with m.Else():
                        drain(codes["UNKNOWN_COMMAND"])
                with m.Elif(timed_out):
                    reply(codes["TIMEOUT"])
            with m.State("WRITE"):                        # payload bytes -> words -> memory
                m.d.comb += [self.rx.ready.eq(~writing), req.valid.eq(writing), req.payload.we.eq(1)]
                with m.If(got):
                    with m.If(words_left == 0):           # the payload checksum
                        reply(Mux(byte == crc, codes["OK"], codes["BAD_CHECKSUM"]))
                    with m.Else():
                        m.d.sync += [word.eq(Cat(word[8:], byte)), crc.eq(crc8_next(crc, byte)),
                                     index.eq(index + 1)]
                        with m.If(index == width - 1):
                            m.d.sync += [writing.eq(1), index.eq(0), words_left.eq(words_left - 1)]
                with m.Elif(timed_out):
                    reply(codes["TIMEOUT"])
            with m.State("PUSH"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(got):
                    with m.If(index == link.INSTR_BYTES):
                        with m.If(byte == crc):
                            m.next = "PUSH_WAIT"
                        with m.Else():
                            reply(codes["BAD_CHECKSUM"])
                    with m.Else():
                        m.d.sync += [instr.eq(Cat(instr[8:], byte)), crc.eq(crc8_next(crc, byte)),
                                     index.eq(index + 1)]
                with m.Elif(timed_out):
                    reply(codes["TIMEOUT"])
            with m.State("PUSH_WAIT"):
                m.d.comb += [self.cmd.valid.eq(1), self.cmd.payload.eq(instr)]
                with m.If(self.cmd.ready):
                    m.d.sync += started.eq(1)
                    reply(codes["OK"])
            with m.State("DRAIN"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(timed_out):
                    m.next = "SEND_SYNC"
            with m.State("SEND_SYNC"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(link.REP_SYNC)]
                with m.If(sent):
                    m.d.sync += tx_crc.eq(0)
                    m.next = "SEND_CODE"
            with m.State("SEND_CODE"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(code)]
                with m.If(sent):
                    m.d.sync += [tx_crc.eq(crc8_next(tx_crc, code)), index.eq(0)]
                    with m.If(code != codes["OK"]):
                        m.next = "SEND_CRC"
                    with m.Elif(is_cmd["READ"]):
                        m.next = "READ_WORD"
                    with m.Elif(is_cmd["STATUS"]):
                        m.next = "SEND_STATUS"
                    with m.Elif(is_cmd["INFO"]):
                        m.next = "SEND_INFO"
                    with m.Else():
                        m.next = "SEND_CRC"
            with m.State("READ_WORD"):                    # request the word at mem_addr
                m.d.comb += [req.valid.eq(1), req.payload.we.eq(0)]
                with m.If(req.ready):
                    m.next = "READ_WAIT"
            with m.State("READ_WAIT"):                    # its data comes back mem_latency cycles later
                with m.If(self.mem.resp.valid):
                    m.d.sync += [word.eq(self.mem.resp.payload), index.eq(0)]
                    m.next = "SEND_READ"
            for state, source in (("SEND_READ", word[:8]), ("SEND_STATUS", status.word_select(index, 8)),
                                  ("SEND_INFO", info.word_select(index, 8))):
                with m.State(state):
                    m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(source)]
                    with m.If(sent):
                        m.d.sync += [tx_crc.eq(crc8_next(tx_crc, source)), index.eq(index + 1),
                                     bytes_left.eq(bytes_left - 1)]
                        if state == "SEND_READ":
                            m.d.sync += word.eq(word >> 8)
                            with m.If(index == width - 1):
                                m.next = "READ_WORD"
                        with m.If(bytes_left == 1):
                            m.next = "SEND_CRC"
            with m.State("SEND_CRC"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(tx_crc)]
                with m.If(sent):
                    m.next = "IDLE"
        with m.If(fsm.ongoing("HEADER") | fsm.ongoing("CHECK")):
            m.d.sync += [is_cmd[name].eq(command == code) for name, code in cmds.items()]
        return m
