"""The HTML report stands alone: it references nothing outside itself, stays small with
thousands of windows, and is written atomically (html_pages.py builds the results).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from html_pages import EVIL, bare, parse, partial, texts_of, train

from greenai.report.html import render_html, write_html
from greenai.tracking.result import Result

# ------------------------------------------------------------- self-containment
_URL_ATTRS = {"src", "href", "xlink:href", "srcset", "action", "formaction", "poster", "data"}


def _external_references(page: str) -> list[str]:
    """Every attribute or CSS value that would make a browser fetch something."""
    parsed = parse(page)
    found = []
    for tag, attrs in parsed.tags:
        for name, value in attrs.items():
            if name in _URL_ATTRS and value:
                found.append(f"<{tag} {name}={value!r}>")
            if name == "style" and value and re.search(r"url\(|@import", value):
                found.append(f"<{tag} style={value!r}>")
        if tag == "link" or (tag == "script" and "src" in attrs):
            found.append(f"<{tag} {attrs}>")
    for css in parsed.styles:
        found.extend(re.findall(r"url\([^)]*\)|@import[^;]*", css))
    found.extend(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'<]*", page))
    return found


@pytest.mark.parametrize(
    "result_factory",
    [train, partial, bare],
    ids=["trained", "partial", "bare"],
)
def test_page_references_nothing_outside_itself(result_factory: Any) -> None:
    page = render_html(result_factory())
    assert _external_references(page) == []
    assert "http:" not in page
    assert "https:" not in page
    assert "<script" not in page
    assert "default-src 'none'" in page  # and the browser is told not to fetch anyway


def test_job_page_references_nothing_outside_itself(make_job: Callable[..., Result]) -> None:
    page = render_html(make_job(EVIL))
    assert 'id="by-node"' in page
    assert _external_references(page) == []


def test_the_reference_check_does_catch_references() -> None:
    page = (
        '<html><head><link rel="stylesheet" href="https://cdn.example.com/x.css">'
        "<style>body{background:url(//example.com/bg.png)}</style></head>"
        '<body><img src="http://example.com/a.png"></body></html>'
    )
    assert len(_external_references(page)) >= 4


def test_thousands_of_windows_are_listed_up_to_a_limit() -> None:
    windows = tuple(
        bare(name=f"batch {i}", start_unix_s=1_700_000_000.0 + i * 0.01, duration_s=0.01)
        for i in range(700)
    )
    page = render_html(bare(windows=windows))
    notes = texts_of(page, "windows")
    assert "Windows (700)" in notes
    assert "The table lists the first 500 of 700 windows." in notes
    assert "The chart shows the first 120 of 700 windows." in notes
    assert "batch 499" in notes
    assert "batch 500" not in notes
    assert len(page.encode()) < 400_000


# -------------------------------------------------------------------------- write
def test_write_html_is_atomic(tmp_path: Path, trained: Result) -> None:
    target = tmp_path / "report.html"
    target.write_text("old report")
    assert write_html(target, trained) == target
    assert target.read_text(encoding="utf-8") == render_html(trained)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_write_html_leaves_the_old_report_when_it_fails(
    tmp_path: Path, trained: Result, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.html"
    target.write_text("old report")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_html(str(target), trained)
    assert target.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
