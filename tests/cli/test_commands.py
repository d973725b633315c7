"""The command line end to end: run, report, devices, history, compare, bad options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from greenai.cli.commands import main
from greenai.report.csv_report import read_emissions_csv
from greenai.report.records import write_record
from greenai.tracking.result import Result

PY = sys.executable


def _greenai(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "greenai", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_run_meters_a_command_and_passes_its_exit_code(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _greenai(
        "run",
        "--country",
        "FRA",
        "--output-dir",
        str(out),
        "--name",
        "job",
        "--",
        PY,
        "-c",
        "import sys; print('hello'); sys.exit(3)",
    )
    assert proc.returncode == 3
    assert proc.stdout == "hello\n"  # the child's output is untouched; greenai's goes to stderr
    assert "job:" in proc.stderr
    assert "CO2e" in proc.stderr
    (row,) = read_emissions_csv(out / "emissions.csv")
    record = out / f"{row['run_id']}.json"
    assert json.loads(record.read_text())["name"] == "job"


def test_run_without_a_command_or_with_bad_options_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["nope"], ["history", "--limit", "0"]):  # argparse's own checks
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2, argv
    for argv in (["run"], ["run", "--"], ["run", "--pue", "0.5", "--", "true"]):
        assert main(argv) == 2, argv
    assert "greenai: error: " in capsys.readouterr().err
    assert main(["run", "--pue", "0.5", "--", "true"]) == 2
    assert "pue" in capsys.readouterr().err


def test_run_unknown_command_is_127() -> None:
    proc = _greenai("run", "--", "surely-not-a-command-xyz")
    assert proc.returncode == 127
    assert "surely-not-a-command-xyz" in proc.stderr


def test_report_renders_a_saved_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = _greenai("run", "--country", "USA", "--output-dir", str(tmp_path), "--", PY, "-c", "")
    assert proc.returncode == 0
    (record,) = tmp_path.glob("*.json")
    assert main(["report", str(record)]) == 0
    assert "CO2e" in capsys.readouterr().out
    html, md, csv = tmp_path / "r.html", tmp_path / "r.md", tmp_path / "again.csv"
    assert (
        main(["report", str(record), "--html", str(html), "--md", str(md), "--csv", str(csv)]) == 0
    )
    assert record.stem in html.read_text()
    assert "| " in md.read_text()
    assert read_emissions_csv(csv)[0]["run_id"] == record.stem
    assert main(["report", str(record), "--md", "-"]) == 0
    assert record.stem[:8] in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["report", str(bad)]) == 1
    assert f"greenai: error: RUN {bad}: " in capsys.readouterr().err


def _job_result() -> Result:
    """Two ranks, one per node, as the gatherer would combine them."""

    def rank(r: int, node: str, energy_j: float) -> Result:
        return Result(
            name="ddp",
            start_unix_s=1_700_000_000.0,
            duration_s=10.0,
            energy_by_device_j={"gpu0": energy_j},
            sources={"gpu0": "nvml-counter"},
            kinds={"gpu0": "gpu"},
            run_id=f"rank-{r}",
            metadata={"distributed": {"rank": r, "world_size": 2, "local_rank": 0, "node": node}},
        )

    return Result(
        name="ddp",
        start_unix_s=1_700_000_000.0,
        duration_s=10.0,
        energy_by_device_j={"node-a/gpu0": 250.0, "node-b/gpu0": 750.0},
        sources={"node-a/gpu0": "nvml-counter", "node-b/gpu0": "nvml-counter"},
        kinds={"node-a/gpu0": "gpu", "node-b/gpu0": "gpu"},
        run_id="job-7",
        ranks=(rank(0, "node-a", 250.0), rank(1, "node-b", 750.0)),
        device_nodes={"node-a/gpu0": "node-a", "node-b/gpu0": "node-b"},
        metadata={
            "launcher": {"launcher": "torchrun", "slurm": {"job_id": "991"}},
            "job": {"world_size": 2, "ranks_reported": [0, 1], "ranks_missing": []},
        },
    )


def test_report_renders_a_job_by_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = write_record(tmp_path / "job-7.json", _job_result())
    assert main(["report", str(record)]) == 0
    assert "by node: node-a 250.0 J, node-b 750.0 J" in capsys.readouterr().out
    assert main(["report", str(record), "--md", "-"]) == 0
    out = capsys.readouterr().out
    assert "| Node | Ranks | Devices | Energy | Share |\n" in out
    assert "| `node-a` | 0 | `gpu0` | 250.0 J | 25.0 % |\n" in out
    assert "| `node-b` | 1 | `gpu0` | 750.0 J | 75.0 % |\n" in out
    assert "| SLURM job id | 991 |" in out
    html = tmp_path / "job.html"
    assert main(["report", str(record), "--html", str(html)]) == 0
    page = html.read_text(encoding="utf-8")
    assert '<table id="by-node">' in page
    assert "Job: 2 ranks on 2 nodes" in page


def test_devices_says_what_is_metered_and_why_not(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "cpu0" in out
    if not Path("/dev/nvidiactl").exists():
        assert "no NVIDIA GPUs" in out


def test_history_and_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.sqlite3"
    env = {"GREENAI_HISTORY": str(db)}
    for code in ("", "sum(range(10**6))"):
        assert _greenai("run", "--country", "FRA", "--", PY, "-c", code, env=env).returncode == 0
    assert main(["history", "--db", str(db)]) == 0
    listing = capsys.readouterr().out
    assert listing.count(Path(PY).name) == 2
    assert main(["history", "--db", str(db), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["index"] for r in runs] == [1, 2]
    assert main(["compare", "2", "1", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "energy" in text
    assert "time" in text
    assert main(["compare", "2", "1", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["a"]["run_id"] == runs[1]["run_id"]
    assert main(["compare", "1", "zzz", "--db", str(db)]) == 2
    assert "greenai: error: compare: no run matches 'zzz'" in capsys.readouterr().err


def test_history_formats_each_figure_as_every_other_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 1 mg, 40 mJ, 3 ms run reads as such, not as 0.0g, 0J and $0.00."""
    from greenai.core.units import format_co2_si, format_energy_si, format_usd
    from greenai.report.history import History
    from greenai.tracking.result import Result

    tiny = Result(
        name="tiny",
        start_unix_s=1.7e9,
        duration_s=0.003,
        energy_by_device_j={"gpu0": 0.04},
        sources={"gpu0": "sim"},
        kinds={"gpu0": "gpu"},
        co2_kg=1e-6,
        cost_usd=2e-7,
        run_id="tiny-run",
    )
    db = tmp_path / "h.sqlite3"
    History(db).add(tiny)
    assert main(["history", "--db", str(db)]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert format_energy_si(0.04) == "40 mJ"
    assert "40 mJ" in line
    assert format_co2_si(1e-6) == "1 mg"
    assert "1 mg" in line
    assert "3 ms" in line
    assert "<$0.000001" in line  # not 2.00e-07
    assert format_usd(2e-5) == "$0.0000200"


def test_compare_text_uses_si_figures_never_e_notation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from greenai.report.history import History
    from greenai.tracking.result import Result

    db = tmp_path / "h.sqlite3"
    for run_id, energy_j, co2_kg in (("aaaa", 0.04, 1.2e-8), ("bbbb", 2.5e4, 3e-3)):
        History(db).add(
            Result(
                name=run_id,
                start_unix_s=1.7e9,
                duration_s=0.5,
                energy_by_device_j={"gpu0": energy_j},
                sources={"gpu0": "sim"},
                kinds={"gpu0": "gpu"},
                co2_kg=co2_kg,
                run_id=run_id,
            )
        )
    assert main(["compare", "aaaa", "bbbb", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "40 mJ ->" in text
    assert "25 kJ" in text
    assert "12 ug ->" in text  # 1.2e-8 kg
    assert "3 g" in text
    assert "e-0" not in text
    assert "e+0" not in text
