"""The host link protocol over UART: one definition for the driver (:mod:`tridsa.sw.fpga`) and the
board's bridge (:class:`tridsa.hw.host_bridge.HostBridge`).

Stop-and-wait: the host sends one request frame, the board answers with exactly one reply frame.
Multi-byte numbers are little endian. ``crc`` is CRC-8 (polynomial 0x07, init 0, :func:`crc8`).

Request::

    A5 | cmd | addr (4) | count (2) | crc(cmd..count) | payload | crc(payload)   (crc only with a payload)

=========  ======  =====================================================================================
command    code    meaning
=========  ======  =====================================================================================
WRITE      0x01    write ``count`` words at word ``addr``; payload ``count * mem_width`` bytes
READ       0x02    read ``count`` words at word ``addr``; reply payload ``count * mem_width`` bytes
PUSH       0x03    push one instruction (payload ``INSTR_BITS / 8`` bytes) into the command queue
STATUS     0x04    reply payload: flags (bit 0 halted, bit 1 busy), error, error_pc (4), counters
                   (``Config.counter_bytes`` each)
CLEAR      0x05    reset the accelerator (queue, status, counters); memory keeps its contents
INFO       0x06    reply payload: ``b"TRDS"``, protocol version, Config digest (6), number of counters
=========  ======  =====================================================================================

Reply::  ``5A | code | payload (only for code OK) | crc(code..payload)``.

Reply codes: :data:`REPLY_CODES`. A header with a bad checksum, an unknown command, or a WRITE the board
refuses (BUSY, BAD_RANGE) makes the board discard bytes until the line has been idle for its timeout and
then send the error reply, so the rest of a bad frame is never read as a new frame. A frame that stops
half-way is answered with TIMEOUT after the same idle time. A WRITE whose *payload* checksum is wrong
has written its words (only within its verified address range) and is answered BAD_CHECKSUM; the driver
sends it again. A PUSH is only executed when its payload checksum is right. Memory may be accessed
only while the accelerator is not running (before the first PUSH after CLEAR, or after it halted);
otherwise the board answers BUSY.
"""
from __future__ import annotations

from .isa import INSTR_BITS

__all__ = ["REQ_SYNC", "REP_SYNC", "COMMANDS", "REPLY_CODES", "REPLY_NAMES", "PROTOCOL_VERSION", "MAGIC",
           "HEADER_BYTES", "INSTR_BYTES", "MAX_COUNT", "crc8", "config_digest_bytes",
           "request_frame"]

REQ_SYNC = 0xA5
REP_SYNC = 0x5A
COMMANDS = {"WRITE": 0x01, "READ": 0x02, "PUSH": 0x03, "STATUS": 0x04, "CLEAR": 0x05, "INFO": 0x06}
REPLY_CODES = {"OK": 0, "BAD_CHECKSUM": 1, "TIMEOUT": 2, "UNKNOWN_COMMAND": 3, "BAD_RANGE": 4, "BUSY": 5}
REPLY_NAMES = {code: name for name, code in REPLY_CODES.items()}
PROTOCOL_VERSION = 1
MAGIC = b"TRDS"
HEADER_BYTES = 7                       # cmd, addr (4), count (2)
INSTR_BYTES = INSTR_BITS // 8
MAX_COUNT = (1 << 16) - 1
CRC_POLY = 0x07


def crc8(data: bytes, crc: int = 0) -> int:
    """CRC-8 with polynomial x^8 + x^2 + x + 1 (0x07), init 0, no reflection (CRC-8/SMBUS)."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def config_digest_bytes(config) -> bytes:
    """The 6 bytes of ``Config.digest`` that INFO reports (a bitstream is built for one Config)."""
    return bytes.fromhex(config.digest)


def request_frame(cmd: str, addr: int = 0, count: int = 0, payload: bytes = b"") -> bytes:
    """The bytes of one request frame."""
    if cmd not in COMMANDS:
        raise ValueError(f"unknown command {cmd!r}: expected one of {sorted(COMMANDS)}")
    header = bytes([COMMANDS[cmd]]) + int(addr).to_bytes(4, "little") + int(count).to_bytes(2, "little")
    frame = bytes([REQ_SYNC]) + header + bytes([crc8(header)])
    if payload:
        frame += bytes(payload) + bytes([crc8(payload)])
    return frame
