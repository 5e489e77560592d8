"""Host memory checks: a call whose arrays cannot fit the host's memory fails at once, with one clear error."""
from __future__ import annotations

import os

__all__ = ["HostMemoryError", "available_bytes", "check_host_bytes"]


class HostMemoryError(MemoryError):
    """An array the call needs on the host is larger than the host's available memory."""


def available_bytes() -> int:
    """Memory the host can still give this process (``MemAvailable`` on Linux, else the physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_host_bytes(nbytes: int, what: str) -> None:
    """Raise :class:`HostMemoryError` if ``nbytes`` for ``what`` exceed the available host memory."""
    free = available_bytes()
    if nbytes > free:
        raise HostMemoryError(f"{what} needs {nbytes / 2**30:.1f} GiB of host memory, "
                              f"{free / 2**30:.1f} GiB are available; split the call")
