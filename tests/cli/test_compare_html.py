"""``greenai compare A B --html OUT.html``: the page from the history's full records, the text
output kept, and a bad OUT as ``greenai: error: ...`` with exit 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from greenai.cli.commands import main
from greenai.report.history import History
from greenai.report.records import write_record
from greenai.tracking.result import PowerTimeline, Result


def _run(run_id: str, start_unix_s: float, energy_j: float) -> Result:
    return Result(
        name=f"job-{run_id}",
        start_unix_s=start_unix_s,
        duration_s=4.0,
        energy_by_device_j={"gpu0": energy_j},
        sources={"gpu0": "nvml-counter"},
        kinds={"gpu0": "gpu"},
        run_id=run_id,
        timeline=PowerTimeline([0.0, 2.0, 4.0], {"gpu0": [energy_j / 4] * 3}),
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A history of two runs (``aaaa...`` older, ``bbbb...`` newer), each with its record."""
    path = tmp_path / "history.sqlite3"
    history = History(path)
    for run in (_run("aaaa1111", 1_700_000_000.0, 400.0), _run("bbbb2222", 1_700_000_100.0, 600.0)):
        history.add(run, record=write_record(tmp_path / f"{run.run_id}.json", run))
    return path


def test_compare_html_writes_the_page_and_keeps_the_text(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", "aaaa", "bbbb", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    out = tmp_path / "cmp.html"
    assert main(["compare", "aaaa", "bbbb", "--db", str(db), "--html", str(out)]) == 0
    assert capsys.readouterr().out == text  # the same table on the terminal
    page = out.read_text(encoding="utf-8")
    assert "job-aaaa1111 vs job-bbbb2222" in page
    assert "+200.0 J" in page
    assert "+50.0%" in page
    # The charts come from the full records (the history's summaries have no timeline).
    assert '<svg id="a-timeline-chart"' in page
    assert '<svg id="b-energy-chart"' in page


def test_compare_html_by_index_with_json(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp.html"
    assert main(["compare", "2", "1", "--db", str(db), "--json", "--html", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["a"]["run_id"], data["b"]["run_id"]) == ("aaaa1111", "bbbb2222")
    assert data["energy_j"]["diff"] == 200.0
    assert "<code>aaaa1111</code>" in out.read_text(encoding="utf-8")


def test_compare_html_to_a_folder_is_an_error(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    assert main(["compare", "1", "2", "--db", str(db), "--html", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("greenai: error: ")
    assert f"--html {folder}: Is a directory" in err
    assert "Traceback" not in err
    assert list(folder.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file


def test_compare_html_under_a_file_is_an_error(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "cmp.html"
    assert main(["compare", "1", "2", "--db", str(db), "--html", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"--html {out}: {tmp_path / 'afile'}: is a file, not a folder" in err


def test_compare_html_of_an_unknown_run_is_a_usage_error(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp.html"
    assert main(["compare", "1", "zzz", "--db", str(db), "--html", str(out)]) == 2
    assert "greenai: error: compare: no run matches 'zzz'" in capsys.readouterr().err
    assert not out.exists()
