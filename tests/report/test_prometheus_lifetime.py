"""The Prometheus endpoint stops with the last run that uses it (after a last scrape)."""

from __future__ import annotations

import socket
import time

import pytest
from prometheus_scrapes import UPDATE_S, gpu, scrape

from greenai.report.prometheus import PrometheusExporter
from greenai.sim import simulated_nvml
from greenai.tracking.meter import Meter


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until_closed(port: int, within_s: float = 10.0) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if not listening(port):
            return True
        time.sleep(0.05)
    return False


def test_linger_zero_stops_serving_when_the_run_ends() -> None:
    exporter = PrometheusExporter(0, update_interval_s=UPDATE_S, linger_s=0)
    with simulated_nvml([gpu()]) as sim:
        with Meter("short", gpus=[0], cpu=False, dram=False, observers=[exporter]) as run:
            sim.compute(0.1)
            port = exporter.port
            assert port is not None
            assert listening(port)
        _ = run.result  # the run's end (and the exporter's last update) is done
    assert wait_until_closed(port)


def test_the_final_figures_stay_scrapable_while_it_lingers_and_a_new_run_keeps_it() -> None:
    exporter = PrometheusExporter(0, update_interval_s=UPDATE_S, linger_s=0.5)
    with simulated_nvml([gpu()]) as sim:
        with Meter("a", gpus=[0], cpu=False, dram=False, observers=[exporter]) as run:
            sim.compute(0.1)
        _ = run.result
        port = exporter.port
        assert port is not None
        assert scrape(port).get("greenai_energy_joules_total", run="a") > 0  # still served
        with Meter("b", gpus=[0], cpu=False, dram=False, observers=[exporter]) as run_b:
            time.sleep(0.8)  # longer than linger_s: the running run keeps the server
            assert listening(port)
            sim.compute(0.1)
        _ = run_b.result
        assert exporter.port == port
    assert wait_until_closed(port)


def test_linger_none_serves_until_the_process_exits_and_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="linger_s must be a non-negative"):
        PrometheusExporter(0, linger_s=-1)
    with pytest.raises(TypeError, match="linger_s must be a number of seconds"):
        PrometheusExporter(0, linger_s="30")  # type: ignore[arg-type]
    exporter = PrometheusExporter(0, update_interval_s=UPDATE_S, linger_s=None)
    with simulated_nvml([gpu()]) as sim:
        with Meter("kept", gpus=[0], cpu=False, dram=False, observers=[exporter]) as run:
            sim.compute(0.1)
        _ = run.result
    assert exporter.port is not None
    time.sleep(0.3)
    assert listening(exporter.port)
