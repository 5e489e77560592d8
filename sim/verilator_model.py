"""The verilator backend: a compiled C++ Verilator model of the accelerator in one long-lived process.

Build (once per Config, gateware sources and toolchain, cached by :mod:`tridsa.sim.build_cache`): the
Verilog of :class:`tridsa.hw.top.Top`, wrapped in ``sim/fast_top.v`` (registered reset, host port tied off),
with ``sim/sim_mem.v``'s DPI memory and the C++ harness ``sim/verilator_harness.cpp``, compiled for speed
(:data:`VERILATOR_FLAGS`, :data:`MAKE_FLAGS`; no ``--public`` flags; their effect is measured by
``tridsa bench sim --flags``).

Run: the first Program starts the harness process; every later one reuses it (the design is reset
between Programs). The accelerator memory is a file in ``/dev/shm`` mapped by both processes: the driver
writes the words a Program uses, the harness runs it, and the driver copies back the words in use or
written. No text image, no per-cycle Python, no process start per call.

A Program that does not halt within ``max_cycles`` raises :class:`~tridsa.sim.backend_base.CycleLimit`
naming the running instruction; a model process that dies raises :class:`SimulatorCrashed`, and the
next run starts a fresh process. ``waves=PATH`` runs a separately built model with FST tracing.
"""
from __future__ import annotations

import mmap
import os
import signal
import struct
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

import numpy as np

from ..spec import isa
from ..sw.program import RunResult
from .backend_base import Backend, CycleLimit, wave_paths
from .build_cache import cached_folder, source_digest, toolchain_fingerprint, verilog_file
from .toolchain import prepare_simulator

__all__ = ["VerilatorBackend", "SimulatorCrashed", "build_model", "VERILATOR_FLAGS", "MAKE_FLAGS"]

HERE = Path(__file__).parent
TOPLEVEL = "tridsa_top"
#: Verilator options of the fast model (each one's effect: docs/simulation.md, ``tridsa bench sim --flags``).
VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert")
#: C++ optimisation of the model's hot code (OPT_FAST) and of its one-time set-up code (OPT_SLOW).
MAKE_FLAGS = ("OPT_FAST=-O3", "OPT_SLOW=-O1")
#: Reply fields the backend reads (the harness announces all of its fields, with their sizes, at start-up).
_NEEDED = ("halted", "error", "error_pc", "written_hi")


class SimulatorCrashed(RuntimeError):
    """The model process died during a run (the next run starts a fresh one)."""


def _counter_spec(config):
    from ..hw.top import counter_names
    names = counter_names(config)
    return names, config.counter_bits, len(names) * config.counter_bits


def _host_request_bits(config) -> int:
    from amaranth.lib import data
    from ..hw.memory import MemPort
    return data.Layout.cast(MemPort(config).members["req"].signature.members["payload"].shape).size


def build_model(config, trace: bool = False, verilator_flags=VERILATOR_FLAGS, make_flags=MAKE_FLAGS) -> Path:
    """The harness executable for ``config`` (built on first use, then cached)."""
    prepare_simulator("verilator")
    from ..hw.top import Top
    verilog = verilog_file(lambda: Top(config, storage="verilog"), TOPLEVEL, config.to_json())
    _, _, counter_width = _counter_spec(config)
    defines = (f"-DMEM_WORDS={config.mem_depth} -DMEM_BYTES={config.mem_width} "
               f"-DINSTR_BYTES={isa.INSTR_BITS // 8} -DCOUNTER_BYTES={-(-counter_width // 8)}")
    sources = [HERE / "verilator_harness.cpp", HERE / "fast_top.v", verilog, HERE / "sim_mem.v"]
    command = ["verilator", "--cc", "--exe", "--build", "-j", str(os.cpu_count() or 1), *verilator_flags,
               "-Wno-fatal", "-Wno-lint", "-Wno-style", "+define+TRIDSA_DPI_MEM",
               "--top-module", "tridsa_fast_top", f"-GINSTR_WIDTH={isa.INSTR_BITS}",
               f"-GHOST_REQ_WIDTH={_host_request_bits(config)}", f"-GCOUNTER_WIDTH={counter_width}",
               "-o", "tridsa_sim", "-CFLAGS", defines,
               "-MAKEFLAGS", " ".join((*make_flags, "CFG_CXXFLAGS_PCH_I=-include")),
               *(["--trace-fst"] if trace else []), *map(str, sources)]

    def build(folder):
        from .compile_progress import run_compile
        run_compile(command + ["-Mdir", str(folder / "obj")], folder / "obj", folder / "build.log",
                    "compiling the Verilator model")
        (folder / "obj" / "tridsa_sim").rename(folder / "tridsa_sim")
        for path in sorted((folder / "obj").rglob("*"), reverse=True):     # keep the executable only
            path.rmdir() if path.is_dir() else path.unlink()
        (folder / "obj").rmdir()
    key = "\n".join([config.to_json(), source_digest(), toolchain_fingerprint("verilator", cocotb=False),
                     " ".join(command[5:]), (HERE / "verilator_harness.cpp").read_text()])
    what = "the Verilator model of this Config" + (" with FST tracing" if trace else "")
    return cached_folder(f"{TOPLEVEL}-verilator{'-fst' if trace else ''}", key, build, what) / "tridsa_sim"


class _Harness:
    """One running harness process and the memory file it shares with this process."""

    def __init__(self, executable: Path, config, mem_stall_seed=0):
        self.config = config
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, path = tempfile.mkstemp(prefix="tridsa-mem-", dir=shm)
        try:
            os.ftruncate(fd, config.mem_depth * config.mem_width)      # sparse: untouched pages cost nothing
            self._map = mmap.mmap(fd, config.mem_depth * config.mem_width)
            self.proc = subprocess.Popen([str(executable), path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         env=dict(os.environ, TRIDSA_MEM_STALL_SEED=str(mem_stall_seed)))
            self._expect(b"RDY\0", 4)
            self._reply_fields = self._read_fields()
        finally:
            os.close(fd)
            os.unlink(path)                     # both sides hold it mapped; nothing is left behind
        self.memory = np.frombuffer(self._map, np.uint8).reshape(config.mem_depth, config.mem_width)
        self.dirty = 0                          # words [0, dirty) may be non-zero
        self._finalizer = weakref.finalize(self, _Harness._stop, self.proc)

    @staticmethod
    def _stop(proc):
        try:
            proc.stdin.close()                  # the harness ends when its input does
        except BrokenPipeError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def close(self):
        self._finalizer()

    def _read_fields(self) -> tuple:
        """``(struct of a reply's fixed part, field names)`` from the harness's start-up announcement."""
        size = int.from_bytes(self.proc.stdout.read(4), "little")
        fields = [item.split(":") for item in self.proc.stdout.read(size).decode().split()]
        names = tuple(name for name, _ in fields)
        missing = [name for name in _NEEDED if name not in names]
        if missing:
            self.close()
            raise SimulatorCrashed(f"the Verilator model's replies lack {missing} (it announced {names}); "
                                   "rebuild it from this checkout")
        layout = struct.Struct("<4s" + "".join({"4": "I", "8": "Q"}[width] for _, width in fields))
        return layout, names

    def _expect(self, magic: bytes, n: int) -> bytes:
        data = self.proc.stdout.read(n)
        if len(data) != n or data[:4] != magic:
            self.close()
            code = self.proc.returncode
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            raise SimulatorCrashed(f"the Verilator model process {how}; the next run starts a fresh model")
        return data

    def run(self, program, used: int, max_cycles: int, wave_file: str | None):
        """Run ``program`` (``used``: its memory words in use); return ``(RunResult fields, final memory)``."""
        config = self.config
        self.memory[:used] = program.memory[:used]
        self.memory[used:self.dirty] = 0
        wave = os.fsencode(wave_file) if wave_file else b""
        request = b"".join([b"RUN\0", struct.pack("<IQI", len(program.instructions), max_cycles, len(wave)), wave,
                            *(int(w).to_bytes(isa.INSTR_BITS // 8, "little") for w in program.instructions)])
        try:
            self.proc.stdin.write(request)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass                                # reported by _expect with the exit status
        names, bits, width = _counter_spec(config)
        layout, field_names = self._reply_fields
        reply = self._expect(b"RES\0", layout.size + -(-width // 8))
        fields = dict(zip(field_names, layout.unpack_from(reply)[1:]))
        packed = int.from_bytes(reply[layout.size:], "little")
        counters = {name: (packed >> (i * bits)) & ((1 << bits) - 1) for i, name in enumerate(names)}
        extent = max(used, fields["written_hi"])
        self.dirty = max(self.dirty, extent)
        memory = np.zeros((config.mem_depth, config.mem_width), np.uint8)
        memory[:extent] = self.memory[:extent]
        return bool(fields["halted"]), fields["error"], fields["error_pc"], counters, memory


class VerilatorBackend(Backend):
    """Runs Programs on the compiled Verilator model of its Config (see the module docstring).

    ``verilator_flags`` / ``make_flags`` pick the build (:func:`build_model`; ``tridsa bench sim --flags``
    measures each option this way); results do not depend on them.
    """
    name = "verilator"

    def __init__(self, config, max_cycles: int = 1 << 32, waves: str | None = None, mem_stall_seed: int = 0,
                 verilator_flags=VERILATOR_FLAGS, make_flags=MAKE_FLAGS):
        super().__init__(config)
        self.mem_stall_seed = mem_stall_seed    # random memory stalls (sim/sim_mem.v), 0: none
        prepare_simulator("verilator")          # a missing simulator is an error now, not at the first run
        self.max_cycles = max_cycles
        self.waves = wave_paths(waves, ".fst")
        self.flags = dict(verilator_flags=tuple(verilator_flags), make_flags=tuple(make_flags))
        self._harness = None

    def _start(self):
        if self._harness is None:
            self._harness = _Harness(build_model(self.config, trace=self.waves is not None, **self.flags), self.config,
                                     self.mem_stall_seed)
        return self._harness

    def close(self):
        """Stop the model process (a later run starts a new one)."""
        if self._harness is not None:
            self._harness.close()
            self._harness = None

    def run(self, program):
        self._check(program)
        harness = self._start()
        start = time.perf_counter()
        try:
            halted, error, error_pc, counters, memory = harness.run(
                program, program.loaded_words, self.max_cycles, next(self.waves) if self.waves else None)
        except SimulatorCrashed:
            self._harness = None
            raise
        wall = time.perf_counter() - start
        if not halted:
            raise CycleLimit(f"no halt within {self.max_cycles} cycles: instruction {counters['retired']} "
                             f"of the Program was still running")
        return RunResult(memory=memory, error=error, error_pc=error_pc, counters=dict(counters, wall_seconds=wall))
