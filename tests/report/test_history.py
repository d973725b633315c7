"""The run history database: paths, listing, lookup by ref, comparison, concurrency, schema."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import greenai
from greenai.core.errors import ReportError
from greenai.report.history import (
    SCHEMA_VERSION,
    Delta,
    History,
    compare_results,
    default_history_path,
    run_summary,
)
from greenai.report.records import read_record, write_record
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.result import Result


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the real ~/.local/share: every default path points into tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("GREENAI_HISTORY", raising=False)


def make_result(
    run_id: str,
    start: float,
    *,
    energy_j: float = 1000.0,
    duration_s: float = 10.0,
    co2_kg: float | None = None,
    cost_usd: float | None = None,
    name: str = "run",
    partial: bool = False,
) -> Result:
    return Result(
        name=name,
        start_unix_s=start,
        duration_s=duration_s,
        energy_by_device_j={
            "gpu0": energy_j * 0.7,
            "cpu0": energy_j * 0.2,
            "dram0": energy_j * 0.1,
        },
        sources={"gpu0": "nvml-counter", "cpu0": "rapl", "dram0": "rapl"},
        kinds={"gpu0": "gpu", "cpu0": "cpu", "dram0": "dram"},
        partial=partial,
        run_id=run_id,
        metadata={"hostname": "node7"},
        co2_kg=co2_kg,
        cost_usd=cost_usd,
    )


def test_default_path_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    assert default_history_path() == home / ".local/share/greenai/history.sqlite3"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")  # not absolute: ignored (XDG)
    assert default_history_path() == home / ".local/share/greenai/history.sqlite3"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_history_path() == tmp_path / "xdg/greenai/history.sqlite3"
    monkeypatch.setenv("GREENAI_HISTORY", str(tmp_path / "explicit.db"))
    assert default_history_path() == tmp_path / "explicit.db"
    assert History().path == tmp_path / "explicit.db"


def test_default_history_is_created_in_the_data_dir(tmp_path: Path) -> None:
    history = History()
    history.add(make_result("r1", 1.0))
    assert (tmp_path / "home/.local/share/greenai/history.sqlite3").is_file()
    assert len(history) == 1


def test_runs_newest_first_with_limit(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    assert history.runs() == []
    for i, start in enumerate([300.0, 100.0, 200.0]):
        history.add(make_result(f"id{i}", start, energy_j=10.0 * (i + 1), co2_kg=0.1 * i))
    runs = history.runs()
    assert [r.run_id for r in runs] == ["id0", "id2", "id1"]
    assert [r.index for r in runs] == [1, 2, 3]
    first = runs[0]
    assert first.energy_j == pytest.approx(10.0)
    assert first.gpu_energy_j == pytest.approx(7.0)
    assert first.cpu_energy_j == pytest.approx(2.0)
    assert first.dram_energy_j == pytest.approx(1.0)
    assert first.co2_kg == 0.0
    assert first.cost_usd is None
    assert first.hostname == "node7"
    assert first.partial is False
    assert [r.run_id for r in history.runs(limit=2)] == ["id0", "id2"]
    assert history.runs(limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        history.runs(limit=-1)


def test_add_is_idempotent_per_run_id(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    history.add(make_result("same", 1.0))
    history.add(make_result("same", 1.0))
    assert len(history) == 1
    history.add(make_result("same", 1.0, co2_kg=0.5, partial=True))  # accounted later
    (run,) = history.runs()
    assert run.co2_kg == 0.5
    assert run.partial is True
    assert history.get("same").co2_kg == 0.5


def test_add_refuses_results_it_cannot_key_or_sort(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    with pytest.raises(ValueError, match="run_id"):
        history.add(make_result("", 1.0))
    with pytest.raises(ValueError, match="energy_j not finite"):
        history.add(make_result("nan", 1.0, energy_j=math.nan))
    assert len(history) == 0


def test_get_returns_the_summary_and_get_full_the_record(tmp_path: Path) -> None:
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        with greenai.track("sim", cpu=False, dram=False) as run:
            with run.window("epoch"):
                for _ in range(3):
                    with run.step():
                        sim.compute(0.5)
    result = run.result
    record = write_record(tmp_path / "run.json", result)
    history = History(tmp_path / "h.db")
    history.add(result, record=record)
    again = history.get(result.run_id)
    assert again.to_dict() == run_summary(result).to_dict()
    assert not again.timeline.times_s
    assert not again.window("epoch").timeline.times_s
    assert again.steps is not None
    assert result.steps is not None
    assert again.steps.count == 3
    assert len(again.steps.durations_s) == 0
    assert again.steps.duration_quantiles_s == result.steps.duration_quantiles_s
    assert again.window("epoch").energy_j == pytest.approx(result.window("epoch").energy_j)
    assert history.get_full(result.run_id[:8]).to_dict() == read_record(record).to_dict()
    record.unlink()  # the record is gone: the summary is all there is
    assert history.get_full(result.run_id).to_dict() == again.to_dict()


def test_get_by_index_prefix_and_id(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    history.add(make_result("abc123", 1.0, name="oldest"))
    history.add(make_result("abd456", 2.0, name="middle"))
    history.add(make_result("f00", 3.0, name="latest"))
    assert history.get("1").name == "latest"
    assert history.get(1).name == "latest"
    assert history.get("3").name == "oldest"
    assert history.get("abc").name == "oldest"
    assert history.get("abd456").name == "middle"
    assert history.get(" f ").name == "latest"


def test_exact_run_id_wins_over_an_index(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    history.add(make_result("2", 1.0, name="named two"))
    history.add(make_result("x", 2.0, name="latest"))
    assert history.get("2").name == "named two"
    assert history.get("1").name == "latest"


def test_all_digit_ref_beyond_the_list_is_a_prefix(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    history.add(make_result("12345-run", 1.0, name="digits"))
    assert history.get("123").name == "digits"


def test_ambiguous_ref_lists_candidates(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    history.add(make_result("abc123", 1.0))
    history.add(make_result("abd456", 2.0))
    with pytest.raises(KeyError, match="ambiguous") as info:
        history.get("ab")
    assert "abc123" in str(info.value)
    assert "abd456" in str(info.value)


def test_unknown_ref_lists_the_latest_runs(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    with pytest.raises(KeyError, match="history is empty"):
        history.get("1")
    history.add(make_result("abc123", 1.0, name="first"))
    with pytest.raises(KeyError, match=r"no run matches 'zzz'.*1: abc123 \(first") as info:
        history.get("zzz")
    assert "index must be 1 to 1" in str(info.value)
    with pytest.raises(KeyError, match="no run matches '2'"):
        history.get(2)
    with pytest.raises(KeyError, match="no run matches '0'"):
        history.get(0)
    with pytest.raises(ValueError, match="empty run reference"):
        history.get("  ")


def test_compare_is_b_relative_to_a(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    history.add(make_result("base", 1.0, energy_j=1000.0, duration_s=10.0, co2_kg=0.2))
    history.add(make_result("new", 2.0, energy_j=800.0, duration_s=12.0, co2_kg=0.1))
    c = history.compare("base", "1")
    assert (c.a.run_id, c.b.run_id) == ("base", "new")
    assert c.energy_j.diff == pytest.approx(-200.0)
    assert c.energy_j.rel == pytest.approx(-0.2)
    assert c.duration_s.rel == pytest.approx(0.2)
    assert c.co2_kg.rel == pytest.approx(-0.5)
    assert c.cost_usd == Delta(None, None, None, None)
    data = c.to_dict()
    assert data["a"] == {"run_id": "base", "name": "run"}
    assert data["energy_j"]["rel"] == pytest.approx(-0.2)


def test_compare_accepts_results_and_is_none_safe() -> None:
    a = make_result("a", 1.0, energy_j=0.0, co2_kg=None, cost_usd=0.0)
    b = make_result("b", 2.0, energy_j=5.0, co2_kg=0.3, cost_usd=0.0)
    c = compare_results(a, b)
    assert c.energy_j == Delta(0.0, 5.0, 5.0, None)  # from nothing: no ratio
    assert c.co2_kg == Delta(None, 0.3, None, None)
    assert c.cost_usd == Delta(0.0, 0.0, 0.0, 0.0)


def test_schema_version_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    History(path).add(make_result("r", 1.0))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    History(path).add(make_result("r", 1.0))
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    before = path.read_bytes()
    history = History(path)
    with pytest.raises(ReportError, match=r"schema version 99.*newer greenai.*reads version 1"):
        history.runs()
    with pytest.raises(ReportError, match="newer greenai"):
        history.add(make_result("other", 2.0))
    assert path.read_bytes() == before


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE things (x)")
    db.commit()
    db.close()
    with pytest.raises(ReportError, match=r"not a greenai run history.*holds 1 tables") as info:
        History(path).runs()
    assert "things" not in str(info.value)  # a foreign database's names are its content


def test_non_database_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some text, long enough to have a header page? no." * 20)
    before = path.read_bytes()
    with pytest.raises(ReportError, match="not a usable greenai run history"):
        History(path).runs()
    assert path.read_bytes() == before


def _add_runs(path: str, worker: int, count: int, barrier: Any) -> None:
    history = History(path)
    barrier.wait()
    for i in range(count):
        history.add(make_result(f"w{worker}-{i}", worker * 1000.0 + i))


def test_concurrent_adds_from_processes(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    workers, per_worker = 8, 25
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    procs = [
        ctx.Process(target=_add_runs, args=(str(path), w, per_worker, barrier))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * workers
    history = History(path)
    runs = history.runs()
    assert len(runs) == workers * per_worker
    assert runs[0].run_id == f"w{workers - 1}-{per_worker - 1}"
    assert {r.run_id for r in runs} == {
        f"w{w}-{i}" for w in range(workers) for i in range(per_worker)
    }
    assert history.get("w3-7").start_unix_s == 3007.0
