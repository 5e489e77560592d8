"""Ray for tridsa: joining a cluster (or starting a local instance) and a task pool that survives workers dying.

:func:`connect` starts a local Ray instance (the default) or joins a running cluster (``address``,
e.g. ``"10.0.0.5:6379"``, ``"ray://head:10001"`` or ``"auto"``); an address nobody answers on fails
within seconds with :class:`ClusterError`, before Ray's own, much longer, retry loop. Clusters started
with ``ray start`` (Ray >= 2.59) use token authentication: when a token is at hand (``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) and ``RAY_AUTH_MODE`` is unset, joining sends it
(a cluster without authentication ignores it).

:func:`map_tasks` runs ``fn(item)`` for every item as Ray tasks, at most ``workers`` at a time, and
returns the results in item order. A task whose worker process dies (killed, out of memory, node lost)
is submitted again, up to ``retries`` times, and every such event is reported as a :class:`Retry`; an
exception raised by ``fn`` itself is a result of the work and is raised again here (as itself, or as a
:class:`TaskError` with its message when Ray cannot rebuild it), not retried.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import socket
from pathlib import Path

__all__ = ["ClusterError", "Retry", "TaskError", "connect", "map_tasks", "ray_module"]


class ClusterError(RuntimeError):
    """Ray is missing, the cluster address is unreachable, or a task kept losing its worker."""


class TaskError(RuntimeError):
    """A task raised an exception that Ray could not pass back as itself (its message is kept)."""


@dataclasses.dataclass(frozen=True)
class Retry:
    """A task that was submitted again because its worker died (``attempt`` 1 is the first retry)."""
    item: int
    attempt: int
    reason: str

    def __str__(self):
        return f"task {self.item} retried (attempt {self.attempt}): {self.reason}"


def ray_module():
    """The ``ray`` package, or :class:`ClusterError` naming how to install it."""
    if importlib.util.find_spec("ray") is None:
        raise ClusterError("Ray is not installed: pip install 'tridsa[cluster]' (or pip install ray)")
    import ray
    return ray


def _host_port(address: str):
    """``(host, port)`` of ``host:port`` or ``ray://host:port``; None for ``"auto"``."""
    if address == "auto":
        return None
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"--address {address!r} is invalid: use HOST:PORT, ray://HOST:PORT or auto")
    return host.strip("[]"), int(port)


def _check_reachable(address: str, timeout: float) -> None:
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(f"--address {address}: no Ray cluster reachable there ({exc}); start one with "
                           "`ray start --head` or leave --address out for a local instance") from None


def _token_available() -> bool:
    """True if Ray finds an authentication token (its variables, or the default token file)."""
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").is_file())


def connect(address: str | None = None, num_cpus: int | None = None, timeout: float = 5.0):
    """Start a local Ray instance with ``num_cpus`` CPUs (default: all), or join the cluster at ``address``.

    Returns the ``ray`` module. Already connected: nothing happens (one instance per process).
    """
    if address is not None:
        _check_reachable(address, timeout)
        if "RAY_AUTH_MODE" not in os.environ and _token_available():   # read when ray is imported
            os.environ["RAY_AUTH_MODE"] = "token"     # `ray start` clusters want it; others ignore the token
    ray = ray_module()
    if ray.is_initialized():
        return ray
    try:
        if address is None:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     logging_level="WARNING")         # "local": a new instance, not one `ray start` left
        else:
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    except ConnectionError as exc:
        raise ClusterError(f"--address {address}: {exc} (a cluster with token authentication needs its token "
                           "here: ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)") from None
    return ray


def _worker_lost_errors(ray):
    ex = ray.exceptions
    return tuple(getattr(ex, name) for name in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError",
                                                "OutOfMemoryError", "LocalRayletDiedError") if hasattr(ex, name))


def map_tasks(fn, items, workers: int | None = None, retries: int = 2, progress=None, num_cpus: float = 1):
    """``[fn(item) for item in items]`` as Ray tasks (call :func:`connect` first).

    Parameters
    ----------
    workers:
        Tasks in flight at once (default: the cluster's CPUs).
    retries:
        How often one item is submitted again after its worker died; then :class:`ClusterError`.
    progress:
        Called as ``progress(done, total, item, outcome)`` after each finished task (``item`` its index,
        ``outcome`` its result) and after each retry (``outcome`` the :class:`Retry`).

    Returns
    -------
    results : list, in item order
    retried : list of :class:`Retry`
    """
    ray = ray_module()
    items = list(items)
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    if workers < 1:
        raise ValueError(f"workers={workers} is invalid: must be >= 1")
    task = ray.remote(max_retries=0, num_cpus=num_cpus)(fn)
    lost = _worker_lost_errors(ray)
    results, retried, attempts = [None] * len(items), [], [0] * len(items)
    queue, running, done = list(range(len(items))), {}, 0
    while queue or running:
        while queue and len(running) < workers:
            i = queue.pop(0)
            running[task.remote(items[i])] = i
        ready, _ = ray.wait(list(running), num_returns=1)
        i = running.pop(ready[0])
        try:
            results[i] = ray.get(ready[0])
        except lost as exc:
            attempts[i] += 1
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if attempts[i] > retries:
                raise ClusterError(f"task {i} lost its worker {attempts[i]} times; last: {reason}") from None
            retried.append(Retry(i, attempts[i], f"{type(exc).__name__}: {reason}"))
            queue.insert(0, i)
            if progress:
                progress(done, len(items), i, retried[-1])
            continue
        except ray.exceptions.RayTaskError as exc:
            raise exc.as_instanceof_cause() from None
        except ray.exceptions.RayError as exc:      # e.g. an exception Ray cannot bring back to this process
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise TaskError(f"task {i} failed: {lines[-1] if lines else type(exc).__name__}") from None  # the cause
        done += 1
        if progress:
            progress(done, len(items), i, results[i])
    return results, retried

