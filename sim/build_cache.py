"""The on-disk cache of generated Verilog and compiled simulator models, safe to share.

A cache entry is a folder under :func:`build_root` named by a digest of everything its contents depend on:
the design and its parameters (a Config), the gateware sources (:func:`gateware_sources`) and the
toolchain environment (:func:`toolchain_fingerprint`: simulator version and path, C++ compiler, and for
cocotb models the cocotb installation they link by absolute path). Two checkouts or two virtualenvs on
one machine therefore never share an entry they could disagree on.

Entries are immutable. :func:`cached_folder` builds into a private temporary folder and renames it into
place only when complete, under a lock that makes concurrent builders of one key wait for the first;
a model that a running simulation uses is never rebuilt, relinked or replaced.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["build_root", "gateware_sources", "source_digest", "toolchain_fingerprint", "cached_folder",
           "verilog_file", "announce"]


def build_root() -> Path:
    """Folder of the cache (``TRIDSA_BUILD_DIR`` or ``~/.cache/tridsa``)."""
    root = Path(os.environ.get("TRIDSA_BUILD_DIR", Path.home() / ".cache" / "tridsa"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def gateware_sources() -> list:
    """The files the gateware is generated from, in a stable order: every ``hw/*.py``, the spec layer
    ``spec/*.py`` (the only package gateware imports, tests/test_imports.py) and ``sim/*.v``."""
    root = Path(__file__).parent.parent
    return sorted((root / "hw").glob("*.py")) + sorted((root / "spec").glob("*.py")) \
        + sorted(Path(__file__).parent.glob("*.v"))


def source_digest() -> str:
    """Hash of :func:`gateware_sources`, so a changed design never reuses a stale build."""
    h = hashlib.sha256()
    for path in gateware_sources():
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


@functools.cache
def _tool_version(*command) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    return (result.stdout + result.stderr).strip().splitlines()[0] if result.stdout + result.stderr else "?"


def toolchain_fingerprint(simulator: str, cocotb: bool) -> str:
    """What a compiled model of ``simulator`` depends on besides its sources (versions and paths)."""
    parts = [simulator]
    if simulator == "verilator":
        parts += [os.environ.get("VERILATOR_ROOT", ""), _tool_version("verilator", "--version"),
                  _tool_version(os.environ.get("CXX", "g++"), "--version")]
    else:
        parts += [shutil.which("iverilog") or "", _tool_version("iverilog", "-V")]
    if cocotb:
        import cocotb as cocotb_module
        import cocotb_tools.config
        parts += [cocotb_module.__version__, str(cocotb_tools.config.libs_dir), sys.executable]
    return "\n".join(parts)


def announce(message: str) -> None:
    """One line on stderr about slow first-run work (building a model), so no minute passes silently."""
    print(f"tridsa: {message}", file=sys.stderr, flush=True)


def cached_folder(name: str, key: str, build, what: str) -> Path:
    """The cache folder ``name-<digest of key>``, built by ``build(folder)`` if it does not exist yet.

    ``build`` fills a fresh private folder; when it returns, the folder is renamed into place (atomic).
    If it raises, the private folder is removed and the error propagates; nothing is cached. ``what``
    names the work for the first-run message (e.g. "the Verilator model of this Config").
    """
    root = build_root()
    final = root / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if final.is_dir():
        return final
    with open(root / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():                      # another process built it while we waited
            return final
        start = time.perf_counter()
        announce(f"building {what} (first run only; cached in {final})")
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
        try:
            build(tmp)
            tmp.chmod(0o755)                    # mkdtemp made it private; the cache is shared
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        announce(f"built {what} in {time.perf_counter() - start:.0f} s")
    return final


def verilog_file(component_factory, toplevel: str, key: str) -> Path:
    """Cached Verilog of ``component_factory()`` as module ``toplevel`` (``key``: its parameters).

    Generated once per (toplevel, key, gateware sources) and shared by every simulator build of it.
    """
    def generate(folder):
        from amaranth.back import verilog
        announce(f"generating the Verilog of {toplevel} with Amaranth and Yosys")
        (folder / f"{toplevel}.v").write_text(verilog.convert(component_factory(), name=toplevel, emit_src=False))
    folder = cached_folder(f"{toplevel}-verilog", f"{toplevel}\n{key}\n{source_digest()}", generate,
                           f"the Verilog of {toplevel}")
    return folder / f"{toplevel}.v"
