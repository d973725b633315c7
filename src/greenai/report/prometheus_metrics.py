"""The metric families greenai exports to Prometheus, and the label rules they follow.

:class:`Metrics` creates one registry's metric objects (names, help texts, label
names and multiprocess modes: the table in :mod:`greenai.report.prometheus`);
:class:`RunView` shows one run's samples of a registry, for a Pushgateway push;
:func:`check_labels` checks the user's constant labels against Prometheus's rules
and greenai's own label names. ``prometheus_client`` is imported only when a
metric is made, so importing this module needs no extra package.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

_RUN_LABELS = ("run", "rank", "node")
# the exporter's own label names, and the target labels Prometheus and the Pushgateway set
_RESERVED_LABELS = frozenset(
    {*_RUN_LABELS, "device", "kind", "source", "window", "job", "instance"}
)
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class Metrics:
    """The metric objects of one registry: Prometheus allows each name once per registry."""

    def __init__(self, registry: CollectorRegistry, user_labels: tuple[str, ...]) -> None:
        from prometheus_client import Counter, Gauge

        self.registry = registry
        self.user_labels = user_labels
        run = (*_RUN_LABELS, *user_labels)
        device = (*run, "device", "kind", "source")
        # Multiprocess gauges: live* modes drop a process's values when it exits; "sum"
        # adds processes sharing a label set (each GPU's power), "max" takes the worst.
        self.energy = Counter(
            "greenai_energy_joules",
            "Energy used by the device since the run began.",
            device,
            registry=registry,
        )
        self.power = Gauge(
            "greenai_power_watts",
            "Latest power of the device (0 once the run has ended).",
            device,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.co2 = Counter(
            "greenai_co2_kilograms",
            "CO2e of the run charged to the device (its share of the run's energy).",
            (*run, "device"),
            registry=registry,
        )
        self.steps = Counter(
            "greenai_steps", "Steps marked with run.step().", run, registry=registry
        )
        self.step_rate = Gauge(
            "greenai_steps_per_second",
            "Steps per second over the last update interval (0 once the run has ended).",
            run,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.window = Gauge(
            "greenai_window_energy_joules",
            "Energy of the open window with this name, or of the last one once closed.",
            (*run, "window"),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.partial = Gauge(
            "greenai_run_partial",
            "1 when a sensor failed, restarted or was missing during the run, else 0.",
            run,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.duration = Gauge(
            "greenai_run_duration_seconds",
            "Time since the run began.",
            run,
            registry=registry,
            multiprocess_mode="livemax",
        )


class RunView:
    """The samples of one run's label set, for pushing.

    A Pushgateway push replaces its group (job, run, rank, node, user labels), so
    it must hold this run's series only, not other runs' in the same registry.
    """

    def __init__(self, registry: CollectorRegistry, labels: Mapping[str, str]) -> None:
        self._registry = registry
        self._labels = labels

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import Metric

        for family in self._registry.collect():
            samples = [
                s
                for s in family.samples
                if all(s.labels.get(k) == v for k, v in self._labels.items())
            ]
            if samples:
                view = Metric(family.name, family.documentation, family.type, family.unit)
                view.samples = samples
                yield view


def check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """The user's constant labels, checked against Prometheus's rules and our own names."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise TypeError(f"labels must be a mapping of label names to values, got {labels!r}")
    checked: dict[str, str] = {}
    for name, value in labels.items():
        if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name):
            raise ValueError(
                f"labels: {name!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            )
        if name.startswith("__"):
            raise ValueError(f"labels: {name!r} starts with '__', which Prometheus reserves")
        if name in _RESERVED_LABELS:
            raise ValueError(
                f"labels: {name!r} clashes with a label greenai or Prometheus sets "
                f"({', '.join(sorted(_RESERVED_LABELS))})"
            )
        if not isinstance(value, str):
            raise TypeError(f"labels: the value of {name!r} must be a string, got {value!r}")
        checked[name] = value
    return checked
