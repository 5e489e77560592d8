"""Host side of the UART link to an FPGA: byte transports, the link and the ``fpga`` backend.

The framed protocol is :mod:`tridsa.spec.host_link` (shared with the board's bridge).
"""
from __future__ import annotations

import abc
import dataclasses
import time

import numpy as np

from ..sim.backend_base import Backend
from ..spec.host_link import (INSTR_BYTES, MAGIC, MAX_COUNT, PROTOCOL_VERSION, REP_SYNC, REPLY_NAMES,
                              crc8, request_frame)
from .program import RunResult

__all__ = ["Transport", "SerialTransport", "LinkError", "Status", "HostLink", "FpgaBackend"]


class Transport(abc.ABC):
    """A byte pipe to the board. ``read`` returns fewer than ``n`` bytes only when ``timeout`` passed."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def read(self, n: int, timeout: float) -> bytes: ...

    def close(self) -> None:
        pass


class SerialTransport(Transport):
    """A serial port (pyserial), e.g. the FTDI UART of an iCEBreaker or ULX3S."""

    def __init__(self, port: str, baud: int = 115200):
        try:
            import serial
        except ImportError:
            raise RuntimeError("the fpga backend needs pyserial: `pip install pyserial` "
                               "(or `pip install tridsa[fpga]`)") from None
        if not isinstance(port, str) or not port:
            raise ValueError(f"port must be a serial device name such as '/dev/ttyUSB1', not {port!r}")
        self.serial = serial.Serial(port, baud, timeout=0.1)
        self.serial.reset_input_buffer()

    def write(self, data):
        self.serial.write(data)
        self.serial.flush()

    def read(self, n, timeout):
        deadline = time.monotonic() + timeout
        out = bytearray()
        while len(out) < n and time.monotonic() < deadline:
            out += self.serial.read(n - len(out))
        return bytes(out)

    def close(self):
        self.serial.close()


class LinkError(RuntimeError):
    """The board answered with an error code, or its reply was missing or corrupt.

    ``code`` is the reply code name (:data:`tridsa.spec.host_link.REPLY_CODES`) or ``"NO_REPLY"`` / ``"BAD_REPLY"``.
    """

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(f"{code}: {message}")


@dataclasses.dataclass
class Status:
    halted: bool
    busy: bool
    error: int
    error_pc: int
    counters: dict


class HostLink:
    """The protocol driver: memory, instructions, status and counters over a :class:`Transport`.

    Parameters
    ----------
    transport:
        The byte pipe (a serial port, or the simulated UART of :mod:`tridsa.sim.uart_sim`).
    config:
        The Config the bitstream was built for; :meth:`check` compares it with the board's INFO.
    timeout:
        Seconds to wait for a reply.
    retries:
        How often a request the board answered with BAD_CHECKSUM or TIMEOUT is sent again.
    """

    def __init__(self, transport: Transport, config, timeout: float = 5.0, retries: int = 2,
                 max_words: int = 256):
        from ..hw.top import counter_names
        self.transport, self.config = transport, config
        self.timeout, self.retries = timeout, retries
        self.max_words = max(1, min(max_words, MAX_COUNT))
        self.counter_names = counter_names(config)

    # -- frames ----------------------------------------------------------------------------------
    def _reply(self, reply_len: int) -> bytes:
        head = self.transport.read(2, self.timeout)
        if len(head) < 2:
            raise LinkError("NO_REPLY", f"no reply within {self.timeout} s (got {head.hex() or 'nothing'})")
        if head[0] != REP_SYNC:
            raise LinkError("BAD_REPLY", f"reply starts with {head[0]:#04x}, not {REP_SYNC:#04x}")
        code = head[1]
        body = self.transport.read((reply_len if code == 0 else 0) + 1, self.timeout)
        if code != 0 and len(body) == 1 and crc8(head[1:2]) == body[0]:
            name = REPLY_NAMES.get(code, f"UNKNOWN_REPLY_{code}")
            raise LinkError(name, f"the board refused the request ({name})")
        if len(body) != (reply_len if code == 0 else 0) + 1:
            raise LinkError("NO_REPLY", f"reply truncated after {2 + len(body)} bytes")
        if crc8(head[1:] + body[:-1]) != body[-1]:
            raise LinkError("BAD_REPLY", "reply checksum mismatch")
        return body[:-1]

    def request(self, cmd: str, addr: int = 0, count: int = 0, payload: bytes = b"", reply_len: int = 0) -> bytes:
        """Send one request and return the reply payload; raise :class:`LinkError` on an error reply."""
        frame = request_frame(cmd, addr, count, payload)
        for attempt in range(self.retries + 1):
            self.transport.write(frame)
            try:
                return self._reply(reply_len)
            except LinkError as exc:
                retry = exc.code in ("BAD_CHECKSUM", "TIMEOUT") or (exc.code == "BAD_REPLY" and cmd != "PUSH")
                if not retry or attempt == self.retries:
                    raise
                if exc.code == "BAD_REPLY":
                    self.transport.read(1 << 20, 0.2)      # drop the rest of a garbled reply
        raise AssertionError("unreachable")

    # -- commands --------------------------------------------------------------------------------
    def info(self) -> dict:
        reply = self.request("INFO", reply_len=len(MAGIC) + 8)
        return {"magic": reply[:4], "version": reply[4], "digest": reply[5:11].hex(), "counters": reply[11]}

    def check(self) -> None:
        """Raise ValueError unless the board runs a tridsa bitstream for this Config."""
        info = self.info()
        if info["magic"] != MAGIC or info["version"] != PROTOCOL_VERSION:
            raise ValueError(f"the board is not a tridsa v{PROTOCOL_VERSION} bitstream (INFO {info})")
        if info["digest"] != self.config.digest or info["counters"] != len(self.counter_names):
            raise ValueError(f"the bitstream was built for another Config or gateware (digest {info['digest']}, "
                             f"{info['counters']} counters); this driver has {self.config.digest} and "
                             f"{len(self.counter_names)}: rebuild with `tridsa build` for this config")

    def clear(self) -> None:
        self.request("CLEAR")

    def write_memory(self, addr: int, words: np.ndarray) -> None:
        """Write ``words`` ((n, mem_width) uint8) at word address ``addr``."""
        words = np.ascontiguousarray(words, dtype=np.uint8).reshape(-1, self.config.mem_width)
        for start in range(0, len(words), self.max_words):
            chunk = words[start:start + self.max_words]
            self.request("WRITE", addr + start, len(chunk), chunk.tobytes())

    def read_memory(self, addr: int, count: int) -> np.ndarray:
        """Read ``count`` words at word address ``addr`` as a (count, mem_width) uint8 array."""
        width = self.config.mem_width
        out = np.zeros((count, width), np.uint8)
        for start in range(0, count, self.max_words):
            n = min(self.max_words, count - start)
            reply = self.request("READ", addr + start, n, reply_len=n * width)
            out[start:start + n] = np.frombuffer(reply, np.uint8).reshape(n, width)
        return out

    def push(self, instruction: int) -> None:
        self.request("PUSH", payload=int(instruction).to_bytes(INSTR_BYTES, "little"))

    def status(self) -> Status:
        n = len(self.counter_names)
        size = self.config.counter_bytes
        reply = self.request("STATUS", reply_len=6 + size * n)
        counters = {name: int.from_bytes(reply[6 + size * i:6 + size * (i + 1)], "little")
                    for i, name in enumerate(self.counter_names)}
        return Status(halted=bool(reply[0] & 1), busy=bool(reply[0] & 2), error=reply[1],
                      error_pc=int.from_bytes(reply[2:6], "little"), counters=counters)

    def run(self, program, readback: str = "footprint", run_timeout: float = 60.0) -> RunResult:
        """Run a Program: clear, load memory, push instructions, wait for ``halted``, read memory back.

        ``readback="footprint"`` loads and reads back words ``0 .. n`` where ``n`` covers every non-zero
        word of the image and every output region (the rest of the returned image is the Program's own);
        ``"all"`` loads and reads the whole memory.
        """
        if readback not in ("footprint", "all"):
            raise ValueError(f"readback must be 'footprint' or 'all', not {readback!r}")
        memory = program.memory
        if readback == "all":
            used = len(memory)
        else:
            used = int(np.max(np.nonzero(memory.any(axis=1))[0], initial=-1)) + 1
            used = max([used] + [r.addr + r.words for r in program.outputs.values()])
        start = time.perf_counter()
        self.clear()
        self.write_memory(0, memory[:used])
        for word in program.instructions:
            self.push(word)
        deadline = time.monotonic() + run_timeout
        status = self.status()
        while not status.halted:
            if time.monotonic() > deadline:
                raise LinkError("NO_REPLY", f"the accelerator did not halt within {run_timeout} s")
            status = self.status()
        final = memory.copy()
        final[:used] = self.read_memory(0, used)
        counters = dict(status.counters, wall_seconds=time.perf_counter() - start)
        return RunResult(memory=final, error=status.error, error_pc=status.error_pc, counters=counters)


class FpgaBackend(Backend):
    """Runs Programs on a board over a :class:`HostLink` (``Accelerator(backend="fpga", port=...)``).

    Parameters
    ----------
    port:
        Serial device of the board (``/dev/ttyUSB1`` for an iCEBreaker, ``/dev/ttyUSB0`` for a ULX3S).
    baud:
        Baud rate the bitstream was built with (``tridsa build --baud``).
    transport:
        Any :class:`Transport` instead of a serial port (the ``uart-sim`` backend passes its simulator).
    readback:
        See :meth:`HostLink.run`.
    """
    name = "fpga"

    def __init__(self, config, port=None, baud=115200, transport=None, readback="footprint", timeout=5.0):
        super().__init__(config)
        if transport is None:
            if port is None:
                raise ValueError("backend 'fpga' needs port=<serial device>, e.g. "
                                 "Accelerator('fpga', config, port='/dev/ttyUSB1')")
            transport = SerialTransport(port, baud)
        self.transport = transport
        self.readback = readback
        self.link = HostLink(transport, config, timeout=timeout)
        self._checked = False

    def run(self, program):
        self._check(program)
        if not self._checked:
            self.link.check()
            self._checked = True
        return self.link.run(program, readback=self.readback)

    def close(self):
        self.transport.close()
