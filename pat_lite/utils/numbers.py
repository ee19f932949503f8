"""Numbers as a reader takes them in: `readable(15651849179.6)` is "1.6 × 10¹⁰", not "15651849179.6"."""

from __future__ import annotations

import math
from typing import Any

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def readable(value: Any, digits: int = 1) -> str:
    """A number for a table: `digits` decimals below 1,000, thousands separators up to a million, then
    "m × 10ⁿ" with one decimal; None and NaN are "–"; anything that is not a number is shown as it is."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    magnitude = abs(value)
    if magnitude >= 1e6:
        exponent = math.floor(math.log10(magnitude))
        mantissa = value / 10**exponent
        if round(abs(mantissa), 1) >= 10:  # 9.96e6 would read "10.0 × 10⁶"
            mantissa, exponent = mantissa / 10, exponent + 1
        return f"{mantissa:.1f} × 10{str(exponent).translate(_SUPERSCRIPT)}"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"
