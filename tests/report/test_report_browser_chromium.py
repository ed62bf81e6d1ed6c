"""The report's interactive parts in headless Chromium (Debian's /usr/bin/chromium, driven by
playwright; no browser download): the item browser's search, category filter and pages, the
pair selector, dollar ticks on the log axes, a non-blank screenshot, and markup from the log
that never runs."""

from __future__ import annotations

import base64
import shutil

import pytest

from aigw_lab.report import write_report

from .conftest import HOSTILE_ANSWER, HOSTILE_CATEGORY, HOSTILE_PROMPT, HOSTILE_TARGET
from .test_report_chromium import _DISTINCT_COLOURS_JS, CHROMIUM, CHROMIUM_ARGS, _is_local

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed"
)
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() or shutil.which("chromium")),
    reason="Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)",
)

_TEXTS_JS = "(selector) => Array.from(document.querySelectorAll(selector), n => n.textContent)"


class _Browser:
    """One headless Chromium page on a report, collecting errors, dialogs and requests."""

    def __init__(self, playwright, path, *, init_script=None, charts="drawn"):
        executable = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium")
        self.browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": 1280, "height": 900})
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        self.page.on(
            "console",
            lambda msg: self.problems.append(msg.text) if msg.type == "error" else None,
        )
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda request: self.requests.append(request.url))
        if init_script:
            self.page.add_init_script(init_script)
        self.page.goto(path.as_uri())
        self.page.wait_for_function(
            f"document.body.getAttribute('data-charts') === '{charts}'", timeout=30_000
        )

    def texts(self, selector: str) -> list[str]:
        return self.page.evaluate(_TEXTS_JS, selector)

    def close(self) -> None:
        self.browser.close()


def test_item_browser_pairs_and_axes_in_chromium(run_db, tmp_path):
    out = write_report(run_db, tmp_path / "report.html")
    with sync_api.sync_playwright() as playwright:
        view = _Browser(playwright, out)
        try:
            page = view.page
            # Pages of 20: the 40 items are two pages.
            assert len(view.texts("#item-list .item")) == 20
            assert view.texts("#item-page") == ["page 1 of 2"]
            page.click("#item-next")
            assert view.texts("#item-page") == ["page 2 of 2"]
            assert len(view.texts("#item-list .item")) == 20
            # Search matches prompts: one arithmetic prompt's words find its item.
            first_id = view.texts("#item-list .item h3")[0].split()[0]
            prompt = page.evaluate(
                "(id) => document.querySelector(`[data-item-id='${id}'] pre.prompt`).textContent",
                first_id,
            )
            words = " ".join(prompt.removeprefix("user: ").split()[:6])
            page.fill("#item-search", words)
            found = page.evaluate(
                "Array.from(document.querySelectorAll('#item-list .item'), n => n.dataset.itemId)"
            )
            assert first_id in found and len(found) < 40
            page.fill("#item-search", "no item says this 0xdeadbeef")
            assert view.texts("#item-list .item") == []
            assert view.texts("#item-count") == ["0 of 40 items shown"]
            page.fill("#item-search", "")
            page.select_option("#item-category", "arithmetic")
            categories = {t.split()[0] for t in view.texts("#item-list .item h3 .note")}
            assert categories == {"arithmetic"}
            # The pair selector: any two targets, both orders.
            options = view.texts("#pair-a option")
            assert len(options) == 4
            page.select_option("#pair-a", index=3)
            page.select_option("#pair-b", index=0)
            detail = view.texts("#pair-detail p")[0]
            assert detail.startswith(f"a = {options[3]}, b = {options[0]}")
            cells = view.texts("#pair-detail td")
            assert cells[0] == "quality"
            # The pair is stored best-first (options[0] as a): shown the other way round,
            # means swap, the difference and interval flip sign, wins and losses swap.
            stored = page.evaluate(
                "JSON.parse(document.getElementById('pairs-data').textContent).pairs"
            )
            pair = next(p for p in stored if (p["a"], p["b"]) == (options[0], options[3]))
            quality = pair["rows"][0]
            assert cells[2:5] == [quality["mean_b"], quality["mean_a"], quality["diff_flipped"]]
            assert cells[5] == quality["ci_flipped"]
            assert cells[6] == f"{quality['losses']} / {quality['ties']} / {quality['wins']}"
            if quality["diff"] not in ("0.000", "-0.000"):
                assert quality["diff_flipped"] == (
                    quality["diff"][1:]
                    if quality["diff"].startswith("-")
                    else "-" + quality["diff"]
                )
            # Log cost axes carry dollar ticks, never SI prefixes.
            ticks = view.texts("#chart-quality-vs-cost .xtick text") + view.texts(
                "#chart-cost .xtick text"
            )
            assert ticks and all(t.startswith("$0.0") for t in ticks), ticks
            assert not any("μ" in t for t in ticks)
            page.select_option("#item-category", "")
            shot = page.screenshot(full_page=True)
            (tmp_path / "report.png").write_bytes(shot)
            colours = page.evaluate(_DISTINCT_COLOURS_JS, base64.b64encode(shot).decode())
        finally:
            view.close()
    assert view.problems == [] and view.dialogs == []
    assert all(_is_local(url) for url in view.requests), view.requests
    assert (tmp_path / "report.png").stat().st_size > 50_000
    assert colours > 10  # a rendered report, not a blank page


def test_markup_from_the_log_stays_text_in_chromium(hostile_db, tmp_path):
    out = write_report(hostile_db, tmp_path / "hostile.html")
    with sync_api.sync_playwright() as playwright:
        view = _Browser(playwright, out)
        try:
            page = view.page
            page.hover("#item-list")  # a mouseover handler in a category would fire now
            pwned = page.evaluate("window.__pwned === undefined ? null : window.__pwned")
            injected = page.evaluate(
                "document.querySelectorAll('img, #item-list b, [onerror], [onmouseover]').length"
            )
            prompts = view.texts("#item-list pre.prompt")
            answers = view.texts("#item-list td.answer pre")
            targets = view.texts("#item-list table.items td:first-child")
            notes = view.texts("#item-list .item h3 .note")
            legend = view.texts("#chart-quality-vs-cost .legendtext")
        finally:
            view.close()
    assert pwned is None and view.dialogs == [] and view.problems == []
    assert injected == 0
    # The texts show as written, characters and all.
    assert f"user: {HOSTILE_PROMPT}" in prompts
    assert HOSTILE_ANSWER in answers
    assert HOSTILE_TARGET in targets
    assert any(HOSTILE_CATEGORY in note for note in notes)
    assert any(HOSTILE_TARGET in text for text in legend), legend


def test_a_browser_without_decompression_keeps_tables_and_items(run_db, tmp_path):
    # An old browser cannot unpack plotly.js: the charts say why, the rest still works.
    out = write_report(run_db, tmp_path / "report.html")
    with sync_api.sync_playwright() as playwright:
        view = _Browser(
            playwright, out, init_script="delete window.DecompressionStream", charts="failed"
        )
        try:
            notes = view.texts("div.chart p.warn")
            items = view.texts("#item-list .item")
            view.page.fill("#item-search", "no item says this 0xdeadbeef")
            after = view.texts("#item-list .item")
            plotly = view.page.evaluate("typeof window.Plotly")
        finally:
            view.close()
    assert notes and all("cannot unpack the charts" in n for n in notes)
    assert len(items) == 20 and after == []
    assert plotly == "undefined" and view.problems == []
