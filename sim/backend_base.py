"""The interface every backend implements (:class:`Backend`), and what backends share: the hang error and
waveform file names. :mod:`tridsa.sim.backend` picks a backend by name."""
from __future__ import annotations

from pathlib import Path

__all__ = ["Backend", "CycleLimit", "wave_paths"]


class CycleLimit(RuntimeError):
    """The design did not halt within the backend's ``max_cycles`` (a hang)."""


class Backend:
    """Runs Programs for one Config. Subclasses implement :meth:`run`."""
    name = "?"

    def __init__(self, config):
        self.config = config

    def run(self, program):
        raise NotImplementedError

    def close(self):
        """Release what the backend holds (a simulator process); a later run starts again."""

    def _check(self, program):
        if program.config != self.config:
            raise ValueError(f"the Program was built for {program.config}, this {self.name} backend for {self.config}")


def wave_paths(waves, suffix: str):
    """Waveform file names for successive runs: ``waves`` itself, then ``<stem>-1<suffix>``, ... (None: no
    waves). A call that runs several Programs (a conv2d split into parts) keeps every part's waves."""
    if waves is None:
        return None
    path = Path(waves)
    if path.suffix != suffix:
        raise ValueError(f"waves={str(waves)!r}: this backend writes {suffix} files; name the file *{suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)

    def names():
        yield str(path)
        n = 1
        while True:
            yield str(path.with_name(f"{path.stem}-{n}{suffix}"))
            n += 1
    return names()
