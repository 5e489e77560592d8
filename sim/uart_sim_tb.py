"""cocotb test module run inside the HDL simulator by :class:`tridsa.sim.uart_sim.UartSimTransport`.

The simulated design is :class:`tridsa.hw.fpga_top.FpgaCore`. This module connects to the transport's TCP
socket (``TRIDSA_UART_PORT``), serializes every byte it receives onto the ``rx`` pin (8N1, ``divisor``
clock cycles per bit, the way a USB serial adapter would) and deserializes the ``tx`` pin back into the
socket. It runs until the transport closes the socket. While no byte is pending it lets the design run
in chunks of ``POLL_CYCLES`` cycles, so simulated time passes while the host thinks (like a real board).
"""
import os
import select
import socket

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer

PERIOD_NS = 10
POLL_CYCLES = 128
IDLE_POLLS = 2000


@cocotb.test()
async def serve(dut):
    divisor = int(os.environ["TRIDSA_UART_DIVISOR"])
    bit_ns = divisor * PERIOD_NS
    sock = socket.create_connection(("127.0.0.1", int(os.environ["TRIDSA_UART_PORT"])))
    # The C++ clock: a Python clock would put Python in every cycle (~20x slower here).
    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0

    idle = {"polls": 0}                  # polls since the last byte in either direction

    async def monitor():
        while True:
            await FallingEdge(dut.tx)
            await Timer(bit_ns // 2, unit="ns")            # middle of the start bit
            value = 0
            for bit in range(8):
                await Timer(bit_ns, unit="ns")
                value |= int(dut.tx.value) << bit
            await Timer(bit_ns, unit="ns")
            assert int(dut.tx.value) == 1, "framing error on tx: stop bit is low"
            sock.sendall(bytes([value]))
            idle["polls"] = 0

    cocotb.start_soon(monitor())
    while True:
        # After a while without bytes in either direction, also wait a little in select(), so an idle link
        # does not keep a CPU busy; the design still advances POLL_CYCLES per poll.
        if not select.select([sock], [], [], 0.002 if idle["polls"] > IDLE_POLLS else 0)[0]:
            idle["polls"] += 1
            await Timer(POLL_CYCLES * PERIOD_NS, unit="ns")
            continue
        idle["polls"] = 0
        data = sock.recv(65536)
        if not data:                                       # the host closed the link
            break
        for value in data:
            for level in [0] + [(value >> bit) & 1 for bit in range(8)] + [1]:
                dut.rx.value = level
                await Timer(bit_ns, unit="ns")
    sock.close()
