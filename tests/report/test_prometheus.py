"""The Prometheus exporter against real HTTP: scrapes on loopback, a Pushgateway stand-in,
and a multiprocess directory shared by real processes; the tracker runs on simulated GPUs."""

from __future__ import annotations

import http.server
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from greenai.accounting.carbon import accountant
from greenai.accounting.settings import resolve_settings
from greenai.core.errors import OutputWarning
from greenai.report.prometheus import PrometheusExporter
from greenai.report.prometheus_serving import MULTIPROC_ENV
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.meter import Meter
from greenai.tracking.result import Snapshot

HOST = socket.gethostname()
UPDATE_S = 0.05
IDLE_W, MAX_W = 70.0, 700.0
# The final figures are the run's result's, unless a snapshot during the run went
# past them (counters never go down): a snapshot counts from the first sample, not
# from the start boundary corrected for counter staleness, and extrapolates at the
# last power; a counter update and a sample period (0.1 s each here) at most.
LAG_J = MAX_W * 0.2


def _gpu() -> SimulatedGPU:
    # power readings average over 0.1 s (not 1 s), so a load change shows within a scrape
    return SimulatedGPU(idle_w=IDLE_W, max_w=MAX_W, power_window_s=0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _updater_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "greenai-prometheus" and t.is_alive()]


def test_live_scrape_follows_the_run() -> None:
    exporter = PrometheusExporter(0, addr="127.0.0.1", update_interval_s=UPDATE_S)
    with simulated_nvml([_gpu(), _gpu()]) as sim:
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
    result = run.result
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
    with simulated_nvml([_gpu(), _gpu()]) as sim:
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
    with simulated_nvml([_gpu(), _gpu()]) as sim:
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


def test_sequential_runs_share_the_server() -> None:
    first = PrometheusExporter(0, addr="127.0.0.1", update_interval_s=UPDATE_S)
    with simulated_nvml([_gpu()]) as sim:
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
    with simulated_nvml([_gpu()]) as sim:
        with pytest.warns(OutputWarning, match=r"update failed \(RuntimeError: boom\)") as caught:
            with Meter("flaky", gpus=[0], cpu=False, dram=False, observers=[exporter]) as run:
                monkeypatch.setattr(run, "snapshot", broken)
                sim.compute(0.3)
                assert scrape(exporter.port).series("greenai_energy_joules_total", run="flaky")
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
        with simulated_nvml([_gpu()]) as sim:
            with pytest.warns(OutputWarning, match=f"cannot serve .* on 127.0.0.1:{port}"):
                with Meter("busy", gpus=[0], cpu=False, dram=False, observers=[exporter]) as run:
                    sim.compute(0.1)
    assert exporter.port is None
    assert run.result.energy_j > 0
    assert run.result.metadata["prometheus"] == {"port": None}


def test_other_labels_on_a_shared_port_warn() -> None:
    first = PrometheusExporter(0, addr="127.0.0.1", labels={"team": "a"})
    with simulated_nvml([_gpu()]):
        with Meter("a", gpus=[0], cpu=False, dram=False, observers=[first]):
            pass
        other = PrometheusExporter(first.port, addr="127.0.0.1", labels={"cluster": "b"})
        with pytest.warns(OutputWarning, match=r"labelled \['team'\], not \['cluster'\]"):
            with Meter("b", gpus=[0], cpu=False, dram=False, observers=[other]):
                pass
    assert other.port is None
    assert scrape(first.port).series("greenai_run_partial", run="a", team="a")


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
    with simulated_nvml([_gpu(), _gpu()]) as sim:
        # another run in the same registry must not be pushed in this run's group
        with Meter("other", gpus=[0], cpu=False, dram=False, observers=[exporter]):
            pass
        with Meter("train/a", gpus=[0, 1], cpu=False, dram=False, observers=[exporter]) as run:
            sim.compute(0.4, gpu=0)
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
    with simulated_nvml([_gpu()]) as sim:
        with pytest.warns(OutputWarning, match="push failed") as caught:
            with Meter("lonely", gpus=[0], cpu=False, dram=False, observers=[exporter]) as run:
                sim.compute(0.2)
    assert len(caught) == 1
    # the pushes while running failed already; the final one is only warned about
    (problem,) = run.result.metadata["prometheus"]["problems"]
    assert problem.startswith("push: URLError")
    assert run.result.energy_j > 0


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


# ----------------------------------------------------------------- multiprocess

WORKER = """
import sys, time
from pathlib import Path
from greenai.report.prometheus import PrometheusExporter
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.meter import Meter

mp_dir, stop = sys.argv[1], Path(sys.argv[2])
exporter = PrometheusExporter(0, addr="127.0.0.1", multiprocess_dir=mp_dir, update_interval_s=0.05)
with simulated_nvml([SimulatedGPU(power_window_s=0.1)]) as sim:
    with Meter("job", gpus=[0], cpu=False, dram=False, observers=[exporter]) as run:
        print("PORT", exporter.port, flush=True)
        sim.set_load(0, 1.0)
        while not stop.exists():
            with run.step():
                time.sleep(0.02)
print("ENERGY", run.result.energy_j, flush=True)
"""


def _start_rank(rank: int, mp_dir: Path, stop: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC"))}
    env.pop(MULTIPROC_ENV, None)  # the exporter sets it, before prometheus_client is imported
    env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(mp_dir), str(stop)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_multiprocess_directory_served_by_local_rank_0(tmp_path: Path) -> None:
    mp_dir = tmp_path / "metrics"
    stops = [tmp_path / "stop0", tmp_path / "stop1"]
    ranks = [_start_rank(r, mp_dir, stops[r]) for r in (0, 1)]
    try:
        assert ranks[1].stdout is not None
        assert ranks[1].stdout.readline().split() == ["PORT", "None"]  # only local rank 0 serves
        assert ranks[0].stdout is not None
        port = int(ranks[0].stdout.readline().split()[1])
        deadline = time.monotonic() + 20
        while True:
            seen = scrape(port)
            energy = {
                s.labels["rank"]: s.value
                for s in seen.series("greenai_energy_joules_total", run="job", device="gpu0")
            }
            steps = {s.labels["rank"]: s.value for s in seen.series("greenai_steps_total")}
            if len(energy) == len(steps) == 2 and min(*energy.values(), *steps.values()) > 0:
                break
            assert time.monotonic() < deadline, f"both ranks' series never appeared: {energy}"
            time.sleep(0.1)
        assert {s.labels["rank"] for s in seen.series("greenai_power_watts")} == {"0", "1"}
        for power in seen.series("greenai_power_watts"):
            assert "pid" not in power.labels

        time.sleep(0.3)
        stops[1].touch()
        out, _ = ranks[1].communicate(timeout=20)
        assert ranks[1].returncode == 0
        rank1_j = float(out.split()[-1])
        seen = scrape(port)
        # rank 1 exited: its counters stay (they sum), its live gauges went with it
        assert seen.get("greenai_energy_joules_total", rank="1") == pytest.approx(
            rank1_j, rel=0.03, abs=LAG_J
        )
        assert {s.labels["rank"] for s in seen.series("greenai_power_watts")} == {"0"}
        assert seen.get("greenai_power_watts", rank="0") == pytest.approx(700.0, rel=0.02)
    finally:
        for stop in stops:
            stop.touch()
        for process in ranks:
            process.communicate(timeout=20)
    assert ranks[0].returncode == 0
