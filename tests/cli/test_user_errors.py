"""A user's mistakes: ``greenai: error: ...`` naming the argument, exit 2 or 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import greenai
from greenai.cli import commands, errors
from greenai.cli.commands import main
from greenai.report.csv_report import EMISSIONS_COLUMNS
from greenai.report.history import History
from greenai.report.records import write_record
from greenai.tracking.result import Result

PY = sys.executable
SECRET = "SECRET_TOKEN_4711"
"""Written into files greenai cannot parse: no error may show it."""


def _result(run_id: str, start_unix_s: float = 1_700_000_000.0) -> Result:
    return Result(
        name="job",
        start_unix_s=start_unix_s,
        duration_s=10.0,
        energy_by_device_j={"gpu0": 100.0},
        sources={"gpu0": "nvml-counter"},
        kinds={"gpu0": "gpu"},
        run_id=run_id,
    )


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return write_record(tmp_path / "run.json", _result("r-1"))


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("greenai: error: "), err
    assert "Traceback" not in err
    assert SECRET not in err
    return err


def test_md_to_a_folder_names_the_option(
    record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert main(["report", str(record), "--md", str(out)]) == 1
    assert f"--md {out}: Is a directory" in _error(capsys)


def test_html_under_a_file_names_the_option(
    record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("")
    html = tmp_path / "afile" / "r.html"
    assert main(["report", str(record), "--html", str(html)]) == 1
    assert f"--html {html}: {tmp_path / 'afile'}: is a file, not a folder" in _error(capsys)


def test_foreign_csv_is_refused_without_its_content(
    record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "foreign.csv"
    foreign.write_text(f"user,{SECRET}\nalice,1\n")
    assert main(["report", str(record), "--csv", str(foreign)]) == 1
    err = _error(capsys)
    assert f"--csv: {foreign} has a header that is not CodeCarbon" in err
    assert foreign.read_text() == f"user,{SECRET}\nalice,1\n"


def test_history_db_that_is_not_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text(f'{{"token": "{SECRET}"}}' * 100)
    assert main(["history", "--db", str(garbage)]) == 1
    assert f"--db: {garbage} is not a usable greenai run history" in _error(capsys)
    assert main(["report", "1", "--db", str(garbage)]) == 1
    assert f"--db: {garbage} is not" in _error(capsys)


def test_demo_device_without_cuda_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        assert main(["demo", "--device", "cuda:999", "--seconds", "1"]) == 2
        assert "--device cuda:999: this machine has" in _error(capsys)
    else:
        assert main(["demo", "--device", "cuda", "--seconds", "1"]) == 2
        assert "--device cuda: CUDA is not available" in _error(capsys)
    assert main(["demo", "--device", "nonsense", "--seconds", "1"]) == 2
    assert "--device nonsense: not a torch device" in _error(capsys)
    assert main(["demo", "--device", "meta", "--seconds", "1"]) == 2
    assert "--device meta: the demo trains on cpu or cuda" in _error(capsys)


def test_missing_and_unreadable_run_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.json"
    assert main(["report", str(missing)]) == 2
    assert f"RUN {missing}: no such file" in _error(capsys)
    folder = tmp_path / "folder.json"
    folder.mkdir()
    assert main(["report", str(folder)]) == 1
    assert f"RUN {folder}: Is a directory" in _error(capsys)
    not_json = tmp_path / "notes.json"
    not_json.write_text(f"{SECRET}\n")
    assert main(["report", str(not_json)]) == 1
    assert f"RUN {not_json}: {not_json} is not a greenai run record: not JSON" in _error(capsys)


def test_a_greenai_error_names_no_option_when_no_path_matches(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: object) -> int:
        raise greenai.core.errors.ReportError("the history is too new")

    monkeypatch.setattr(commands, "_history", broken)
    assert main(["history"]) == 1
    assert _error(capsys) == "greenai: error: the history is too new\n"


def test_a_greenai_bug_still_shows_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def buggy(args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(commands, "_history", buggy)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["history"])

    def no_path(args: object) -> int:
        raise OSError(5, "I/O error")  # no filename: not about a user's path

    monkeypatch.setattr(commands, "_history", no_path)
    with pytest.raises(OSError, match="I/O error"):
        main(["history"])


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"greenai {greenai.__version__} (native module ")
    from greenai import _C

    assert ("CUDA " if _C.build_info()["cuda"] else "CPU only, no CUDA") in out


# --------------------------------------------------------------------- --output-dir
def _marker_command(tmp_path: Path) -> list[str]:
    """A command that leaves a file behind, to prove it never ran."""
    marker = tmp_path / "ran"
    return ["--", PY, "-c", f"open({str(marker)!r}, 'w').close()"]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("afile", "is a file, not a folder"),
        ("afile/sub", "cannot be created: {tmp}/afile is a file, not a folder"),
        ("csvdir", "csvdir/emissions.csv is not a CodeCarbon emissions CSV"),
    ],
)
def test_bad_output_dir_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, message: str
) -> None:
    (tmp_path / "afile").write_text("")
    (tmp_path / "csvdir").mkdir()
    (tmp_path / "csvdir" / "emissions.csv").write_text(f"{SECRET},b\n")
    out = tmp_path / where
    assert main(["run", "--output-dir", str(out), *_marker_command(tmp_path)]) == 2
    err = _error(capsys)
    assert f"--output-dir {out}" in err or f"--output-dir: {out}" in err
    assert message.format(tmp=tmp_path) in err
    assert not (tmp_path / "ran").exists()


def test_read_only_output_dir_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(  # root may write anywhere: stand in for a read-only folder
        errors.os, "access", lambda p, mode: Path(p) != out and real_access(p, mode)
    )
    assert main(["run", "--output-dir", str(out), *_marker_command(tmp_path)]) == 2
    assert f"--output-dir {out}: is not writable" in _error(capsys)
    assert main(["run", "--output-dir", str(out / "new"), *_marker_command(tmp_path)]) == 2
    assert f"cannot be created: {out} is not writable" in _error(capsys)
    assert not (tmp_path / "ran").exists()


def test_existing_codecarbon_csv_and_new_folder_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "emissions.csv").write_text(",".join(reversed(EMISSIONS_COLUMNS)) + "\n")
    errors.check_output_dir(tmp_path)
    errors.check_output_dir(tmp_path / "new" / "deeper")


# --------------------------------------------------------------------- where a run went
def test_run_says_where_it_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "h.sqlite3"
    monkeypatch.setenv("GREENAI_HISTORY", str(db))
    out = tmp_path / "out"
    assert main(["run", "--no-live", "--output-dir", str(out), "--", PY, "-c", ""]) == 0
    err = capsys.readouterr().err
    (run,) = History(db).runs()
    assert f"greenai: run {run.run_id} saved:\n" in err
    assert f"  record     {out / (run.run_id + '.json')}\n" in err
    assert f"  emissions  {out / 'emissions.csv'}\n" in err
    assert f"  history    {db} (greenai report {run.run_id[:8]}, greenai history)\n" in err

    monkeypatch.setenv("GREENAI_HISTORY", "off")
    assert main(["run", "--no-live", "--", PY, "-c", ""]) == 0
    assert "saved" not in capsys.readouterr().err


# --------------------------------------------------------------------- report by history ref
def test_report_takes_a_history_index_id_or_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "h.sqlite3"
    history = History(db)
    history.add(_result("aaaa-older", 1_700_000_000.0))
    history.add(_result("bbbb-newer", 1_700_000_100.0))
    for ref, run_id in (("1", "bbbb-newer"), ("2", "aaaa-older"), ("aaaa-older", "aaaa-older")):
        assert main(["report", ref, "--db", str(db), "--md", "-"]) == 0
        assert run_id[:8] in capsys.readouterr().out, ref
    assert main(["report", "bbbb", "--db", str(db)]) == 0
    assert "job:" in capsys.readouterr().out
    assert main(["report", "7", "--db", str(db)]) == 2
    assert "RUN 7: no such file; no run matches '7'" in _error(capsys)
    assert main(["report", "zzz", "--db", str(db)]) == 2
    assert "(2 runs; an index must be 1 to 2)" in _error(capsys)
    missing = tmp_path / "none.sqlite3"
    assert main(["report", "1", "--db", str(missing)]) == 2
    assert f"RUN 1: no such file, and no run history at {missing}" in _error(capsys)
    assert not missing.exists()  # looking did not create an empty history


# --------------------------------------------------------------------- through a real process
@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["report", "{tmp}/nope.json"], 2, "RUN {tmp}/nope.json: no such file"),
        (["report", "{record}", "--md", "{tmp}"], 1, "--md {tmp}: Is a directory"),
        (["history", "--db", "{tmp}/garbage.json"], 1, "is not a usable greenai run history"),
        (["run", "--output-dir", "{record}", "--", "true"], 2, "is a file, not a folder"),
        (["nope"], 2, "invalid choice"),
    ],
)
def test_python_m_greenai_errors_exit_cleanly(
    tmp_path: Path, record: Path, argv: list[str], status: int, message: str
) -> None:
    (tmp_path / "garbage.json").write_text(SECRET * 100)

    def fill(text: str) -> str:
        return text.format(tmp=tmp_path, record=record)

    proc = subprocess.run(
        [PY, "-m", "greenai", *map(fill, argv)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "GREENAI_HISTORY": str(tmp_path / "h.sqlite3")},
    )
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr
    assert SECRET not in proc.stderr
    assert "greenai: error: " in proc.stderr
    assert fill(message) in proc.stderr


def test_python_m_greenai_version() -> None:
    proc = subprocess.run(
        [PY, "-m", "greenai", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"greenai {greenai.__version__} (native module ")
    assert proc.stderr == ""
