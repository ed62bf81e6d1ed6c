"""Property tests of the report's number and data formatting: every dollar amount reads as
plain decimals with two significant digits, and any text survives `script_json` without
being able to close a script element."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from aigw_lab.report.format import script_json, usd

_AMOUNTS = st.floats(min_value=1e-9, max_value=1e7, allow_nan=False, allow_infinity=False)


@settings(max_examples=500, deadline=None)
@given(_AMOUNTS)
def test_usd_is_plain_decimals_close_to_the_value(value):
    text = usd(value)
    assert text.startswith("$") and not any(c in text for c in "eEμ")
    shown = float(text[1:].replace(",", ""))
    if value >= 1:
        assert abs(shown - value) <= 0.005 + 1e-9 * value  # cents
    else:
        # Two significant digits: within half a unit of the second digit.
        unit = 10 ** (math.floor(math.log10(value)) - 1)
        assert abs(shown - value) <= unit / 2 + 1e-15 or shown == 1.0


@settings(max_examples=500, deadline=None)
@given(st.recursive(st.text(), lambda inner: st.lists(inner, max_size=3), max_leaves=8))
def test_script_json_round_trips_and_never_closes_a_script(data):
    text = script_json({"data": data})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"data": data}
