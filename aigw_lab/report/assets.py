"""What every report page carries besides its data: plotly.js (once, compressed), the
stylesheet and the page's own script (item browser, pair selector, chart drawing).

plotly.js is the *cartesian* partial bundle (bar, box, scatter, ...: every trace the report
draws) of the plotly.js version that the plotly package of the ``notebook`` extra ships,
vendored gzipped in ``vendor/`` (see its README) and embedded base64; the page unpacks it
with the browser's ``DecompressionStream``; the report needs no plotly package. That is
about 0.65 MB per file instead of the full bundle's 4.8 MB. Everything else in the page is
plain JavaScript written here: no CDN, no fetch.
"""

from __future__ import annotations

import base64
from importlib import resources

from aigw_lab.errors import AigwError

__all__ = ["plotly_js_gzip_base64", "VENDORED_PLOTLY", "STYLE", "SCRIPT"]

#: The vendored bundle, a file of this package.
VENDORED_PLOTLY = "vendor/plotly-cartesian.min.js.gz"


def plotly_js_gzip_base64() -> str:
    """plotly.js, gzipped and base64-encoded: the vendored cartesian bundle. Its absence is
    a packaging mistake (the wheel left out package data), reported as one `AigwError`
    naming the file; the plotly package is not asked for a bundle (the core has none)."""
    vendored = resources.files("aigw_lab.report").joinpath(VENDORED_PLOTLY)
    try:
        data = vendored.read_bytes()
    except OSError as exc:
        raise AigwError(
            f"this aigw-lab install lacks the report's plotly.js, aigw_lab/report/"
            f"{VENDORED_PLOTLY} ({exc.strerror or type(exc).__name__}): a packaging error, "
            "the package data was left out",
            hint="reinstall aigw-lab from a wheel or source tree that includes "
            "aigw_lab/report/vendor/ (pyproject.toml's package-data lists it)",
        ) from exc
    return base64.b64encode(data).decode("ascii")


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.meta, .note { color: #666; }
.warn { background: #fff7e0; border-left: 4px solid #f0b400; padding: 0.5rem 0.8rem; }
table.table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
table.table th, table.table td { border: 1px solid #ddd; padding: 0.3rem 0.6rem;
                                 text-align: right; vertical-align: top; }
table.table th { background: #f5f5f5; }
table.table td:first-child, table.table th:first-child { text-align: left; }
table.table td.text { text-align: left; }
table.facts th { text-align: left; width: 12rem; }
table.facts td { text-align: left; }
.better { color: #1a7f37; font-weight: 600; }
.worse { color: #b42318; font-weight: 600; }
.chart { min-height: 380px; }
.controls { display: flex; gap: 0.8rem; flex-wrap: wrap; align-items: center; margin: 0.5rem 0; }
.controls input[type=search] { min-width: 22rem; padding: 0.3rem; }
.item { border: 1px solid #ddd; border-radius: 4px; margin: 0.8rem 0; padding: 0.5rem 0.8rem; }
.item h3 { margin: 0.2rem 0; font-size: 1rem; }
.item pre, table.items pre { white-space: pre-wrap; word-break: break-word; margin: 0;
                             font-size: 0.85rem; max-height: 14rem; overflow: auto; }
table.items { width: 100%; }
table.items td.answer, table.items th:last-child { text-align: left; width: 55%; }
#pairs-table td:nth-child(2) { text-align: left; }
.score1 { background: #e7f6ec; } .score0 { background: #fdecea; }
.cut { color: #888; font-style: italic; }
"""

# The page's behaviour. Text from the log only ever reaches the page through textContent
# (never innerHTML), so a prompt or answer holding markup stays text.
SCRIPT = r"""
(function () {
  "use strict";
  function readJson(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }
  function make(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // --- the item browser ----------------------------------------------------------------
  var browser = readJson("items-data");
  if (browser) {
    var PAGE = 20, page = 0, shown = browser.items;
    var search = document.getElementById("item-search");
    var category = document.getElementById("item-category");
    var differ = document.getElementById("item-differ");
    var list = document.getElementById("item-list");
    var count = document.getElementById("item-count");
    var pageLabel = document.getElementById("item-page");
    var seen = {};
    browser.items.forEach(function (item) {
      var text = [item.id, item.category, item.prompt];
      item.cells.forEach(function (cell) { if (cell) text.push(cell.answer, cell.error); });
      item.haystack = text.join("\n").toLowerCase();
      if (!seen[item.category]) {
        seen[item.category] = true;
        var option = make("option", null, item.category);
        option.value = item.category;
        category.appendChild(option);
      }
    });
    function renderItem(item) {
      var box = make("div", "item");
      box.setAttribute("data-item-id", item.id);
      var title = make("h3", null, item.id);
      title.appendChild(make("span", "note", "  " + item.category +
        (item.spread === null ? "" : "  \u00b7  quality spread " + item.spread)));
      box.appendChild(title);
      var prompt = item.prompt !== null ? item.prompt : (item.prompt_note || "(prompt not logged)");
      box.appendChild(make("pre", "prompt", prompt));
      if (item.prompt_cut) {
        box.appendChild(make("div", "cut", "prompt cut to " + browser.text_chars + " characters"));
      }
      var table = make("table", "table items");
      var head = make("tr");
      ["target", "score", "cost", "latency (ms)", "answer"].forEach(function (label) {
        head.appendChild(make("th", null, label));
      });
      table.appendChild(head);
      browser.targets.forEach(function (target, index) {
        var cell = item.cells[index];
        var row = make("tr");
        row.appendChild(make("td", null, target));
        if (!cell) {
          row.appendChild(make("td", null, ""));
          row.appendChild(make("td", null, ""));
          row.appendChild(make("td", null, ""));
          row.appendChild(make("td", "answer", "(not run)"));
        } else {
          var score = make("td", null, cell.score);
          if (cell.score_value === 1) score.className = "score1";
          if (cell.score_value === 0) score.className = "score0";
          row.appendChild(score);
          row.appendChild(make("td", null, cell.cost));
          row.appendChild(make("td", null, cell.latency));
          var answer = make("td", "answer");
          answer.appendChild(make("pre", null, cell.status === "ok" ? cell.answer
            : "(" + cell.status + (cell.error ? ": " + cell.error : "") + ")"));
          if (cell.cut) {
            answer.appendChild(make("div", "cut",
              "cut to " + browser.text_chars + " of " + cell.chars + " characters"));
          }
          row.appendChild(answer);
        }
        table.appendChild(row);
      });
      box.appendChild(table);
      return box;
    }
    function render() {
      var pages = Math.max(1, Math.ceil(shown.length / PAGE));
      page = Math.min(page, pages - 1);
      list.replaceChildren();
      shown.slice(page * PAGE, page * PAGE + PAGE).forEach(function (item) {
        list.appendChild(renderItem(item));
      });
      count.textContent = shown.length + " of " + browser.items.length + " items shown";
      pageLabel.textContent = "page " + (page + 1) + " of " + pages;
    }
    function filter() {
      var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      shown = browser.items.filter(function (item) {
        if (category.value && item.category !== category.value) return false;
        if (differ.checked && !item.differ) return false;
        return words.every(function (word) { return item.haystack.indexOf(word) >= 0; });
      });
      page = 0;
      render();
    }
    search.addEventListener("input", filter);
    category.addEventListener("change", filter);
    differ.addEventListener("change", filter);
    document.getElementById("item-prev").addEventListener("click", function () {
      page = Math.max(0, page - 1); render();
    });
    document.getElementById("item-next").addEventListener("click", function () {
      page = page + 1; render();
    });
    render();
  }

  // --- the pair selector ---------------------------------------------------------------
  var pairs = readJson("pairs-data");
  if (pairs) {
    var pickA = document.getElementById("pair-a"), pickB = document.getElementById("pair-b");
    var out = document.getElementById("pair-detail");
    pairs.targets.forEach(function (target, index) {
      [pickA, pickB].forEach(function (select) {
        var option = make("option", null, target);
        option.value = String(index);
        select.appendChild(option);
      });
    });
    pickB.value = pairs.targets.length > 1 ? "1" : "0";
    function showPair() {
      var a = pairs.targets[+pickA.value], b = pairs.targets[+pickB.value];
      out.replaceChildren();
      var found = pairs.pairs.filter(function (p) {
        return (p.a === a && p.b === b) || (p.a === b && p.b === a);
      })[0];
      if (a === b || !found) {
        out.appendChild(make("p", "note", "Pick two different targets."));
        return;
      }
      var flipped = found.a !== a;
      out.appendChild(make("p", null,
        "a = " + a + ", b = " + b + ": paired on the items both answered."));
      var table = make("table", "table");
      var head = make("tr");
      ["metric", "items", "a", "b", "difference (a - b)", pairs.confidence + " interval",
       "a better / tie / worse"].forEach(function (label) {
        head.appendChild(make("th", null, label));
      });
      table.appendChild(head);
      found.rows.forEach(function (r) {
        var row = make("tr");
        row.appendChild(make("td", null, r.metric));
        row.appendChild(make("td", null, r.items));
        row.appendChild(make("td", null, flipped ? r.mean_b : r.mean_a));
        row.appendChild(make("td", null, flipped ? r.mean_a : r.mean_b));
        row.appendChild(make("td", null, flipped ? r.diff_flipped : r.diff));
        row.appendChild(make("td", null, flipped ? r.ci_flipped : r.ci));
        row.appendChild(make("td", null, flipped ? r.losses + " / " + r.ties + " / " + r.wins
                                                 : r.wins + " / " + r.ties + " / " + r.losses));
        table.appendChild(row);
      });
      out.appendChild(table);
    }
    pickA.addEventListener("change", showPair);
    pickB.addEventListener("change", showPair);
    showPair();
  }

  // --- the charts ----------------------------------------------------------------------
  function unpackPlotly() {
    if (window.Plotly) return Promise.resolve();
    if (typeof DecompressionStream === "undefined") {
      return Promise.reject(new Error("this browser cannot unpack the charts " +
        "(no DecompressionStream): open the report in a current Chrome, Edge, Firefox or Safari"));
    }
    var packed = atob(document.getElementById("plotly-js").textContent.trim());
    var bytes = new Uint8Array(packed.length);
    for (var i = 0; i < packed.length; i++) bytes[i] = packed.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(function (code) {
      var script = document.createElement("script");
      script.textContent = code;
      document.head.appendChild(script);
    });
  }
  var charts = document.querySelectorAll("div.chart[data-figure]");
  if (charts.length) {
    unpackPlotly().then(function () {
      charts.forEach(function (div) {
        var figure = readJson(div.getAttribute("data-figure"));
        window.Plotly.newPlot(div, figure.data, figure.layout,
                              {displaylogo: false, responsive: true});
      });
      document.body.setAttribute("data-charts", "drawn");
    }).catch(function (error) {
      charts.forEach(function (div) { div.replaceChildren(make("p", "warn", String(error))); });
      document.body.setAttribute("data-charts", "failed");
    });
  }
})();
"""
