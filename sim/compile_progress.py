"""Run a Verilator build with a progress line: the C++ files compiled so far out of those it generated."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from ..sw.progress import Progress

__all__ = ["run_compile"]


def run_compile(command: list, obj_dir: Path, log: Path, label: str) -> None:
    """Run ``command`` (output to ``log``); while it runs, show ``.o`` files in ``obj_dir`` against the
    ``.cpp`` files there. A failed build raises RuntimeError with the log's tail."""
    obj_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        with Progress(1, label) as bar:
            while proc.poll() is None:
                time.sleep(2)
                cpp, objects = len(list(obj_dir.glob("*.cpp"))), len(list(obj_dir.glob("*.o")))
                if cpp:                 # the harness adds one file; Verilator may still be writing more
                    total = max(cpp + 1, objects)
                    bar.update(objects, total, f"{objects} of {total} C++ files compiled")
    if proc.returncode:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{label} failed (exit {proc.returncode}); log {log}:\n{tail}")
