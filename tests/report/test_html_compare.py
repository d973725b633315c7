"""Two runs on one page (``greenai compare A B --html``): the comparison table's figures, both
runs' columns with their charts, escaping, and a self-contained page (CSP, no outside URL).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from html_pages import EVIL, bare, long_run, parse, texts_of

from greenai.core.units import format_co2_g, format_energy_j, format_usd
from greenai.report.comparison import compare_results
from greenai.report.html_compare import render_compare_html, write_compare_html
from greenai.tracking.result import PowerTimeline, Result

_CSP = (
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
    "style-src 'unsafe-inline'\">"
)


def _rows(page: str) -> dict[str, list[str]]:
    table = page.split('id="comparison"')[1].split("</table>", maxsplit=1)[0]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]:
        cells = [" ".join(parse(c).text) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        rows[cells[0]] = cells[1:]
    return rows


def test_compare_page_has_both_runs_and_the_table(trained: Result) -> None:
    b = long_run()
    page = render_compare_html(compare_results(trained, b))
    assert page.count(_CSP) == 1
    assert not re.search(r"https?:", page)
    assert "<script" not in page.lower()
    rows = _rows(page)
    assert rows["Energy"] == [
        format_energy_j(trained.energy_j),
        format_energy_j(b.energy_j),
        "+" + format_energy_j(b.energy_j - trained.energy_j),
        f"{(b.energy_j - trained.energy_j) / trained.energy_j:+.1%}",
    ]
    assert rows["CO2e"] == [format_co2_g(trained.co2_kg), "not accounted", "n/a", "n/a"]
    assert rows["Cost"][0] == format_usd(trained.cost_usd)
    assert rows["Time"][1] == "28,799.0 s"
    assert rows["Time"][3] == f"{(b.duration_s - trained.duration_s) / trained.duration_s:+.1%}"
    for label, result in (("a", trained), ("b", b)):
        column = texts_of(page, f"run-{label}")
        assert result.name in column
        assert str(result.run_id) in column
        assert format_energy_j(result.energy_j) in column
        for chart in ("timeline-chart", "energy-chart"):
            assert f'<svg id="{label}-{chart}"' in page
    assert 'class="envelope"' in page.split('id="run-b"')[1]  # b is a long, bucketed run
    assert 'class="envelope"' not in page.split('id="run-b"')[0]
    assert page.index('id="run-a"') < page.index('id="run-b"')
    assert '<div class="pair">' in page


def test_a_saving_reads_negative_and_unknowns_read_so() -> None:
    a = bare(energy_by_device_j={"gpu0": 1000.0}, cost_usd=0.50, co2_kg=0.002)
    b = bare(energy_by_device_j={"gpu0": 750.0}, cost_usd=0.25, co2_kg=0.0)
    rows = _rows(render_compare_html(compare_results(a, b)))
    assert rows["Energy"] == ["1,000.0 J", "750.0 J", "-250.0 J", "-25.0%"]
    assert rows["Cost"] == ["$0.500", "$0.250", "-$0.250", "-50.0%"]
    assert rows["CO2e"][1:] == ["0 g CO2e", "-2.00 g CO2e", "-100.0%"]
    from_zero = _rows(render_compare_html(compare_results(b, a)))
    assert from_zero["CO2e"][3] == "from 0"


def test_user_strings_are_escaped_and_runs_without_samples_say_so() -> None:
    evil = bare(name=EVIL, run_id=EVIL)
    other = bare(
        name="ok",
        energy_by_device_j={EVIL: 10.0},
        sources={EVIL: "sim"},
        kinds={EVIL: "gpu"},
        timeline=PowerTimeline([0.0, 1.0], {EVIL: [1.0, 2.0]}),
    )
    page = render_compare_html(compare_results(evil, other))
    assert "<script" not in page.lower()
    assert f"greenai comparison: {EVIL}".replace("<", "&lt;").replace(">", "&gt;") in page
    assert "No power samples were recorded." in texts_of(page, "run-a")
    assert 'id="a-timeline-chart"' not in page
    assert 'id="b-energy-chart"' in page


def test_write_is_atomic_and_complete(tmp_path: Path, trained: Result) -> None:
    out = write_compare_html(tmp_path / "sub" / "cmp.html", compare_results(trained, trained))
    text = out.read_text(encoding="utf-8")
    assert text.endswith("</html>\n")
    assert [p.name for p in out.parent.iterdir()] == ["cmp.html"]  # no temporary file left
    # The same run twice: no difference anywhere.
    assert _rows(text)["Energy"][2:] == [format_energy_j(0.0), "+0.0%"]


def test_partial_run_is_flagged_in_its_column(trained: Result) -> None:
    lossy = dataclasses.replace(trained, partial=True, partial_reasons=("gpu1 lost",))
    page = render_compare_html(compare_results(trained, lossy))
    assert "PARTIAL" in texts_of(page, "run-b")
    assert "PARTIAL" not in texts_of(page, "run-a")
