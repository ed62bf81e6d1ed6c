"""A notebook view in a real JupyterLab, in headless Chromium: 02_compare_providers is opened
in a JupyterLab server on 127.0.0.1, its cells are run from the keyboard, and the
`ComparisonDashboard` must draw its plotly figure inside its widget, with no request leaving
the machine (plotly.js comes from the ``jupyterlab-plotly`` extension the plotly package
installs, not a CDN: the browser resolves no name but loopback's, and the test checks every
request it made).

Needs ``jupyterlab`` in this interpreter, the ``playwright`` package and Debian's Chromium at
/usr/bin/chromium (playwright's own browser download is not used); skipped otherwise.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (pip install jupyterlab)")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed"
)

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "02_compare_providers.ipynb"
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
    # No name resolves but loopback's, so nothing can come from a CDN (page.route would say
    # the same, but intercepting requests stops JupyterLab from starting its kernel).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
# Where a page may load from: inline data, objects it made itself, loopback.
_LOCAL_SCHEMES = {"data", "blob", "about"}
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Bounds, not timings: a server that never comes up or a run that hangs fails, not waits.
SERVER_START_S = 90
RUN_ALL_MS = 300_000
# The dashboard's figure: a plotly plot drawn (its SVG) inside an ipywidgets Output.
_VIEW_FIGURE = ".widget-output .js-plotly-plot .main-svg"

# What the first figure on the page plots: its traces' y values, as text to compare.
_PLOTTED_Y = """(selector) => {
    const plot = document.querySelector(selector).closest('.js-plotly-plot');
    return JSON.stringify(plot.data.map((trace) => Array.from(trace.y || [])));
}"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() or shutil.which("chromium")),
        reason="Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _jupyter_path() -> str:
    """Where JupyterLab looks for prebuilt extensions: this interpreter's prefix and, in a
    virtual environment made with --system-site-packages, the base one (where plotly's and
    ipywidgets' extensions are when they were installed there)."""
    prefixes = dict.fromkeys([sys.prefix, sys.base_prefix])
    return os.pathsep.join(str(Path(p) / "share" / "jupyter") for p in prefixes)


@pytest.fixture
def jupyterlab(tmp_path: Path):
    """A JupyterLab server on 127.0.0.1 serving a folder that holds notebook 02; yields its
    base URL and token. Its config, data and runtime folders are temporary, and it is told
    not to fetch news or check for updates."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_PATH=_jupyter_path(),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        AIGW_LAB_CACHE=str(tmp_path / "cache"),
    )
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--ServerApp.terminals_enabled=False",
        "--ServerApp.allow_root=True",  # CI containers run as root; the server is loopback-only
    ]
    log = (tmp_path / "jupyterlab.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(server, base, token, tmp_path / "jupyterlab.log")
        yield base, token
    finally:
        server.terminate()  # jupyter_server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _wait_until_up(server: subprocess.Popen, base: str, token: str, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyterlab exited with {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/api/status", params={"token": token}).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"jupyterlab did not answer within {SERVER_START_S} s:\n{log.read_text()}")


def _wait_for_connected_kernel(base: str, token: str) -> None:
    """Until the server has a kernel that a browser is connected to and that is idle."""
    import httpx

    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        kernels = httpx.get(f"{base}/api/kernels", params={"token": token}).json()
        if any(k["connections"] > 0 and k["execution_state"] == "idle" for k in kernels):
            return
        time.sleep(0.5)
    pytest.fail(f"no kernel connected and idle within {SERVER_START_S} s")


def test_dashboard_renders_in_jupyterlab(jupyterlab, tmp_path: Path) -> None:
    base, token = jupyterlab
    executable = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium")
    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            # Keys pressed before the page's kernel connection is up run nothing.
            _wait_for_connected_kernel(base, token)
            page.wait_for_selector(
                ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000
            )
            # Run every cell as a user would from the keyboard: Shift+Enter, cell by cell
            # (queued: each waits for the one before).
            page.wait_for_selector(".jp-Spinner", state="detached", timeout=120_000)
            page.locator(".jp-Notebook .jp-Cell").first.click()
            page.keyboard.press("Escape")  # command mode: Shift+Enter runs and moves on
            for _ in range(len(nbformat.read(NOTEBOOK, as_version=4).cells)):
                page.keyboard.press("Shift+Enter")
            try:
                page.wait_for_selector(_VIEW_FIGURE, timeout=RUN_ALL_MS)
            finally:
                page.screenshot(path=str(tmp_path / "jupyterlab.png"), full_page=True)
            page.locator(_VIEW_FIGURE).first.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "jupyterlab.png"))
            drawn = page.evaluate(
                """(selector) => {
                    const svg = document.querySelector(selector);
                    const plot = svg.closest('.js-plotly-plot');
                    return {
                        width: svg.getBoundingClientRect().width,
                        points: plot.querySelectorAll('.scatterlayer .trace .points path').length,
                        table: document.querySelectorAll('.aigw-table').length,
                    };
                }""",
                _VIEW_FIGURE,
            )
            # A filter set in the browser: the kernel redraws and sends the pane's new
            # outputs, which the page must draw in place of the old figure.
            shown_before = page.evaluate(_PLOTTED_Y, _VIEW_FIGURE)
            category = page.locator(".widget-dropdown", has=page.locator("text=category"))
            category.locator("select").select_option(label="(any)")
            page.wait_for_function(
                f"(before) => ({_PLOTTED_Y})({_VIEW_FIGURE!r}) !== before",
                arg=shown_before,
                timeout=120_000,
            )
            page.screenshot(path=str(tmp_path / "jupyterlab-any-category.png"))
        finally:
            browser.close()
    # The quality-vs-cost tab: a plot with a size and one marker per target at least.
    assert drawn["width"] > 100
    assert drawn["points"] >= 4
    assert drawn["table"] >= 1  # the dashboard's summary table, an HTML widget
    outside = [
        url
        for url in requests
        if urlparse(url).scheme not in _LOCAL_SCHEMES
        and urlparse(url).hostname not in _LOOPBACK_HOSTS
    ]
    assert outside == [], f"requests left the machine: {outside}"
