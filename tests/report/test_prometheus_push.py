"""The Prometheus exporter pushing to a Pushgateway stand-in over real HTTP, while the tracker
runs on simulated GPUs.
"""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_scrapes import HOST, LAG_J, UPDATE_S, Scrape, gpu

from greenai.core.errors import OutputWarning
from greenai.report.prometheus import PrometheusExporter
from greenai.sim import simulated_nvml
from greenai.tracking.meter import Meter


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------- push


@dataclass
class Gateway:
    """A Pushgateway stand-in that records each request's method, path and body."""

    url: str
    requests: list[tuple[str, str, str]]


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    requests: list[tuple[str, str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            requests.append((self.command, self.path, body))
            self.send_response(200)
            self.end_headers()

        do_POST = do_PUT

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Gateway(f"127.0.0.1:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_push_at_the_end_and_on_interval(gateway: Gateway) -> None:
    exporter = PrometheusExporter(
        push_gateway=gateway.url,
        push_interval_s=0.1,
        update_interval_s=UPDATE_S,
        labels={"team": "ml"},
    )
    with simulated_nvml([gpu(), gpu()]) as sim:
        # another run in the same registry must not be pushed in this run's group
        with Meter("other", gpus=[0], cpu=False, dram=False, observers=[exporter]):
            pass
        with Meter("train/a", gpus=[0, 1], cpu=False, dram=False, observers=[exporter]) as run:
            sim.compute(0.4, gpu=0)
        _ = run.result  # finished (pushed) while the simulated GPUs still answer
    assert run.result.metadata["prometheus"] == {"port": None, "push_gateway": gateway.url}
    paths = {path for _, path, _ in gateway.requests}
    # the grouping key in prometheus_client's order; a value with "/" goes in base64
    expected = (
        f"/metrics/job/greenai/node/{urllib.parse.quote_plus(HOST)}"
        "/rank/0/run@base64/dHJhaW4vYQ==/team/ml"
    )
    assert expected in paths
    pushes = [(m, body) for m, path, body in gateway.requests if path == expected]
    assert len(pushes) >= 3  # some while running, the last at the end
    assert {m for m, _ in pushes} == {"PUT"}
    last = Scrape.parse(pushes[-1][1])
    assert {s.labels["run"] for s in last.samples if "run" in s.labels} == {"train/a"}
    pushed = last.by_device("greenai_energy_joules_total", team="ml")
    assert pushed.keys() == run.result.energy_by_device_j.keys()
    for device, energy_j in run.result.energy_by_device_j.items():
        # the result's exact figure, unless a snapshot had already gone past it
        assert energy_j <= pushed[device] <= energy_j + LAG_J
    assert last.get("greenai_run_duration_seconds") == pytest.approx(
        run.result.duration_s, abs=0.05
    )


def test_an_unreachable_gateway_warns_once() -> None:
    exporter = PrometheusExporter(
        push_gateway=f"127.0.0.1:{_free_port()}", push_interval_s=0.05, update_interval_s=0.05
    )
    with simulated_nvml([gpu()]) as sim:
        with pytest.warns(OutputWarning, match="push failed") as caught:
            with Meter("lonely", gpus=[0], cpu=False, dram=False, observers=[exporter]) as run:
                sim.compute(0.2)
            _ = run.result  # the run's last warnings, if it was finished in the background
    assert len(caught) == 1
    # the pushes while running failed already; the final one is only warned about
    (problem,) = run.result.metadata["prometheus"]["problems"]
    assert problem.startswith("push: URLError")
    assert run.result.energy_j > 0
