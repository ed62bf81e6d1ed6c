"""The HTML report in a real browser: headless Chromium opens it from file://, every chart
renders, nothing errors, and no request leaves the machine.

Needs Debian's Chromium at /usr/bin/chromium (``apt-get install -y chromium``) and the
``playwright`` Python package; playwright's own browser download is not used.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from aigw_lab.analysis import errors_by_target, target_summary
from aigw_lab.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
# Offline and quiet: no GPU, no QUIC, no background fetches, updates or sync.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Schemes and hosts a page may load from: the file itself, inline data, loopback.
_LOCAL_SCHEMES = {"file", "data", "blob", "about"}
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed"
)
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() or shutil.which("chromium")),
    reason="Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)",
)

# Counts a chart's rendered SVG elements: the plotly surface, markers, bars, boxes, lines.
_COUNT_JS = """(id) => {
    const div = document.getElementById(id);
    const n = (selector) => div.querySelectorAll(selector).length;
    return {
        svg: n('.main-svg'),
        markers: n('.scatterlayer .trace .points path'),
        errorbars: n('.errorbar'),
        lines: n('.scatterlayer .js-line'),
        scatterTraces: n('.scatterlayer .trace'),
        bars: n('.barlayer .point'),
        boxes: n('.boxlayer .trace'),
    };
}"""

# Decodes a PNG in the page and counts its distinct colours over a sample of pixels.
_DISTINCT_COLOURS_JS = """async (b64) => {
    const image = new Image();
    image.src = 'data:image/png;base64,' + b64;
    await image.decode();
    const canvas = document.createElement('canvas');
    canvas.width = image.width; canvas.height = image.height;
    const context = canvas.getContext('2d');
    context.drawImage(image, 0, 0);
    const pixels = context.getImageData(0, 0, image.width, image.height).data;
    const seen = new Set();
    for (let i = 0; i < pixels.length; i += 4 * 97) {
        seen.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
    }
    return seen.size;
}"""


def _is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in _LOCAL_SCHEMES or parsed.hostname in _LOOPBACK_HOSTS


def test_report_renders_in_headless_chromium(report_db, tmp_path):
    out = write_report(report_db, tmp_path / "report.html")
    summary = target_summary(report_db, experiment_id="latest")
    errors = errors_by_target(report_db, experiment_id="latest")
    targets = len(summary)

    executable = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            requests: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console: {msg.text}") if msg.type == "error" else None
                ),
            )
            page.on("request", lambda request: requests.append(request.url))
            page.goto(out.as_uri())
            page.wait_for_function(
                "document.body.getAttribute('data-charts') === 'drawn'", timeout=30_000
            )
            counts = {
                chart: page.evaluate(_COUNT_JS, chart)
                for chart in (
                    "chart-quality-vs-cost",
                    "chart-cost",
                    "chart-latency",
                    "chart-errors",
                    "chart-cost-over-time",
                )
            }
            shot = page.screenshot(full_page=True)
            colours = page.evaluate(_DISTINCT_COLOURS_JS, base64.b64encode(shot).decode())
        finally:
            browser.close()

    assert problems == []
    assert requests and all(_is_local(url) for url in requests), requests
    for chart, found in counts.items():
        assert found["svg"] >= 1, chart
    quality = counts["chart-quality-vs-cost"]
    assert quality["markers"] >= targets and quality["errorbars"] >= targets
    assert quality["lines"] >= 1  # the Pareto frontier
    assert counts["chart-cost"]["boxes"] >= targets
    assert counts["chart-latency"]["boxes"] >= targets
    assert counts["chart-errors"]["bars"] >= errors["target"].nunique()
    assert counts["chart-cost-over-time"]["scatterTraces"] >= targets
    assert colours > 10  # a rendered report, not a blank (single-colour) page
