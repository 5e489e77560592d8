"""The host bridge: the board side of the framed UART protocol of :mod:`tridsa.spec.host_link`.

It turns request frames (bytes on ``rx``) into memory writes and reads on ``mem`` (the Top's ``host``
memory port), instruction pushes on ``cmd``, a reset pulse on ``clear``, and reply frames on ``tx``.
Every request gets exactly one reply; the protocol, reply codes and error recovery are documented in
:mod:`tridsa.spec.host_link` (the one definition both sides import).

Three parts: :class:`FrameReceiver` (sync byte, header, payload, both checksums, the idle timeout),
the command executor (:class:`HostBridge`: decodes the header, moves words between the frames and the
memory, pushes instructions) and :class:`ReplySender` (sync byte, code, payload, checksum). One frame
register holds the header, then a PUSH's instruction or a WRITE's word; word ranges end at a register
holding their last address (no byte counters).

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
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec import host_link as link, isa
from .counters import counter_layout
from .engine_port import beyond_memory, log2
from .memory import MemPort

__all__ = ["HostBridge", "FrameReceiver", "ReplySender", "crc8_next"]


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


class FrameReceiver(wiring.Component):
    """Request frames from the byte stream ``rx``: the sync byte, the header and its checksum, then the
    payload the executor asks for and its checksum.

    Bytes shift into ``frame`` (:data:`~tridsa.spec.isa.INSTR_BITS` wide, the newest byte at the top): once
    the header is in, its top :data:`~tridsa.spec.host_link.HEADER_BYTES` bytes are the header (``command``,
    ``addr``, ``count``); after ``n`` payload bytes, its top ``n`` bytes are the payload. A sync byte is
    looked for only while ``listen``. ``header`` pulses in the cycle after the header's checksum byte
    (``header_ok``: it matched; no byte is taken in that cycle); in that cycle the executor answers with
    ``payload`` (receive payload bytes, each passed
    on ``data`` until the one taken with ``data_last``, then the checksum byte: ``end`` pulses with
    ``ok``; ``data.ready`` holds back the checksum byte too), ``drain`` (drop bytes until the line has been
    idle for ``timeout`` cycles: ``drained``) or neither (the frame is complete). ``timed_out`` pulses
    when an incomplete frame has been idle that long.
    """

    def __init__(self, timeout):
        self.timeout = timeout
        super().__init__({
            "rx": In(stream.Signature(8)), "listen": In(1), "frame": Out(isa.INSTR_BITS),
            "command": Out(8), "addr": Out(32), "count": Out(16), "in_header": Out(1),
            "header": Out(1), "header_ok": Out(1), "payload": In(1), "drain": In(1),
            "data": Out(stream.Signature(8)), "data_last": In(1), "end": Out(1), "ok": Out(1),
            "drained": Out(1), "timed_out": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        frame, byte = self.frame, self.rx.payload
        header = frame[-8 * link.HEADER_BYTES:]
        m.d.comb += [self.command.eq(header[:8]), self.addr.eq(header[8:40]), self.count.eq(header[40:56])]
        crc = Signal(8)
        header_ok = Signal()
        index = Signal(range(link.HEADER_BYTES))
        idle = Signal(range(self.timeout + 1))
        timed_out = idle == self.timeout
        got = self.rx.valid & self.rx.ready
        with m.If(got):
            m.d.sync += idle.eq(0)
        with m.Elif(~timed_out):
            m.d.sync += idle.eq(idle + 1)

        def take(b):
            m.d.sync += [frame.eq(Cat(frame[8:], b)), crc.eq(crc8_next(crc, b))]

        def wait_for_bytes():
            with m.If(~got & timed_out):
                m.d.comb += self.timed_out.eq(1)
                m.next = "SYNC"

        with m.FSM():
            with m.State("SYNC"):
                m.d.comb += self.rx.ready.eq(self.listen)
                with m.If(got & (byte == link.REQ_SYNC)):
                    m.d.sync += [crc.eq(0), index.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [self.rx.ready.eq(1), self.in_header.eq(1)]
                with m.If(got):
                    take(byte)
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == link.HEADER_BYTES - 1):
                        m.next = "CHECK"
                wait_for_bytes()
            with m.State("CHECK"):                        # the header checksum, compared into a register
                m.d.comb += [self.rx.ready.eq(1), self.in_header.eq(1)]
                with m.If(got):
                    m.d.sync += [header_ok.eq(byte == crc), crc.eq(0)]
                    m.next = "DECIDE"
                wait_for_bytes()
            with m.State("DECIDE"):                       # the executor decides in the cycle after (FPGA timing)
                m.d.comb += [self.header.eq(1), self.header_ok.eq(header_ok)]
                m.next = "SYNC"
                with m.If(self.drain):
                    m.next = "DRAIN"
                with m.Elif(self.payload):
                    m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [self.rx.ready.eq(self.data.ready), self.data.valid.eq(self.rx.valid),
                             self.data.payload.eq(byte)]
                with m.If(got):
                    take(byte)
                    with m.If(self.data_last):
                        m.next = "PAYLOAD_CHECK"
                wait_for_bytes()
            with m.State("PAYLOAD_CHECK"):                # the payload checksum
                m.d.comb += self.rx.ready.eq(self.data.ready)
                with m.If(got):
                    m.d.comb += [self.end.eq(1), self.ok.eq(byte == crc)]
                    m.next = "SYNC"
                wait_for_bytes()
            with m.State("DRAIN"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(timed_out):
                    m.d.comb += self.drained.eq(1)
                    m.next = "SYNC"
        return m


class ReplySender(wiring.Component):
    """Reply frames on ``tx``: ``send`` (one cycle, while ``idle``) sends the sync byte, ``code``, with
    ``payload`` (code OK only) the payload bytes taken from ``data`` up to the one marked ``last``, and the
    checksum of code and payload; ``done`` pulses when the checksum has been sent. ``code`` and ``payload``
    are held from ``send`` until ``done``.
    """

    def __init__(self):
        super().__init__({"send": In(1), "code": In(8), "payload": In(1), "idle": Out(1),
                          "data": In(stream.Signature(data.StructLayout({"byte": 8, "last": 1}))), "done": Out(1),
                          "tx": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        crc = Signal(8)
        tx, sent = self.tx, self.tx.valid & self.tx.ready
        with m.If(sent):            # one CRC step for every byte sent (it restarts after the sync byte)
            m.d.sync += crc.eq(crc8_next(crc, tx.payload))
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.send):
                    m.next = "SYNC"
            with m.State("SYNC"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(link.REP_SYNC)]
                with m.If(sent):
                    m.d.sync += crc.eq(0)
                    m.next = "CODE"
            with m.State("CODE"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(self.code)]
                with m.If(sent):
                    m.next = "CRC"
                    with m.If(self.payload):
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [tx.valid.eq(self.data.valid), tx.payload.eq(self.data.payload.byte),
                             self.data.ready.eq(tx.ready)]
                with m.If(sent & self.data.payload.last):
                    m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(crc)]
                with m.If(sent):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m


class HostBridge(wiring.Component):
    """Framed-protocol bridge between a UART byte stream and the accelerator Top: a
    :class:`FrameReceiver`, the command executor (this component) and a :class:`ReplySender`.

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
            "counters": In(counter_layout(config, self.counter_names)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        width = cfg.mem_width
        codes, cmds = link.REPLY_CODES, link.COMMANDS
        started = Signal()
        # cmd.valid is a register of its own (high in PUSH_WAIT), not a decode of the state: it enables the
        # Top's instruction registers (FPGA timing)
        pushing = Signal()
        busy = started & ~self.halted
        status = Cat(self.halted, busy, C(0, 6), self.error, self.error_pc, Value.cast(self.counters))
        info = _const_bytes(link.MAGIC + bytes([link.PROTOCOL_VERSION]) + link.config_digest_bytes(cfg)
                            + bytes([len(self.counter_names)]))
        m.submodules.receiver = rx = FrameReceiver(self.timeout)
        m.d.comb += [self.cmd.valid.eq(pushing), self.cmd.payload.eq(rx.frame)]
        m.submodules.sender = tx = ReplySender()
        wiring.connect(m, wiring.flipped(self.rx), rx.rx)
        wiring.connect(m, tx.tx, wiring.flipped(self.tx))

        # Memory: one word at a time (the link is far slower than the memory: no buffer, no arbiter). A
        # WRITE's word is the top of the receiver's frame register once its bytes are in. A READ reads
        # its word again for every byte and keeps only that byte: a few cycles of the memory per byte,
        # which the UART takes ten bit times to send. Every reply payload byte (READ, STATUS, INFO) is
        # loaded into ``reply_byte`` before it is offered: the byte multiplexer ends at a register, not in
        # the sender's checksum (FPGA timing).
        req = self.mem.req
        mem_addr = Signal(cfg.addr_bits)                  # the next word to write, or the word being read
        last_addr = Signal(cfg.addr_bits)                 # a WRITE's or READ's last word: addr + count - 1
        last_word = mem_addr == last_addr
        reply_byte = Signal(8)
        # A word wider than 64 bits lands in a register of its own (no enable) before the byte multiplexer:
        # its block RAMs are spread over the die (FPGA timing). A narrower one goes straight to it (on the
        # iCE40 chip, 64 flip-flops are 64 of its last logic cells).
        if cfg.mem_bits > 64:
            resp_word, resp_valid = Signal(cfg.mem_bits, reset_less=True), Signal()
            m.d.sync += [resp_word.eq(self.mem.resp.payload), resp_valid.eq(self.mem.resp.valid)]
        else:
            resp_word, resp_valid = self.mem.resp.payload, self.mem.resp.valid
        index = Signal(range(max(width, len(status) // 8, len(info) // 8) + 1))
        writing = Signal()                                # a complete word waits for the memory
        m.d.comb += [req.payload.addr.eq(mem_addr), req.payload.wdata.eq(rx.frame[-cfg.mem_bits:])]
        with m.If(req.valid & req.ready & req.payload.we):
            m.d.sync += [writing.eq(0), mem_addr.eq(mem_addr + 1)]
        # Decoded from the header into registers while it arrives: the header is complete at least one
        # byte time before its checksum byte, when the decision starts from registers.
        in_range = Signal()
        m.d.sync += in_range.eq((rx.count != 0) & ~beyond_memory(cfg, rx.addr, rx.count))
        is_cmd = {name: Signal(name=f"is_{name.lower()}") for name in cmds}
        with m.If(rx.in_header):
            m.d.sync += [is_cmd[name].eq(rx.command == code) for name, code in cmds.items()]

        # The reply's code and payload flag are registers, and ``send`` starts the sender a cycle after the
        # decision (its state does not wait for the header decode; FPGA timing).
        send, reply_code, reply_payload = Signal(), Signal(8), Signal()
        m.d.sync += send.eq(0)
        m.d.comb += [tx.send.eq(send), tx.code.eq(reply_code), tx.payload.eq(reply_payload)]

        def reply(code, payload=False):
            m.d.sync += [send.eq(1), reply_code.eq(code), reply_payload.eq(payload)]

        def drain(code):
            m.d.comb += rx.drain.eq(1)
            m.d.sync += [reply_code.eq(code), reply_payload.eq(0)]
            m.next = "DRAIN"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += rx.listen.eq(1)
                with m.If(rx.header):                   # decide on the header's checksum byte
                    m.d.sync += [index.eq(0), mem_addr.eq(rx.addr), last_addr.eq(rx.addr + rx.count - 1)]
                    with m.If(~rx.header_ok):
                        drain(codes["BAD_CHECKSUM"])
                    with m.Elif(is_cmd["WRITE"]):
                        with m.If(busy | ~in_range):
                            drain(Mux(busy, codes["BUSY"], codes["BAD_RANGE"]))
                        with m.Else():
                            m.d.comb += rx.payload.eq(1)
                            m.next = "WRITE"
                    with m.Elif(is_cmd["READ"]):
                        with m.If(busy):
                            reply(codes["BUSY"])
                            m.next = "REPLY"
                        with m.Elif(~in_range):
                            reply(codes["BAD_RANGE"])
                            m.next = "REPLY"
                        with m.Else():
                            reply(codes["OK"], payload=True)
                            m.next = "READ_WORD"
                    with m.Elif(is_cmd["PUSH"]):
                        m.d.comb += rx.payload.eq(1)
                        m.next = "PUSH"
                    with m.Elif(is_cmd["CLEAR"]):
                        m.d.comb += self.clear.eq(1)
                        m.d.sync += started.eq(0)
                        reply(codes["OK"])
                        m.next = "REPLY"
                    with m.Elif(is_cmd["STATUS"]):
                        reply(codes["OK"], payload=True)
                        m.next = "LOAD_TABLE"
                    with m.Elif(is_cmd["INFO"]):
                        reply(codes["OK"], payload=True)
                        m.next = "LOAD_TABLE"
                    with m.Else():
                        drain(codes["UNKNOWN_COMMAND"])
                with m.Elif(rx.timed_out):
                    reply(codes["TIMEOUT"])
                    m.next = "REPLY"
            with m.State("DRAIN"):                        # the receiver drops bytes until the line is idle
                with m.If(rx.drained):
                    m.d.sync += send.eq(1)
                    m.next = "REPLY"
            with m.State("WRITE"):                        # payload bytes -> words -> memory
                m.d.comb += [rx.data.ready.eq(~writing), req.valid.eq(writing), req.payload.we.eq(1),
                             rx.data_last.eq((index == width - 1) & last_word)]
                with m.If(rx.data.valid & rx.data.ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == width - 1):
                        m.d.sync += [writing.eq(1), index.eq(0)]
                with m.If(rx.end):
                    reply(Mux(rx.ok, codes["OK"], codes["BAD_CHECKSUM"]))
                    m.next = "REPLY"
                with m.Elif(rx.timed_out):
                    reply(codes["TIMEOUT"])
                    m.next = "REPLY"
            with m.State("PUSH"):
                m.d.comb += [rx.data.ready.eq(1), rx.data_last.eq(index == link.INSTR_BYTES - 1)]
                with m.If(rx.data.valid):
                    m.d.sync += index.eq(index + 1)
                with m.If(rx.end):
                    with m.If(rx.ok):
                        m.d.sync += pushing.eq(1)
                        m.next = "PUSH_WAIT"
                    with m.Else():
                        reply(codes["BAD_CHECKSUM"])
                        m.next = "REPLY"
                with m.Elif(rx.timed_out):
                    reply(codes["TIMEOUT"])
                    m.next = "REPLY"
            with m.State("PUSH_WAIT"):                    # ``pushing`` offers the frame to the Top
                with m.If(self.cmd.ready):
                    m.d.sync += [started.eq(1), pushing.eq(0)]
                    m.next = "PUSHED"
            with m.State("PUSHED"):                       # the reply a cycle after the Top took the instruction
                reply(codes["OK"])                        # (FPGA timing: its decision is not in the reply's enables)
                m.next = "REPLY"
            with m.State("READ_WORD"):                    # request the word at mem_addr
                m.d.comb += [req.valid.eq(1), req.payload.we.eq(0)]
                with m.If(req.ready):
                    m.next = "READ_WAIT"
            with m.State("READ_WAIT"):                    # its data comes back mem_latency cycles later,
                with m.If(resp_valid):                    # and a cycle later from ``resp_word``
                    m.d.sync += reply_byte.eq(resp_word.word_select(index[:log2(width)], 8))
                    m.next = "SEND_BYTE"
            with m.State("LOAD_TABLE"):                   # a STATUS or INFO byte
                m.d.sync += reply_byte.eq(Mux(is_cmd["STATUS"], status.word_select(index, 8), info.word_select(index, 8)))
                m.next = "SEND_BYTE"
            with m.State("SEND_BYTE"):                    # a payload byte to the sender
                last = Mux(is_cmd["READ"], (index == width - 1) & last_word,
                           index == Mux(is_cmd["STATUS"], len(status) // 8 - 1, len(info) // 8 - 1))
                m.d.comb += [tx.data.valid.eq(1), tx.data.payload.byte.eq(reply_byte), tx.data.payload.last.eq(last)]
                with m.If(tx.data.ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(is_cmd["READ"]):
                        m.next = "READ_WORD"
                        with m.If(index == width - 1):
                            m.d.sync += [index.eq(0), mem_addr.eq(mem_addr + 1)]
                    with m.Else():
                        m.next = "LOAD_TABLE"
                    with m.If(last):
                        m.next = "REPLY"
            with m.State("REPLY"):                        # until the sender has sent the checksum
                with m.If(tx.done):
                    m.next = "IDLE"
        return m
