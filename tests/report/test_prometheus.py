"""The Prometheus exporter serving scrapes on loopback, against real HTTP, while the tracker
runs on simulated GPUs; and its arguments, checked up front.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_scrapes import HOST, IDLE_W, LAG_J, MAX_W, UPDATE_S, Scrape, gpu, scrape

from greenai.accounting.carbon import accountant
from greenai.accounting.settings import resolve_settings
from greenai.core.errors import OutputWarning
from greenai.report.prometheus import PrometheusExporter
from greenai.report.prometheus_serving import MULTIPROC_ENV
from greenai.sim import simulated_nvml
from greenai.tracking.meter import Meter
from greenai.tracking.result import Snapshot


def _updater_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "greenai-prometheus" and t.is_alive()]


def test_live_scrape_follows_the_run() -> None:
    exporter = PrometheusExporter(0, addr="127.0.0.1", update_interval_s=UPDATE_S)
    with simulated_nvml([gpu(), gpu()]) as sim:
        with Meter("train", gpus=[0, 1], cpu=False, dram=False, observers=[exporter]) as run:
            assert exporter.port
            sim.set_load(0, 1.0)
            for _ in range(10):
                with run.step():
                    time.sleep(0.03)
            stepping = scrape(exporter.port)
            with run.window("epoch"):
                time.sleep(0.3)
                before = run.snapshot()
                time.sleep(3 * UPDATE_S)
                live = scrape(exporter.port)
                after = run.snapshot()
            time.sleep(0.1)
        result = run.result  # finished while the simulated GPUs still answer
    done = scrape(exporter.port)
    me = {"run": "train", "rank": "0", "node": HOST}

    assert stepping.get("greenai_steps_per_second", **me) > 5
    energy = live.by_device("greenai_energy_joules_total", **me, kind="gpu", source="sim")
    assert set(energy) == {"gpu0", "gpu1"}
    for device, energy_j in energy.items():
        # the scrape shows an update made between the two snapshots
        low, high = before.energy_by_device_j[device], after.energy_by_device_j[device]
        assert low * 0.98 - 1 <= energy_j <= high * 1.02 + 1, (device, low, energy_j, high)
    power = live.by_device("greenai_power_watts", **me, kind="gpu", source="sim")
    assert power["gpu0"] == pytest.approx(MAX_W, rel=0.02)
    assert power["gpu1"] == pytest.approx(IDLE_W, rel=0.02)
    assert live.get("greenai_steps_total", **me) == 10
    assert 0 < live.get("greenai_window_energy_joules", **me, window="epoch") < energy["gpu0"]
    assert live.get("greenai_run_partial", **me) == 0
    assert before.elapsed_s <= live.get("greenai_run_duration_seconds", **me) <= after.elapsed_s
    assert not live.series("greenai_co2_kilograms_total")  # not accounted: no CO2

    final = done.by_device("greenai_energy_joules_total", **me)
    for device, energy_j in result.energy_by_device_j.items():
        assert energy_j <= final[device] <= energy_j + LAG_J
    assert done.by_device("greenai_power_watts", **me) == {"gpu0": 0.0, "gpu1": 0.0}
    assert done.get("greenai_steps_per_second", **me) == 0
    assert done.get("greenai_run_duration_seconds", **me) == pytest.approx(
        result.duration_s, abs=0.05
    )
    # the window's last value stays after it closed (as of the last update inside it)
    window_j = result.window("epoch").energy_j
    assert done.get("greenai_window_energy_joules", **me, window="epoch") == pytest.approx(
        window_j, abs=(MAX_W + IDLE_W) * 2 * UPDATE_S
    )
    assert result.metadata["prometheus"] == {"port": exporter.port}
    assert not _updater_threads()


def test_counters_never_decrease_between_scrapes() -> None:
    exporter = PrometheusExporter(0, addr="127.0.0.1", update_interval_s=UPDATE_S)
    with simulated_nvml([gpu(), gpu()]) as sim:
        with Meter("mono", gpus=[0, 1], cpu=False, dram=False, observers=[exporter]) as run:
            sim.set_load(1, 0.5)
            with run.step():
                time.sleep(0.15)
            first = scrape(exporter.port)
            sim.set_load(1, 0.0)
            with run.step():
                time.sleep(0.15)
            second = scrape(exporter.port)
    final = scrape(exporter.port)
    counters = [s for s in first.samples if s.name.endswith("_total")]
    assert {s.name for s in counters} == {"greenai_energy_joules_total", "greenai_steps_total"}
    for sample in counters:
        (later,) = second.series(sample.name, **sample.labels)
        assert later.value >= sample.value, sample
    for sample in counters:
        (last,) = final.series(sample.name, **sample.labels)
        assert last.value >= second.series(sample.name, **sample.labels)[0].value
    assert final.get("greenai_steps_total", run="mono") == 2


@dataclass
class ScriptedTracker:
    """Just what the exporter reads of a tracker, with figures the test sets."""

    name: str
    now: Snapshot = field(default_factory=lambda: _snapshot(0.0, 0.0))

    def snapshot(self) -> Snapshot:
        return self.now

    def account(self, result: Any) -> Any:
        return result


def _snapshot(elapsed_s: float, energy_j: float) -> Snapshot:
    return Snapshot(
        elapsed_s=elapsed_s,
        power_w={"gpu0": 100.0},
        energy_j=energy_j,
        energy_by_device_j={"gpu0": energy_j},
        sources={"gpu0": "sim"},
        kinds={"gpu0": "gpu"},
    )


def _await_update(port: int | None, run: str, elapsed_s: float) -> Scrape:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seen = scrape(port)
        if seen.series("greenai_run_duration_seconds", run=run) and (
            seen.get("greenai_run_duration_seconds", run=run) == elapsed_s
        ):
            return seen
        time.sleep(UPDATE_S / 2)
    raise AssertionError(f"no update to {elapsed_s} s within 5 s")


def test_a_falling_energy_figure_holds_the_counter() -> None:
    """A sensor fault that lowers a device's figure stops its counter; it never goes back."""
    tracker = ScriptedTracker("scripted")
    exporter = PrometheusExporter(0, addr="127.0.0.1", update_interval_s=UPDATE_S)
    exporter.run_started(tracker)  # type: ignore[arg-type]
    try:
        for elapsed_s, energy_j, expected_j in [(1, 100, 100), (2, 40, 100), (3, 130, 130)]:
            tracker.now = _snapshot(elapsed_s, energy_j)
            seen = _await_update(exporter.port, "scripted", elapsed_s)
            assert seen.get("greenai_energy_joules_total", run="scripted") == expected_j
    finally:
        assert exporter.run_stopping() == {"prometheus": {"port": exporter.port}}


def test_co2_is_each_devices_share_of_the_accounted_run() -> None:
    settings = resolve_settings(intensity_g_per_kwh=400)
    exporter = PrometheusExporter(0, addr="127.0.0.1", update_interval_s=UPDATE_S)
    with simulated_nvml([gpu(), gpu()]) as sim:
        with Meter(
            "carbon",
            gpus=[0, 1],
            cpu=False,
            dram=False,
            account=accountant(settings),
            observers=[exporter],
        ) as run:
            sim.set_load(0, 1.0)
            time.sleep(0.3)
            live = scrape(exporter.port)
    done = scrape(exporter.port)
    kg_per_j = 400 * settings.pue / 3.6e6 / 1000
    for seen in (live, done):
        energy = seen.by_device("greenai_energy_joules_total", run="carbon")
        co2 = seen.by_device("greenai_co2_kilograms_total", run="carbon")
        assert set(co2) == {"gpu0", "gpu1"}
        for device, energy_j in energy.items():
            assert co2[device] == pytest.approx(energy_j * kg_per_j, rel=1e-9)
    assert run.result.co2_kg == pytest.approx(
        sum(done.by_device("greenai_co2_kilograms_total", run="carbon").values()),
        rel=0.03,
        abs=2 * LAG_J * kg_per_j,
    )


def _listening_ips(port: int) -> set[str]:
    import psutil

    return {
        c.laddr.ip
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_the_endpoint_listens_on_loopback_unless_an_address_is_given() -> None:
    """Energy, run names and host names are not for the whole network by default."""
    exporter = PrometheusExporter(0)
    with simulated_nvml([gpu()]):
        with Meter("local", gpus=[0], cpu=False, dram=False, observers=[exporter]):
            assert exporter.port
            assert _listening_ips(exporter.port) == {"127.0.0.1"}
            assert scrape(exporter.port).series("greenai_run_partial", run="local")
    anywhere = PrometheusExporter(0, addr="0.0.0.0")
    with simulated_nvml([gpu()]):
        with Meter("open", gpus=[0], cpu=False, dram=False, observers=[anywhere]):
            assert anywhere.port
            assert _listening_ips(anywhere.port) == {"0.0.0.0"}


def test_sequential_runs_share_the_server() -> None:
    first = PrometheusExporter(0, addr="127.0.0.1", update_interval_s=UPDATE_S)
    with simulated_nvml([gpu()]) as sim:
        with Meter("first", gpus=[0], cpu=False, dram=False, observers=[first]):
            sim.compute(0.2)
        first_j = scrape(first.port).get("greenai_energy_joules_total", run="first")
        # another exporter given the same port joins the running server instead of failing
        second = PrometheusExporter(first.port, addr="127.0.0.1", update_interval_s=UPDATE_S)
        with Meter("second", gpus=[0], cpu=False, dram=False, observers=[second]):
            sim.compute(0.2)
        assert second.port == first.port
        # the same exporter again (port 0 keeps its server); the same name adds on
        with Meter("first", gpus=[0], cpu=False, dram=False, observers=[first]) as again:
            sim.compute(0.2)
    assert first.port == second.port
    seen = scrape(first.port)
    assert seen.get("greenai_energy_joules_total", run="second") > 0
    assert seen.get("greenai_energy_joules_total", run="first") == pytest.approx(
        first_j + again.result.energy_j, rel=0.03, abs=LAG_J
    )


def test_a_failing_snapshot_warns_once_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken() -> Snapshot:
        raise RuntimeError("boom")

    exporter = PrometheusExporter(0, addr="127.0.0.1", update_interval_s=UPDATE_S)
    with simulated_nvml([gpu()]) as sim:
        with pytest.warns(OutputWarning, match=r"update failed \(RuntimeError: boom\)") as caught:
            with Meter("flaky", gpus=[0], cpu=False, dram=False, observers=[exporter]) as run:
                monkeypatch.setattr(run, "snapshot", broken)
                sim.compute(0.3)
                assert scrape(exporter.port).series("greenai_energy_joules_total", run="flaky")
            _ = run.result  # the last update's warning, if the run was finished in the background
    assert len(caught) == 1
    assert run.result.energy_j > 0
    assert run.result.metadata["prometheus"]["problems"] == ["update: RuntimeError: boom"]
    assert not _updater_threads()


def test_a_busy_port_warns_and_the_run_goes_on() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        exporter = PrometheusExporter(port, addr="127.0.0.1", update_interval_s=UPDATE_S)
        with simulated_nvml([gpu()]) as sim:
            with pytest.warns(OutputWarning, match=f"cannot serve .* on 127.0.0.1:{port}"):
                with Meter("busy", gpus=[0], cpu=False, dram=False, observers=[exporter]) as run:
                    sim.compute(0.1)
                _ = run.result  # the run's last warnings, if it was finished in the background
    assert exporter.port is None
    assert run.result.energy_j > 0
    assert run.result.metadata["prometheus"] == {"port": None}


def test_other_labels_on_a_shared_port_warn() -> None:
    first = PrometheusExporter(0, addr="127.0.0.1", labels={"team": "a"})
    with simulated_nvml([gpu()]):
        with Meter("a", gpus=[0], cpu=False, dram=False, observers=[first]):
            pass
        other = PrometheusExporter(first.port, addr="127.0.0.1", labels={"cluster": "b"})
        with pytest.warns(OutputWarning, match=r"labelled \['team'\], not \['cluster'\]"):
            with Meter("b", gpus=[0], cpu=False, dram=False, observers=[other]):
                pass
    assert other.port is None
    assert scrape(first.port).series("greenai_run_partial", run="a", team="a")


# ----------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"port": True}, TypeError, "port must be an int or None, got True"),
        ({"port": "9100"}, TypeError, "port must be an int or None, got '9100'"),
        ({"port": -1}, ValueError, r"port must be in \[0, 65535\].*got -1"),
        ({"port": 65536}, ValueError, "got 65536"),
        ({"port": 0, "addr": None}, TypeError, "addr must be a string"),
        ({"port": 0, "update_interval_s": 0}, ValueError, "update_interval_s .* got 0"),
        ({"port": 0, "update_interval_s": math.nan}, ValueError, "update_interval_s .* got nan"),
        ({"port": 0, "update_interval_s": math.inf}, ValueError, "update_interval_s .* got inf"),
        ({"port": 0, "update_interval_s": "1"}, TypeError, "update_interval_s .* got '1'"),
        ({"port": 0, "push_interval_s": 1.0}, ValueError, "push_interval_s=1.0 needs a push"),
        ({"push_gateway": "gw:9091", "push_interval_s": -1}, ValueError, "push_interval_s"),
        ({"push_gateway": ""}, TypeError, "push_gateway must be a non-empty string"),
        ({"port": 0, "push_job": ""}, TypeError, "push_job must be a non-empty string"),
        ({"port": 0, "labels": {"1team": "a"}}, ValueError, "'1team' is not a Prometheus label"),
        ({"port": 0, "labels": {"a-b": "a"}}, ValueError, "'a-b' is not a Prometheus label"),
        ({"port": 0, "labels": {"__team": "a"}}, ValueError, "'__team' starts with '__'"),
        ({"port": 0, "labels": {"run": "a"}}, ValueError, "'run' clashes"),
        ({"port": 0, "labels": {"device": "a"}}, ValueError, "'device' clashes"),
        ({"port": 0, "labels": {"job": "a"}}, ValueError, "'job' clashes"),
        ({"port": 0, "labels": {"team": 1}}, TypeError, "value of 'team' must be a string"),
        ({"port": 0, "labels": ["team"]}, TypeError, "labels must be a mapping"),
        ({}, ValueError, "nothing to export to"),
    ],
)
def test_bad_arguments_are_named(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        PrometheusExporter(**kwargs)


def test_multiprocess_dir_needs_the_variable_before_prometheus_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "prometheus_client" in sys.modules  # imported here, in single-process mode
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with pytest.raises(ValueError, match=f"needs {MULTIPROC_ENV} set before the process imports"):
        PrometheusExporter(0, multiprocess_dir=tmp_path)
    assert MULTIPROC_ENV not in os.environ
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match=f"but {MULTIPROC_ENV} is .*elsewhere"):
        PrometheusExporter(0, multiprocess_dir=tmp_path)
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=f"{MULTIPROC_ENV} was set after the process imported"):
        PrometheusExporter(0, multiprocess_dir=tmp_path)
