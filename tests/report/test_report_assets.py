"""The plotly.js the report embeds: the vendored cartesian bundle, intact and of the plotly.js
version the installed plotly package speaks; the full bundle when the file is missing."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re

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


def test_a_missing_vendored_file_falls_back_to_the_full_bundle(monkeypatch):
    from plotly.offline import get_plotlyjs

    monkeypatch.setattr(assets, "VENDORED_PLOTLY", "vendor/not-there.js.gz")
    code = gzip.decompress(base64.b64decode(assets.plotly_js_gzip_base64()))
    assert code == get_plotlyjs().encode("utf-8")
