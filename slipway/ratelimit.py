"""Rate strings like '60/minute'."""

from __future__ import annotations

import re

_RATE = re.compile(r"^\s*(\d{1,7})\s*(?:/|\s+per\s+)\s*(second|minute|hour|day)s?\s*$", re.I)


def parse_rate(text: str) -> tuple[int, str] | None:
    """(count, unit) for a valid rate string, else None."""
    m = _RATE.match(text or "")
    if not m or int(m.group(1)) == 0:
        return None
    return int(m.group(1)), m.group(2).lower()
