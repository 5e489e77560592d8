"""Build an Amaranth design to Verilog and run a cocotb test module on it.

Builds are cached: one build folder per (design name, parameter digest, simulator); a second call with
the same key reuses the compiled model (Verilator) or vvp file (Icarus) and only runs the test.
"""
from __future__ import annotations

import hashlib
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from .toolchain import build_root, prepare_simulator

__all__ = ["build_design", "run_test", "CocotbFailure"]


class CocotbFailure(AssertionError):
    """A cocotb test reported failure (the message names the results file)."""


def _verilog_text(component, toplevel: str) -> str:
    from amaranth.back import verilog
    return verilog.convert(component, name=toplevel, emit_src=False)


def _source_digest() -> str:
    """Hash of the gateware sources, so a changed design never reuses a stale build."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted([*(here.parent / "hw").glob("*.py"), *here.glob("*.v"), *(here.parent / "sw").glob("*.py")]):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def build_design(component_factory, toplevel: str, key: str, simulator: str,
                 extra_sources: tuple = ()) -> tuple:
    """Generate Verilog (once per ``key``) and compile it for ``simulator``.

    ``component_factory`` is called only when the build is not cached. Returns ``(runner, build_dir)``.
    """
    prepare_simulator(simulator)
    from cocotb_tools.runner import get_runner
    digest = hashlib.sha256(f"{toplevel}:{key}:{_source_digest()}".encode()).hexdigest()[:16]
    build_dir = build_root() / f"{toplevel}-{digest}-{simulator}"
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{toplevel}.v"
    stamp = build_dir / "built.ok"
    if not source.exists():
        text = _verilog_text(component_factory(), toplevel)
        tmp = source.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(source)
    runner = get_runner(simulator)
    kwargs = dict(sources=[source, *map(Path, extra_sources)], hdl_toplevel=toplevel, build_dir=build_dir,
                  always=False)
    if simulator == "verilator":
        kwargs["build_args"] = ["-Wno-fatal", "-O2"]
    else:
        kwargs["timescale"] = ("1ns", "1ps")
    if not stamp.exists():
        runner.build(**kwargs)
        stamp.write_text("ok")
    else:
        # The runner object needs its build state even when nothing is recompiled.
        runner.build(**kwargs)
    return runner, build_dir


def run_test(runner, build_dir: Path, toplevel: str, test_module: str, *, test_dir=None,
             extra_env=None, plusargs=(), testcase=None) -> Path:
    """Run cocotb ``test_module`` (importable module name) on a built design; raise on failure."""
    test_dir = Path(test_dir or build_dir)
    test_dir.mkdir(parents=True, exist_ok=True)
    env = dict(extra_env or {})
    env.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    results = runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=build_dir,
                          test_dir=test_dir, extra_env=env, plusargs=list(plusargs),
                          testcase=testcase, log_file=test_dir / "sim.log",
                          timescale=("1ns", "1ps") if runner.__class__.__name__ == "Icarus" else None)
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
