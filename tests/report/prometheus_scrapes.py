"""Scraping the Prometheus exporter, for its tests (test_prometheus*.py): the simulated GPU they
meter, the figures' tolerances, and the parsed exposition text of a scrape.
"""

from __future__ import annotations

import socket
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from greenai.sim import SimulatedGPU

HOST = socket.gethostname()
UPDATE_S = 0.05
IDLE_W, MAX_W = 70.0, 700.0
# The final figures are the run's result's, unless a snapshot during the run went
# past them (counters never go down): a snapshot counts from the first sample, not
# from the start boundary corrected for counter staleness, and extrapolates at the
# last power; a counter update and a sample period (0.1 s each here) at most.
LAG_J = MAX_W * 0.2


def gpu() -> SimulatedGPU:
    # power readings average over 0.1 s (not 1 s), so a load change shows within a scrape
    return SimulatedGPU(idle_w=IDLE_W, max_w=MAX_W, power_window_s=0.1)


@dataclass
class Scrape:
    """Samples of one exposition text."""

    samples: list[Sample]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        return cls([s for f in text_string_to_metric_families(text) for s in f.samples])

    def series(self, name: str, **labels: str) -> list[Sample]:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def get(self, name: str, **labels: str) -> float:
        found = self.series(name, **labels)
        assert len(found) == 1, f"{name} {labels}: {found}"
        return found[0].value

    def by_device(self, name: str, **labels: str) -> dict[str, float]:
        return {s.labels["device"]: s.value for s in self.series(name, **labels)}


def scrape(port: int | None) -> Scrape:
    assert port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return Scrape.parse(response.read().decode())
