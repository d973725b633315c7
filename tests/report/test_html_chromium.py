"""The HTML reports (a run's page, a long bucketed run's, two runs compared) rendered in
headless Chromium: they draw, and ask the network for nothing.
Skipped where chromium is not installed (CI installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from html_pages import long_run

from greenai.report.comparison import compare_results
from greenai.report.html import write_html
from greenai.report.html_compare import write_compare_html
from greenai.tracking.result import Result

# ------------------------------------------------------------- headless Chromium
CHROMIUM = shutil.which("chromium")
# CI installs chromium and sets this, so a missing browser fails there instead of skipping.
if CHROMIUM is None and os.environ.get("GREENAI_REQUIRE_CHROMIUM") == "1":
    raise RuntimeError("GREENAI_REQUIRE_CHROMIUM=1 but no chromium on PATH")
# Chromium's own background services, which it contacts whatever the page holds.
_BROWSER_HOSTS = re.compile(r"^https?://[\w.-]*\.(google\.com|googleapis\.com|gvt1\.com)[/:]")


def _png_pixels(data: bytes) -> tuple[int, int, npt.NDArray[np.uint8]]:
    """A tiny PNG decoder (8-bit RGB/RGBA, not interlaced): width, height, RGB pixels (h, w, 3).

    Checks every chunk's CRC, so a truncated or corrupt screenshot fails here.
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), (depth, interlace)
    assert colour in (2, 6), colour
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        filter_type, line = int(raw[y, 0]), raw[y, 1:]
        if filter_type == 0:
            row = line.copy()
        elif filter_type == 1:  # Sub: a running sum along each channel
            row = (
                (np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint32) % 256)
                .astype(np.uint8)
                .reshape(stride)
            )
        elif filter_type == 2:  # Up
            row = line + prev
        else:  # Average and Paeth depend on the decoded left neighbour: byte by byte
            cur, up = bytearray(line.tobytes()), prev.tobytes()
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = up[i]
                if filter_type == 3:
                    cur[i] = (cur[i] + (a + b) // 2) & 0xFF
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    cur[i] = (
                        cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)
                    ) & 0xFF
            row = np.frombuffer(bytes(cur), dtype=np.uint8)
        out[y] = row
        prev = row
    return width, height, out.reshape(height, width, bpp)[:, :, :3]


@pytest.fixture
def browser_profile(tmp_path: Path) -> Path:
    profile = tmp_path / "profile"
    profile.mkdir()
    return profile


def _chromium(html_path: Path, png_path: Path, profile: Path) -> tuple[str, str]:
    """Render a page headless: screenshot to ``png_path``; returns (DOM after rendering, log)."""
    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--vmodule=network_delegate=1",  # logs every URL request, page or browser
            f"--screenshot={png_path}",
            "--window-size=1280,2000",
            "--dump-dom",
            html_path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout, proc.stderr


def _page_requests(log: str) -> list[str]:
    """URLs the page asked for, and resources the page's CSP blocked."""
    urls = re.findall(r"NotifyBeforeURLRequest: (\S+)", log)
    asked = [u for u in urls if not _BROWSER_HOSTS.match(u) and not u.startswith("file:")]
    blocked = re.findall(r"[^\n]*Content Security Policy[^\n]*", log)
    return asked + blocked


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it)")
def test_renders_in_headless_chromium(
    tmp_path: Path, trained: Result, browser_profile: Path
) -> None:
    html_path = write_html(tmp_path / "report.html", trained)
    png_path = tmp_path / "report.png"
    dom, log = _chromium(html_path, png_path, browser_profile)

    data = png_path.read_bytes()
    width, height, pixels = _png_pixels(data)
    assert (width, height) == (1280, 2000)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, "the screenshot is (nearly) blank"
    # Pixels of the first series' colour (#0072B2): the SVG chart's lines were drawn.
    line_pixels = np.all(pixels == np.array([0x00, 0x72, 0xB2], dtype=np.uint8), axis=2)
    assert line_pixels.sum() > 200

    assert "<title>greenai report: finetune</title>" in dom
    for element_id in ("summary", "devices", "timeline-chart", "windows-chart", "accounting"):
        assert f'id="{element_id}"' in dom, element_id
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert _page_requests(log) == []


def _colour_pixels(pixels: npt.NDArray[np.uint8], colour: str) -> int:
    """How many pixels have exactly this ``#rrggbb`` colour."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)
    return int(np.all(pixels == rgb, axis=2).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it)")
def test_long_bucketed_run_draws_its_envelope_and_energy(
    tmp_path: Path, browser_profile: Path
) -> None:
    html_path = write_html(tmp_path / "long.html", long_run())
    png_path = tmp_path / "long.png"
    dom, log = _chromium(html_path, png_path, browser_profile)
    _, _, pixels = _png_pixels(png_path.read_bytes())
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot is (nearly) blank"
    # The envelope: #0072B2 at 20 % over the plot's #fbfcfd, blended by the browser.
    band = np.array([0xFB, 0xFC, 0xFD]) * 0.8 + np.array([0x00, 0x72, 0xB2]) * 0.2
    near_band = np.all(np.abs(pixels.astype(float) - band) <= 3, axis=2)
    assert near_band.sum() > 2000, "no translucent band was drawn"
    assert _colour_pixels(pixels, "#0072B2") > 500  # gpu0's lines (power and energy), steps
    assert _colour_pixels(pixels, "#1D2329") > 100  # the total's dashed line
    for element_id in ("timeline-chart", "energy-chart", "steps-chart"):
        assert f'id="{element_id}"' in dom, element_id
    assert _page_requests(log) == []


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it)")
def test_compare_page_renders_both_runs(
    tmp_path: Path, trained: Result, browser_profile: Path
) -> None:
    html_path = write_compare_html(tmp_path / "cmp.html", compare_results(trained, long_run()))
    png_path = tmp_path / "cmp.png"
    dom, log = _chromium(html_path, png_path, browser_profile)
    width, height, pixels = _png_pixels(png_path.read_bytes())
    assert (width, height) == (1280, 2000)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot is (nearly) blank"
    # Side by side: gpu0's colour is drawn in both halves of the page.
    left, right = pixels[:, : width // 2], pixels[:, width // 2 :]
    assert _colour_pixels(left, "#0072B2") > 200
    assert _colour_pixels(right, "#0072B2") > 200
    for element_id in ("comparison", "a-timeline-chart", "b-timeline-chart", "b-energy-chart"):
        assert f'id="{element_id}"' in dom, element_id
    assert _page_requests(log) == []


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it)")
def test_the_network_check_does_see_a_request(tmp_path: Path, browser_profile: Path) -> None:
    """Guard for the test above: a page that loads an outside image is caught."""
    html_path = tmp_path / "leaky.html"
    html_path.write_text('<!DOCTYPE html><title>x</title><img src="https://example.invalid/a.png">')
    _, log = _chromium(html_path, tmp_path / "leaky.png", browser_profile)
    assert any("example.invalid" in r for r in _page_requests(log))
