"""Live metrics of a running tracker for Prometheus: an HTTP endpoint, a multiprocess
directory, or a Pushgateway.

:class:`PrometheusExporter` is a :class:`~greenai.tracking.observer.RunObserver`: a daemon
thread reads the tracker's :meth:`~greenai.tracking.meter.Meter.snapshot` every
``update_interval_s`` into ``prometheus_client`` metric objects; once the run
has stopped, its final figures come from the run's result itself (the exact
energy, not the last snapshot's). Three ways out, which combine:

* Pull: each process serves ``/metrics`` on ``port + local_rank`` (so the ranks
  of a node never fight over one port); a later run in the same process, or
  another exporter given the same port, shares the running server.
* Multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``): every process writes its
  figures into the directory and the node's local rank 0 serves them all on
  ``port``, the way ``prometheus_client`` serves gunicorn workers.
* Push: the run's series go to a Pushgateway when the run stops (and every
  ``push_interval_s``), grouped by run, rank, node and the user's labels.

Metrics (every one labelled ``run``, ``rank``, ``node`` and the user's labels):

====================================  =======  ==============================================
name                                  type     extra labels, meaning
====================================  =======  ==============================================
``greenai_energy_joules_total``       counter  device, kind, source: energy since the run began
``greenai_power_watts``               gauge    device, kind, source: latest power (0 once ended)
``greenai_co2_kilograms_total``       counter  device: the device's energy share of the run's
                                               CO2e (only when the run is accounted)
``greenai_steps_total``               counter  ``run.step()`` calls
``greenai_steps_per_second``          gauge    steps over the last update interval (0 once ended)
``greenai_window_energy_joules``      gauge    window: energy of the open (or last) window by name
``greenai_run_partial``               gauge    1 when a sensor failed or restarted, else 0
``greenai_run_duration_seconds``      gauge    time since the run began
====================================  =======  ==============================================

Counters only ever grow: each update adds what a device spent since the last one,
so a figure that falls (a sensor fault) holds until it exceeds its old high, and
a later run with the same name keeps adding to the same series. Nothing here
raises into the user's training loop: a failing update or push is logged (debug)
and reported once, as an :class:`~greenai.core.errors.OutputWarning`, when the run stops.

This module holds the exporter: its arguments, the run's life cycle, the updates
and the pushes. The metric families and label rules are in
:mod:`greenai.report.prometheus_metrics`; the process-wide HTTP servers, registries
and multiprocess directory in :mod:`greenai.report.prometheus_serving`.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from greenai.core.errors import OutputWarning, warn
from greenai.report.prometheus_metrics import Metrics, RunView, check_labels
from greenai.report.prometheus_serving import (
    Endpoint,
    mark_dead_at_exit,
    multiprocess_dir_in_use,
    release,
    serve,
    unserved_metrics,
)
from greenai.tracking.result import Result

if TYPE_CHECKING:
    from prometheus_client import Counter

    from greenai.tracking.meter import Meter
    from greenai.tracking.result import Snapshot

logger = logging.getLogger(__name__)

_MAX_PORT = 65535
_JOIN_TIMEOUT_S = 2.0  # longest wait, at the run's stop, for an update in flight
_PUSH_TIMEOUT_S = 5.0  # a Pushgateway that hangs delays the run's stop at most this long
_MAX_WINDOWS = 100  # window series per run: names made per epoch must not flood Prometheus


class PrometheusExporter:
    """Serves or pushes a running tracker's energy, power, CO2, steps and windows.

    Pass it in a tracker's ``observers``. It follows one run at a time; a later run
    may reuse it (and its server).

    Attributes:
        port: The port this process serves on, once a run has started (None when
            it does not serve: no port given, not local rank 0 in multiprocess
            mode, or the port could not be bound).

    Args:
        port: Base port of the HTTP endpoint (``/metrics``); None serves nothing
            (push only, or files for another process to serve); 0 takes any free
            port (see :attr:`port`).
        addr: Address to listen on. The default, ``"127.0.0.1"``, keeps the endpoint
            on this host; give ``"0.0.0.0"`` (or an interface's address) to let a
            Prometheus server on another machine scrape it.
        port_per_local_rank: Listen on ``port + local_rank`` (the process's rank on
            its node, from the launcher), so a node's ranks each have a port.
            Ignored in multiprocess mode, where local rank 0 alone serves ``port``.
        multiprocess_dir: Write the metrics into this directory, where
            ``prometheus_client`` merges every process's (counters add up; a
            process's gauges go away when it exits normally, not when it is
            killed); local rank 0 serves the merged view on ``port``. Use a fresh
            directory per job: counters of earlier processes left in it are added
            too. ``PROMETHEUS_MULTIPROC_DIR`` already set turns this on as well.
        push_gateway: Pushgateway (``"host:port"`` or a URL) to push the run's
            series to when it stops, grouped by job, run, rank, node and ``labels``.
        push_job: The ``job`` of the pushes.
        push_interval_s: Also push this often while the run goes on. Units: s.
        update_interval_s: How often the metrics are updated from the tracker. Units: s.
        labels: Constant labels on every series (``{"cluster": "a"}``): valid
            Prometheus label names, none of the exporter's own.
        linger_s: The endpoint stops serving this long after the last run using it has
            ended (two scrapes of the final figures at Prometheus's default 15 s); 0 stops
            at once, None serves until the process exits. Units: s.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument is out of range, there is nothing to export to, or
            multiprocess mode cannot be turned on (see
            :data:`~greenai.report.prometheus_serving.MULTIPROC_ENV`).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        addr: str = "127.0.0.1",
        port_per_local_rank: bool = True,
        multiprocess_dir: str | os.PathLike[str] | None = None,
        push_gateway: str | None = None,
        push_job: str = "greenai",
        push_interval_s: float | None = None,
        update_interval_s: float = 1.0,
        labels: Mapping[str, str] | None = None,
        linger_s: float | None = 30.0,
    ) -> None:
        if importlib.util.find_spec("prometheus_client") is None:
            raise ModuleNotFoundError(
                "greenai's Prometheus exporter needs prometheus_client: "
                "pip install 'greenai[prometheus]'"
            )
        if port is not None:
            if isinstance(port, bool) or not isinstance(port, int):
                raise TypeError(f"port must be an int or None, got {port!r}")
            if not 0 <= port <= _MAX_PORT:
                raise ValueError(f"port must be in [0, {_MAX_PORT}] (0: any free port), got {port}")
        if not isinstance(addr, str):
            raise TypeError(f"addr must be a string (an address to listen on), got {addr!r}")
        if push_gateway is not None and (not isinstance(push_gateway, str) or not push_gateway):
            raise TypeError(
                f"push_gateway must be a non-empty string or None, got {push_gateway!r}"
            )
        if not isinstance(push_job, str) or not push_job:
            raise TypeError(f"push_job must be a non-empty string, got {push_job!r}")
        if push_interval_s is not None:
            _check_seconds("push_interval_s", push_interval_s)
            if push_gateway is None:
                raise ValueError(
                    f"push_interval_s={push_interval_s!r} needs a push_gateway to push to"
                )
        _check_seconds("update_interval_s", update_interval_s)
        if linger_s is not None:
            _check_seconds("linger_s", linger_s, zero=True)
        self._linger_s = linger_s
        self._labels = check_labels(labels)
        self._mp_dir = multiprocess_dir_in_use(multiprocess_dir)
        if port is None and push_gateway is None and self._mp_dir is None:
            raise ValueError(
                "PrometheusExporter has nothing to export to: give a port to serve, "
                "a push_gateway, or a multiprocess_dir"
            )
        self._port = port
        self._addr = addr
        self._per_local_rank = bool(port_per_local_rank)
        self._push_gateway = push_gateway
        self._push_job = push_job
        self._push_interval_s = None if push_interval_s is None else float(push_interval_s)
        self._update_interval_s = float(update_interval_s)
        self._endpoint: Endpoint | None = None  # the last one this exporter served on
        self._serving: Endpoint | None = None  # the one the current run holds
        self._tracker: Meter | None = None
        self._update_lock = threading.Lock()
        self._push_lock = threading.Lock()
        self.port: int | None = None

    # ----------------------------------------------------------------- RunObserver
    def run_started(self, tracker: Meter) -> None:
        """Start (or join) the endpoint, publish the first figures, start the update thread."""
        self._tracker = tracker
        self._run_labels: dict[str, str] = {"run": tracker.name or "run"}
        self._problems: dict[str, str] = {}
        self._metrics: Metrics | None = None
        self._thread: threading.Thread | None = None
        self._stopping = stopping = threading.Event()
        self._totals: dict[tuple[str, ...], float] = {}
        self._windows: set[str] = set()
        self._windows_dropped: set[str] = set()
        self._last_steps: tuple[float, int] | None = None
        self._start_unix_s = time.time()
        self.port = None
        try:
            from greenai.tracking.launcher import rank_info

            info = rank_info()
            self._run_labels["rank"] = str(info.rank if info is not None else 0)
            self._run_labels["node"] = socket.gethostname()
            self._run_labels.update(self._labels)
            self._metrics = self._attach(info.local_rank if info is not None else 0)
        except Exception as e:  # metrics must never stop the user's run
            self._record("start", e)
            return
        try:
            self._update()
        except Exception as e:  # metrics must never stop the user's run
            self._record("update", e)
        self._thread = threading.Thread(
            target=self._run_thread, args=(stopping,), name="greenai-prometheus", daemon=True
        )
        self._thread.start()

    def step_ended(self, start_s: float, end_s: float) -> None:
        """Nothing to do: the update thread reads the step count from the tracker."""

    def run_stopping(self) -> dict[str, Any]:
        """Stop the update thread and say where the metrics go, for the run's metadata."""
        if self._tracker is None:
            return {}
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT_S)
        report: dict[str, Any] = {"port": self.port}
        if self._mp_dir is not None:
            report["multiprocess_dir"] = self._mp_dir
        if self._push_gateway is not None:
            report["push_gateway"] = self._push_gateway
        if self._windows_dropped:
            report["windows_not_exported"] = sorted(self._windows_dropped)
        if self._problems:  # so far: a failed push at the end is only warned about
            report["problems"] = [f"{k}: {v}" for k, v in self._problems.items()]
        return {"prometheus": report}

    def run_stopped(self, result: Result) -> None:
        """Publish the run's exact final figures, push them, and report problems once."""
        if self._tracker is None:
            return
        if self._metrics is not None:
            try:
                self._finish(result)
            except Exception as e:  # metrics must never stop the user's run
                self._record("final update", e)
            if self._push_gateway is not None:
                try:
                    self._push()
                except Exception as e:  # an unreachable gateway must not lose the run
                    self._record("push", e)
        serving, self._serving = self._serving, None
        if serving is not None:
            release(serving, self._linger_s)
        if self._problems:
            warn(
                f"greenai: Prometheus metrics of run {self._run_labels['run']!r} are incomplete: "
                + "; ".join(f"{what} failed ({why})" for what, why in self._problems.items())
                + "; the run's result is not affected",
                OutputWarning,
            )
        self._tracker = None

    def _finish(self, result: Result) -> None:
        """The final figures from the run's result (not a snapshot): nothing drawn any more."""
        with self._update_lock:
            assert self._metrics is not None
            m = self._metrics
            run = tuple(self._run_labels.values())
            for device, energy_j in result.energy_by_device_j.items():
                labels = (
                    *run,
                    device,
                    str(result.kinds.get(device, "")),
                    str(result.sources.get(device, "")),
                )
                self._add(m.energy.labels(*labels), ("energy", device), energy_j)
                m.power.labels(*labels).set(0.0)
            co2_kg = result.co2_kg
            if co2_kg is not None and math.isfinite(co2_kg) and result.energy_j > 0:
                for device, energy_j in result.energy_by_device_j.items():
                    self._add(
                        m.co2.labels(*run, device),
                        ("co2", device),
                        co2_kg * energy_j / result.energy_j,
                    )
            if result.steps is not None:
                self._add(m.steps.labels(*run), ("steps",), result.steps.count)
            m.step_rate.labels(*run).set(0.0)
            for window in result.walk_windows():  # the last window of a name wins
                name = window.name or ""
                if name in self._windows or len(self._windows) < _MAX_WINDOWS:
                    self._windows.add(name)
                    m.window.labels(*run, name).set(window.energy_j)
            m.partial.labels(*run).set(1.0 if result.partial else 0.0)
            m.duration.labels(*run).set(result.duration_s)

    # ----------------------------------------------------------------- set-up
    def _attach(self, local_rank: int) -> Metrics:
        """The metric objects of this run; serves them first where a port is given."""
        user_labels = tuple(self._labels)
        if self._mp_dir is not None:
            mark_dead_at_exit(self._mp_dir)
            if self._port is not None and local_rank == 0:
                self._listen(self._port, user_labels)
            return unserved_metrics(user_labels)
        if self._port is not None:
            port = self._port + local_rank if self._port and self._per_local_rank else self._port
            endpoint = self._listen(port, user_labels)
            if endpoint is not None and endpoint.metrics is not None:
                return endpoint.metrics
        return unserved_metrics(user_labels)

    def _listen(self, port: int, user_labels: tuple[str, ...]) -> Endpoint | None:
        """This process's endpoint on ``port``; warns (once, now) when it cannot listen."""
        if port > _MAX_PORT:
            warn(
                f"greenai: cannot serve Prometheus metrics on port {port} (base port "
                f"{self._port} + local rank): past {_MAX_PORT}; choose a lower port",
                OutputWarning,
            )
            return None
        if port == 0 and self._endpoint is not None:
            port = self._endpoint.port  # the port this exporter took before, if still its own
        try:
            endpoint = serve(self._addr, port, user_labels, self._mp_dir)
        except OSError as e:
            logger.debug("cannot listen on %s:%d", self._addr, port, exc_info=True)
            warn(
                f"greenai: cannot serve Prometheus metrics on {self._addr}:{port} ({e}); "
                "the run goes on without the endpoint",
                OutputWarning,
            )
            return None
        if endpoint.metrics is not None and endpoint.metrics.user_labels != user_labels:
            warn(
                f"greenai: port {endpoint.port} already serves greenai metrics labelled "
                f"{list(endpoint.metrics.user_labels)}, not {list(user_labels)}: this run "
                "is not served there (give each label set its own port)",
                OutputWarning,
            )
            release(endpoint, self._linger_s)
            return None
        self._endpoint = self._serving = endpoint
        self.port = endpoint.port
        return endpoint

    # ----------------------------------------------------------------- updates
    def _run_thread(self, stopping: threading.Event) -> None:
        """Update (and push) until this run's ``stopping`` is set.

        The event is the thread's own, so a thread that outlives its run (a push
        hanging past the join) cannot act on the exporter's next run.
        """
        next_push_s = (
            time.monotonic() + self._push_interval_s if self._push_interval_s else math.inf
        )
        while not stopping.wait(self._update_interval_s):
            try:
                self._update(stopping)
            except Exception as e:  # metrics must never stop the user's run
                self._record("update", e)
            if not stopping.is_set() and time.monotonic() >= next_push_s:
                assert self._push_interval_s is not None
                next_push_s = time.monotonic() + self._push_interval_s
                try:
                    self._push()
                except Exception as e:  # a gateway that is down must not end the updates
                    self._record("push", e)

    def _update(self, stopping: threading.Event | None = None, *, final: bool = False) -> None:
        """Read the tracker's snapshot into the metrics.

        Args:
            stopping: The update thread's event: once set, its updates are skipped.
                Checked under the lock, snapshot included, so an update from the
                thread cannot land after the final figures with older ones.
        """
        with self._update_lock:
            if stopping is not None and stopping.is_set():
                return
            assert self._tracker is not None
            assert self._metrics is not None
            m = self._metrics
            run = tuple(self._run_labels.values())
            snapshot = self._tracker.snapshot()
            for device, energy_j in snapshot.energy_by_device_j.items():
                labels = (
                    *run,
                    device,
                    str(snapshot.kinds.get(device, "")),
                    str(snapshot.sources.get(device, "")),
                )
                self._add(m.energy.labels(*labels), ("energy", device), energy_j)
                m.power.labels(*labels).set(snapshot.power_w.get(device, math.nan))
            self._update_co2(snapshot, run)
            self._add(m.steps.labels(*run), ("steps",), snapshot.steps)
            if self._last_steps is not None and snapshot.elapsed_s > self._last_steps[0]:
                rate = (snapshot.steps - self._last_steps[1]) / (
                    snapshot.elapsed_s - self._last_steps[0]
                )
                m.step_rate.labels(*run).set(rate)
            else:
                m.step_rate.labels(*run)  # the series exists from the start
            self._last_steps = (snapshot.elapsed_s, snapshot.steps)
            for name, energy_j in snapshot.open_windows_j.items():
                if name not in self._windows and len(self._windows) >= _MAX_WINDOWS:
                    self._windows_dropped.add(name)
                    continue
                self._windows.add(name)
                m.window.labels(*run, name).set(energy_j)
            m.partial.labels(*run).set(1.0 if snapshot.partial else 0.0)
            m.duration.labels(*run).set(snapshot.elapsed_s)

    def _update_co2(self, snapshot: Snapshot, run: tuple[str, ...]) -> None:
        """Charge the run's CO2 so far to its devices, pro rata of their energy."""
        assert self._tracker is not None
        assert self._metrics is not None
        if snapshot.energy_j <= 0:
            return
        so_far = self._tracker.account(snapshot.as_result(self._tracker.name, self._start_unix_s))
        co2_kg = so_far.co2_kg
        if co2_kg is None or not math.isfinite(co2_kg):
            return
        for device, energy_j in snapshot.energy_by_device_j.items():
            self._add(
                self._metrics.co2.labels(*run, device),
                ("co2", device),
                co2_kg * energy_j / snapshot.energy_j,
            )

    def _add(self, counter: Counter, key: tuple[str, ...], total: float) -> None:
        """Raise ``counter`` to ``total`` (this run's figure so far); never lower it."""
        last = self._totals.get(key, 0.0)
        if math.isfinite(total) and total > last:
            counter.inc(total - last)
            self._totals[key] = total

    def _push(self) -> None:
        from prometheus_client import push_to_gateway

        assert self._push_gateway is not None
        assert self._metrics is not None
        with self._push_lock:
            push_to_gateway(
                self._push_gateway,
                job=self._push_job,
                registry=RunView(self._metrics.registry, self._run_labels),
                grouping_key=self._run_labels,
                timeout=_PUSH_TIMEOUT_S,
            )

    def _record(self, what: str, error: BaseException) -> None:
        """Keep the first failure of each kind, to report once when the run stops."""
        logger.debug("Prometheus %s failed", what, exc_info=error)
        self._problems.setdefault(what, f"{type(error).__name__}: {error}")


def _check_seconds(name: str, value: object, *, zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not (value >= 0 if zero else value > 0) or not value < math.inf:
        least = "non-negative" if zero else "positive"
        raise ValueError(f"{name} must be a {least}, finite number of seconds, got {value!r}")
