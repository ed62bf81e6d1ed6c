"""The plotly.js the report embeds: the vendored cartesian bundle, intact and of the plotly.js
version the installed plotly package speaks; its absence one clear packaging error, never a
reach for the plotly package (the core install has none)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import sys

import pytest

from aigw_lab.errors import AigwError
from aigw_lab.report import assets

# The unpacked plotly-cartesian.min.js of npm plotly.js-cartesian-dist-min@4.1.1 (see
# aigw_lab/report/vendor/README.md).
_SHA256 = "79542150855a52c567260e3137095dbe2b744e6d702a5cabe67da246942fba7a"


def test_vendored_bundle_is_intact_and_matches_the_plotly_package():
    from plotly.offline import get_plotlyjs_version

    code = gzip.decompress(base64.b64decode(assets.plotly_js_gzip_base64()))
    assert hashlib.sha256(code).hexdigest() == _SHA256
    version = re.match(rb"/\*\*\n\* plotly\.js \(cartesian - minified\) v([\d.]+)", code)
    # A plotly upgrade needs the bundle of its plotly.js version: re-vendor (README there).
    assert version and version.group(1).decode() == get_plotlyjs_version()
    assert b"window.Plotly = Plotly" in code


def test_a_missing_vendored_file_is_a_packaging_error_that_needs_no_plotly(monkeypatch):
    # Failed before: the page fell back to the plotly package's full bundle, which the core
    # install (plotly in the notebook extra) does not have.
    monkeypatch.setattr(assets, "VENDORED_PLOTLY", "vendor/not-there.js.gz")
    monkeypatch.setitem(sys.modules, "plotly", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "plotly.offline", None)
    with pytest.raises(AigwError) as caught:
        assets.plotly_js_gzip_base64()
    assert "aigw_lab/report/vendor/not-there.js.gz" in caught.value.message
    assert "packaging error" in caught.value.message
    assert "reinstall aigw-lab" in caught.value.hint


def test_a_report_without_its_plotly_js_stops_with_one_cli_line(
    monkeypatch, hostile_db, tmp_path, capsys
):
    from aigw_lab.cli.main import main

    monkeypatch.setattr(assets, "VENDORED_PLOTLY", "vendor/not-there.js.gz")
    out = tmp_path / "report.html"
    code = main(["report", "--db", str(hostile_db), "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and not out.exists()
    assert "Traceback" not in err
    assert "packaging error" in err and "reinstall aigw-lab" in err
