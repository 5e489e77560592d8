"""``uart-sim``: the fpga backend's driver code against the FPGA gateware in an HDL simulator.

:class:`UartSimTransport` is a :class:`tridsa.sw.fpga.Transport` whose other end is
:class:`tridsa.hw.fpga_top.FpgaCore` (UART pins, host bridge, accelerator Top with its block-RAM memory)
running under cocotb (Verilator by default). The simulator runs in its own process for as long as the
transport is open, like a board that stays powered: the driver's bytes travel over a local TCP socket
to the cocotb test :mod:`tridsa.sim.uart_sim_tb`, which serializes them bit by bit onto the ``rx`` pin and
turns the ``tx`` pin back into bytes. So ``Accelerator("uart-sim")`` runs exactly the code path of
``Accelerator("fpga", port=...)`` except for the serial port itself.

Python is in the loop once per UART bit, not per clock cycle, so a divisor of a few cycles per bit keeps
the simulation fast while the gateware stays the same (the divisor is a parameter of the UART only).
"""
from __future__ import annotations

import atexit
import socket
import threading
import time

from ..sw.fpga import FpgaBackend, Transport
from .cocotb_run import build_design, run_directory, run_test

__all__ = ["UartSimTransport", "UartSimBackend", "TOPLEVEL", "SIM_DIVISOR", "sim_timeout"]

TOPLEVEL = "tridsa_fpga_core"
SIM_DIVISOR = 8


def sim_timeout(divisor: int) -> int:
    """The bridge's idle timeout used in simulation: 64 byte times."""
    return 64 * 10 * divisor


class UartSimTransport(Transport):
    """A byte pipe to :class:`~tridsa.hw.fpga_top.FpgaCore` simulated by ``simulator``.

    Parameters
    ----------
    config:
        The accelerator Config.
    simulator:
        ``"verilator"`` or ``"icarus"``.
    divisor:
        Clock cycles per UART bit in the simulated design.
    """

    def __init__(self, config, simulator="verilator", divisor=SIM_DIVISOR, connect_timeout=600.0):
        from ..hw.fpga_top import FpgaCore
        self.config, self.divisor = config, divisor
        timeout = sim_timeout(divisor)
        runner, build_dir = build_design(lambda: FpgaCore(config, divisor, timeout), TOPLEVEL,
                                         f"{config.to_json()}:{divisor}:{timeout}", simulator)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        self._failure = None

        def simulate():
            try:
                with run_directory(build_dir) as run_dir:     # removed however the simulation ends
                    run_test(runner, build_dir, TOPLEVEL, "tridsa.sim.uart_sim_tb", test_dir=run_dir,
                             extra_env={"TRIDSA_UART_PORT": str(port), "TRIDSA_UART_DIVISOR": str(divisor)})
            except BaseException as exc:          # reported to the driver by read()/write()
                self._failure = exc

        self._thread = threading.Thread(target=simulate, name="tridsa-uart-sim", daemon=True)
        self._thread.start()
        self._listener.settimeout(0.5)
        deadline = time.monotonic() + connect_timeout
        self._sock = None
        while self._sock is None:
            try:
                self._sock, _ = self._listener.accept()
            except socket.timeout:
                self._raise_if_dead()
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"the {simulator} simulation did not connect within {connect_timeout} s")
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        atexit.register(self.close)

    def _raise_if_dead(self):
        if not self._thread.is_alive():
            failure = self._failure
            self.close()
            raise RuntimeError(f"the UART simulation ended: {failure}") from failure

    def write(self, data):
        if self._sock is None:
            raise RuntimeError("the UART simulation is closed")
        self._sock.sendall(bytes(data))

    def read(self, n, timeout):
        if self._sock is None:
            raise RuntimeError("the UART simulation is closed")
        deadline = time.monotonic() + timeout
        out = bytearray()
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._sock.settimeout(min(left, 0.5))
            try:
                chunk = self._sock.recv(n - len(out))
            except socket.timeout:
                if not self._thread.is_alive():
                    self._raise_if_dead()
                continue
            if not chunk:
                self._raise_if_dead()
                break
            out += chunk
        return bytes(out)

    def close(self):
        """Stop the simulation (the cocotb test ends when the socket closes)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
        atexit.unregister(self.close)


class UartSimBackend(FpgaBackend):
    """``Accelerator("uart-sim")``: :class:`~tridsa.sw.fpga.FpgaBackend` over a :class:`UartSimTransport`.

    The simulator starts on the first run and keeps running (one process per backend) until
    :meth:`close` or interpreter exit.
    """
    name = "uart-sim"

    def __init__(self, config, simulator="verilator", divisor=SIM_DIVISOR, readback="footprint", timeout=120.0):
        self._sim_args = (simulator, divisor)
        self._timeout = timeout
        self._started = False
        super().__init__(config, transport=_Lazy(self), readback=readback, timeout=timeout)

    def _start(self):
        self._real = UartSimTransport(self.config, *self._sim_args)
        self._started = True
        return self._real

    def close(self):
        if self._started:
            self._real.close()


class _Lazy(Transport):
    """Starts the simulation on first use, so constructing an Accelerator stays cheap."""

    def __init__(self, backend):
        self.backend = backend

    def _get(self):
        return self.backend._real if self.backend._started else self.backend._start()

    def write(self, data):
        self._get().write(data)

    def read(self, n, timeout):
        return self._get().read(n, timeout)

    def close(self):
        self.backend.close()
