"""An Accelerator proxy that adds up the counters of every layer call made through it.

``Metered(acc)`` has the driver's ``matmul`` and ``embedding_bag`` (what the workloads' ``forward`` and
:class:`tridsa.sw.gather_ops.TableBatch` call); after each call it adds ``acc.last_run``'s
:data:`KEYS` to :attr:`totals`. A count a backend does not report (None) makes the total None.
"""
from __future__ import annotations

__all__ = ["Metered", "KEYS"]

#: The counters :class:`Metered` adds up.
KEYS = ("cycles", "macs", "gather_lookups", "gather_hits", "gather_bytes_read")


class Metered:
    """``acc``'s layer methods, with the counters of every call added up in ``totals``."""

    def __init__(self, acc):
        self.acc, self.config = acc, acc.config
        self.totals = dict.fromkeys(KEYS, 0)

    def _add(self):
        run = self.acc.last_run.as_dict()
        for key in KEYS:
            value = run.get(key, 0)
            self.totals[key] = None if value is None or self.totals[key] is None else self.totals[key] + value

    def matmul(self, *args, **kwargs):
        out = self.acc.matmul(*args, **kwargs)
        self._add()
        return out

    def embedding_bag(self, *args, **kwargs):
        out = self.acc.embedding_bag(*args, **kwargs)
        self._add()
        return out
