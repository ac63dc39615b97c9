"""Freeze windows: periods in which an environment takes no deploys.

A window is either weekly ("Fri 16:00 - Mon 08:00 Europe/Berlin") or dated
("2026-12-24 00:00 - 2026-12-27 00:00 UTC"). Times are wall-clock times in the window's
time zone, so "Mon 08:00 Europe/Berlin" stays 08:00 in Berlin across a DST change.
Starts are inclusive and ends exclusive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workers.policy.errors import ConfigError

WEEK = timedelta(weeks=1)
EXAMPLE = "'Fri 16:00 - Mon 08:00 Europe/Berlin'"
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WINDOW = re.compile(r"^\s*(\S+\s+\S+)\s*-\s*(\S+\s+\S+)(?:\s+(\S+))?\s*$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Chained windows (one ending where the next starts) are followed this many times at most, so
# that windows covering the whole week end the search instead of looping forever.
_MAX_CHAIN = 100


@dataclass(frozen=True)
class WeeklyWindow:
    """A window that repeats every week; start and end are offsets from Monday 00:00."""

    text: str
    zone: str
    start: timedelta
    end: timedelta

    def active_until(self, now: datetime) -> datetime | None:
        """Return when the window ends if `now` is inside it, else None."""
        tz = ZoneInfo(self.zone)
        local = now.astimezone(tz).replace(tzinfo=None)
        monday = datetime.combine(local.date() - timedelta(days=local.weekday()), time())
        length = (self.end - self.start) % WEEK
        # The occurrence that contains `now` started this week or the week before, since a
        # window is shorter than a week. Arithmetic is on wall-clock (naive) times on purpose.
        for weeks_back in (0, 1):
            start = monday + self.start - weeks_back * WEEK
            start_at, end_at = start.replace(tzinfo=tz), (start + length).replace(tzinfo=tz)
            if start_at <= now < end_at:
                return end_at
        return None


@dataclass(frozen=True)
class DatedWindow:
    """A one-off window between two calendar times."""

    text: str
    zone: str
    start: datetime
    end: datetime

    def active_until(self, now: datetime) -> datetime | None:
        """Return when the window ends if `now` is inside it, else None."""
        tz = ZoneInfo(self.zone)
        start_at, end_at = self.start.replace(tzinfo=tz), self.end.replace(tzinfo=tz)
        return end_at if start_at <= now < end_at else None


FreezeWindow = WeeklyWindow | DatedWindow


def parse_freeze_window(text: str) -> FreezeWindow:
    """Parse one freeze window, raising ConfigError (line None) with the reason."""
    match = _WINDOW.match(text)
    if not match:
        raise _invalid(text, f"expected '<start> - <end> <time zone>', e.g. {EXAMPLE}")
    start_text, end_text, zone = match.groups()
    if zone is None:
        raise _invalid(text, "missing time zone (add one, e.g. UTC or Europe/Berlin)")
    zone = _zone(text, zone)
    start, end = _point(text, start_text), _point(text, end_text)
    if type(start) is not type(end):
        raise _invalid(text, "start and end must both be weekdays or both be dates")
    if start == end:
        raise _invalid(text, "start and end are the same")
    if isinstance(start, datetime):
        if end < start:
            raise _invalid(text, "it ends before it starts")
        return DatedWindow(text, zone, start, end)
    return WeeklyWindow(text, zone, start, end)


def freeze_until(windows: Iterable[FreezeWindow | str], now: datetime) -> datetime | None:
    """Return when the freeze that holds at `now` ends (in the window's zone), or None.

    Windows that overlap or follow each other without a gap count as one freeze.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    parsed = [parse_freeze_window(w) if isinstance(w, str) else w for w in windows]
    until: datetime | None = None
    moment = now
    for _ in range(_MAX_CHAIN):
        ends = [end for w in parsed if (end := w.active_until(moment)) is not None]
        if not ends:
            break
        until = moment = max(ends)
    return until


def _zone(text: str, name: str) -> str:
    """Return a valid IANA zone name; `utc` in any case means UTC."""
    name = "UTC" if name.upper() in ("UTC", "Z") else name
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid(text, f"unknown time zone {name!r} (use an IANA name such as UTC or Europe/Berlin)") from None
    return name


def _point(text: str, point: str) -> timedelta | datetime:
    """Parse "Fri 16:00" into an offset from Monday 00:00, "2026-12-24 00:00" into a datetime."""
    day, clock = point.split()
    at = _clock(text, clock)
    if _DATE.match(day):
        try:
            return datetime.combine(date.fromisoformat(day), at)
        except ValueError:
            raise _invalid(text, f"bad date {day!r} (use YYYY-MM-DD)") from None
    names = [name for name in _DAYS if name == day.lower() or name[:3] == day.lower()]
    if not names:
        raise _invalid(text, f"unknown day {day!r} (use Mon, Tue, Wed, Thu, Fri, Sat or Sun, or a date YYYY-MM-DD)")
    return timedelta(days=_DAYS.index(names[0]), hours=at.hour, minutes=at.minute)


def _clock(text: str, clock: str) -> time:
    """Parse "HH:MM" (00:00 to 23:59)."""
    match = _TIME.match(clock)
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise _invalid(text, f"bad time {clock!r} (use HH:MM, 00:00 to 23:59)")
    return time(int(match[1]), int(match[2]))


def _invalid(text: str, reason: str) -> ConfigError:
    """Build the ConfigError for one window."""
    return ConfigError(None, f"freeze window {text!r}: {reason}")
