"""Where a process's Prometheus metrics live: its HTTP servers, the registries they
serve, the metric objects nothing serves, and the multiprocess directory.

Prometheus allows each metric name once per registry, and a port can be bound
once per process, so these are process-wide: every exporter (and every run) of
the process that asks for the same port shares one :class:`Endpoint`, which stops
serving ``linger_s`` after the last run that uses it has ended (time for a last
scrape of its final figures; a run that starts meanwhile keeps it), and those
that serve nothing (push only, or multiprocess files) share one set of
:class:`~greenai.report.prometheus_metrics.Metrics` per label set. A forked child
starts with none (its parent's server threads stayed in the parent).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

from greenai.core.forks import after_fork_in_child
from greenai.report.prometheus_metrics import Metrics

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""What ``prometheus_client`` reads, once, when it is imported, to choose multiprocess mode."""


class Endpoint:
    """One HTTP server of this process and the registry it serves.

    In single-process mode the registry holds the metric objects; in multiprocess
    mode it holds a collector that reads every process's files in the directory.
    """

    def __init__(
        self, addr: str, port: int, user_labels: tuple[str, ...], multiprocess_dir: str | None
    ) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        self.registry = CollectorRegistry()
        self.metrics: Metrics | None = None
        if multiprocess_dir is None:
            self.metrics = Metrics(self.registry, user_labels)
        else:
            from prometheus_client.multiprocess import MultiProcessCollector

            MultiProcessCollector(self.registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        self._server, _ = start_http_server(port, addr, registry=self.registry)
        self.port = int(self._server.server_port)
        self.addr = addr
        self.users = 0  # runs serving here now
        self._stop_timer: threading.Timer | None = None

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()


_lock = threading.Lock()
_endpoints: dict[tuple[str, int], Endpoint] = {}  # by address and bound port
_unserved: dict[tuple[str, ...], Metrics] = {}  # by user label names: pushed or written to files
_marks_dead_at_exit = False


def _forget_after_fork() -> None:
    """A forked child has none of its parent's servers: their threads stayed in the parent."""
    global _lock
    _lock = threading.Lock()
    _endpoints.clear()
    _unserved.clear()


after_fork_in_child(_forget_after_fork)


def serve(addr: str, port: int, user_labels: tuple[str, ...], mp_dir: str | None) -> Endpoint:
    """The process's server on ``(addr, port)``, started on first use (port 0: a new one),
    for one more run (give it back with :func:`release`)."""
    with _lock:
        endpoint = _endpoints.get((addr, port)) if port else None
        if endpoint is None:
            endpoint = Endpoint(addr, port, user_labels, mp_dir)
            _endpoints[(addr, endpoint.port)] = endpoint
        endpoint.users += 1
        if endpoint._stop_timer is not None:  # a run came back before it stopped: it stays
            endpoint._stop_timer.cancel()
            endpoint._stop_timer = None
        return endpoint


def release(endpoint: Endpoint, linger_s: float | None) -> None:
    """A run that :func:`serve` served has ended. After the last one, the server stops in
    ``linger_s`` (0: now; None: it serves until the process exits)."""
    with _lock:
        endpoint.users = max(0, endpoint.users - 1)
        if endpoint.users or linger_s is None:
            return
        if linger_s <= 0:
            _stop(endpoint)
            return
        timer = threading.Timer(linger_s, _stop_if_unused, args=(endpoint,))
        timer.daemon = True
        timer.name = "greenai-prometheus-linger"
        endpoint._stop_timer = timer
        timer.start()


def _stop_if_unused(endpoint: Endpoint) -> None:
    with _lock:
        if endpoint.users == 0 and endpoint._stop_timer is not None:
            _stop(endpoint)


def _stop(endpoint: Endpoint) -> None:
    """Stop ``endpoint`` and forget it (under ``_lock``)."""
    endpoint._stop_timer = None
    if _endpoints.get((endpoint.addr, endpoint.port)) is endpoint:
        del _endpoints[(endpoint.addr, endpoint.port)]
    endpoint.close()


def unserved_metrics(user_labels: tuple[str, ...]) -> Metrics:
    """Metric objects no server of this process serves (for pushing, or in multiprocess files)."""
    from prometheus_client import CollectorRegistry

    with _lock:
        metrics = _unserved.get(user_labels)
        if metrics is None:
            metrics = _unserved[user_labels] = Metrics(CollectorRegistry(), user_labels)
        return metrics


def mark_dead_at_exit(mp_dir: str) -> None:
    """Drop this process's live gauges from the directory when it exits (once per process).

    Not at the run's stop: ``mark_process_dead`` deletes the process's gauge files,
    which ``prometheus_client`` keeps open, so a later run's gauges (and the user's
    own live gauges) would be written to deleted files and never be seen again.
    """
    global _marks_dead_at_exit
    with _lock:
        if _marks_dead_at_exit:
            return
        _marks_dead_at_exit = True
    from prometheus_client import multiprocess

    atexit.register(lambda: multiprocess.mark_process_dead(os.getpid(), mp_dir))  # type: ignore[no-untyped-call]


def multiprocess_dir_in_use(requested: str | os.PathLike[str] | None) -> str | None:
    """The multiprocess directory in use, after turning the mode on if it is asked for.

    ``prometheus_client`` chooses between in-memory and file-backed values once, when
    it is imported, from ``PROMETHEUS_MULTIPROC_DIR``; so the variable can be set
    here only while it has not been imported.

    Raises:
        ValueError: The mode cannot be what is asked for (see the messages).
    """
    current = os.environ.get(MULTIPROC_ENV)
    if requested is None:
        if current is None:
            return None
        from prometheus_client import values

        return None if values.ValueClass is values.MutexValue else current
    path = os.path.abspath(os.fspath(requested))
    if current is not None and os.path.realpath(current) != os.path.realpath(path):
        raise ValueError(
            f"multiprocess_dir is {path!r} but {MULTIPROC_ENV} is {current!r}: "
            "prometheus_client serves one directory per process; pass the same one"
        )
    if current is None and "prometheus_client" in sys.modules:
        raise ValueError(
            f"multiprocess_dir={path!r} needs {MULTIPROC_ENV} set before the process imports "
            "prometheus_client, which it already has (in single-process mode): set "
            f"{MULTIPROC_ENV}={path} in the environment that starts the process"
        )
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"multiprocess_dir {path!r} cannot be created: {e}") from e
    if current is None:
        os.environ[MULTIPROC_ENV] = path
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        raise ValueError(
            f"multiprocess_dir={path!r}: {MULTIPROC_ENV} was set after the process imported "
            f"prometheus_client, which is in single-process mode: set {MULTIPROC_ENV}={path} "
            "in the environment that starts the process"
        )
    return path
