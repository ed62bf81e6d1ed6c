"""How the report writes numbers for people, and how it puts data into a page safely.

Money is dollars in plain decimals with two significant digits below a dollar
(``$0.00005``, ``$0.0012``), cents above (``$12.35``): never SI prefixes (``50μ``), never
exponents. `script_json` is the one way data from the log enters a ``<script>`` element.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["usd", "pct", "ms", "quality", "script_json", "script_safe", "PLOTLY_USD_TICKFORMAT"]

#: d3-format for dollar axis ticks (with ``tickprefix="$"``): two significant digits in
#: plain decimals, trailing zeros dropped, so a log axis reads $0.00001, $0.0001, ...
PLOTLY_USD_TICKFORMAT = ",.2~r"


def usd(value: Any, *, digits: int = 2) -> str:
    """``value`` dollars for people: ``$0.00005``, ``$0.0012``, ``$0.41``, ``$1,234.50``;
    ``""`` for a missing value (None or NaN)."""
    if value is None:
        return ""
    number = float(value)
    if math.isnan(number):
        return ""
    if math.isinf(number):
        return "-$inf" if number < 0 else "$inf"
    sign = "-" if number < 0 else ""
    number = abs(number)
    if number == 0:
        return "$0"
    if number >= 1:
        return f"{sign}${number:,.2f}"
    # Enough decimals for ``digits`` significant ones, then trailing zeros dropped.
    decimals = max(2, digits - 1 - math.floor(math.log10(number)))
    text = f"{number:.{decimals}f}"
    if float(text) >= 1:  # 0.9996 rounds up to a dollar
        return f"{sign}$1.00"
    text = text.rstrip("0")
    if len(text.split(".")[1]) < 2:
        text = f"{float(text):.2f}"  # $0.5 reads oddly: $0.50
    return f"{sign}${text}"


def pct(value: Any) -> str:
    """A share as a percentage with one decimal (``""`` when missing)."""
    return "" if _missing(value) else f"{float(value):.1%}"


def ms(value: Any) -> str:
    """Milliseconds, rounded, with thousands separators (``""`` when missing)."""
    return "" if _missing(value) else f"{float(value):,.0f}"


def quality(value: Any) -> str:
    """A quality score with three decimals (``""`` when missing)."""
    return "" if _missing(value) else f"{float(value):.3f}"


def script_json(data: Any) -> str:
    """``data`` as JSON that is safe inside ``<script type="application/json">``: ``<``,
    ``>`` and ``&`` become ``\\u`` escapes, so no text from the log (a prompt holding
    ``</script><script>...``) can end the element or open a new one. NaN becomes null."""
    text = json.dumps(_no_nan(data), ensure_ascii=False, separators=(",", ":"), default=str)
    return script_safe(text)


def script_safe(json_text: str) -> str:
    """JSON text made safe inside a ``<script>`` element (see `script_json`); the escapes
    only occur inside JSON strings, where they mean the same characters."""
    return (
        json_text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _no_nan(data: Any) -> Any:
    """``data`` with float NaN and infinities replaced by None (JSON has no NaN)."""
    if isinstance(data, float):
        return None if math.isnan(data) or math.isinf(data) else data
    if isinstance(data, dict):
        return {str(k): _no_nan(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_no_nan(v) for v in data]
    if hasattr(data, "item") and callable(data.item):  # numpy scalars
        return _no_nan(data.item())
    return data
