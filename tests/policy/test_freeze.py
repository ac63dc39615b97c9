"""Freeze windows: parsing, and when a freeze ends (across DST and week wraps)."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from workers.policy.errors import ConfigError
from workers.policy.freeze import DatedWindow, WeeklyWindow, freeze_until, parse_freeze_window

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
WEEKEND_BERLIN = "Fri 16:00 - Mon 08:00 Europe/Berlin"


def utc(text):
    """Parse an ISO time as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "kind", "zone"),
    [
        (WEEKEND_BERLIN, WeeklyWindow, "Europe/Berlin"),
        ("Mon 00:00 - Mon 06:00 UTC", WeeklyWindow, "UTC"),
        ("friday 16:00 - monday 8:00 utc", WeeklyWindow, "UTC"),
        ("Fri 16:00-Mon 08:00 UTC", WeeklyWindow, "UTC"),
        ("2026-12-24 00:00 - 2026-12-27 00:00 UTC", DatedWindow, "UTC"),
    ],
    ids=["weekend", "single-day", "full-names-any-case", "no-spaces", "dates"],
)
def test_parse_valid_windows(text, kind, zone):
    """Weekly and dated windows parse, with their zone."""
    window = parse_freeze_window(text)
    assert isinstance(window, kind) and window.zone == zone and window.text == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Fri 16:00 Mon 08:00 UTC", "expected '<start> - <end> <time zone>'"),
        ("Fri 16:00 - Mon 08:00", "missing time zone"),
        ("Fri 16:00 - Mon 08:00 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("Fry 16:00 - Mon 08:00 UTC", "unknown day 'Fry'"),
        ("Fri 25:00 - Mon 08:00 UTC", "bad time '25:00'"),
        ("Fri 16:60 - Mon 08:00 UTC", "bad time '16:60'"),
        ("2026-02-30 00:00 - 2026-03-01 00:00 UTC", "bad date '2026-02-30'"),
        ("Fri 16:00 - 2026-12-27 00:00 UTC", "both be weekdays or both be dates"),
        ("Mon 08:00 - Mon 08:00 UTC", "start and end are the same"),
        ("2026-12-27 00:00 - 2026-12-24 00:00 UTC", "ends before it starts"),
        ("", "expected"),
    ],
    ids=["no-dash", "no-zone", "bad-zone", "bad-day", "bad-hour", "bad-minute", "bad-date", "mixed", "empty-window", "reversed", "empty"],
)
def test_invalid_windows_raise_config_error(text, reason):
    """Invalid window text is a ConfigError whose reason names the problem."""
    with pytest.raises(ConfigError) as caught:
        parse_freeze_window(text)
    assert reason in caught.value.reason and caught.value.line is None


FREEZE_CASES = [
    # Berlin weekend freeze around the start of summer time (Sun 29 March 2026, 02:00 -> 03:00).
    pytest.param([WEEKEND_BERLIN], "2026-03-27T14:59", None, id="dst-spring-before-start"),
    pytest.param([WEEKEND_BERLIN], "2026-03-27T15:00", "2026-03-30T06:00", id="dst-spring-start-inclusive"),
    pytest.param([WEEKEND_BERLIN], "2026-03-29T01:30", "2026-03-30T06:00", id="dst-spring-during-change"),
    pytest.param([WEEKEND_BERLIN], "2026-03-30T05:59", "2026-03-30T06:00", id="dst-spring-ends-0800-cest"),
    pytest.param([WEEKEND_BERLIN], "2026-03-30T06:00", None, id="dst-spring-end-exclusive"),
    # ... and around the end of summer time (Sun 25 October 2026, 03:00 -> 02:00).
    pytest.param([WEEKEND_BERLIN], "2026-10-23T14:00", "2026-10-26T07:00", id="dst-autumn-starts-1600-cest"),
    pytest.param([WEEKEND_BERLIN], "2026-10-23T13:59", None, id="dst-autumn-before-start"),
    pytest.param([WEEKEND_BERLIN], "2026-10-26T06:59", "2026-10-26T07:00", id="dst-autumn-ends-0800-cet"),
    # Week wrap in UTC.
    pytest.param(["Fri 16:00 - Mon 08:00 UTC"], "2026-06-14T12:00", "2026-06-15T08:00", id="wrap-sunday"),
    pytest.param(["Fri 16:00 - Mon 08:00 UTC"], "2026-06-15T07:00", "2026-06-15T08:00", id="wrap-monday-morning"),
    pytest.param(["Fri 16:00 - Mon 08:00 UTC"], "2026-06-17T12:00", None, id="wrap-midweek-open"),
    pytest.param(["Mon 00:00 - Mon 06:00 UTC"], "2026-06-15T03:00", "2026-06-15T06:00", id="single-day-inside"),
    pytest.param(["Mon 00:00 - Mon 06:00 UTC"], "2026-06-16T03:00", None, id="single-day-other-day"),
    pytest.param(["Mon 06:00 - Mon 00:00 UTC"], "2026-06-17T12:00", "2026-06-22T00:00", id="almost-whole-week"),
    pytest.param(["2026-12-24 00:00 - 2026-12-27 00:00 UTC"], "2026-12-25T10:00", "2026-12-27T00:00", id="dated-inside"),
    pytest.param(["2026-12-24 00:00 - 2026-12-27 00:00 UTC"], "2027-12-25T10:00", None, id="dated-not-yearly"),
    pytest.param(
        ["Fri 16:00 - Sat 00:00 UTC", "Sat 00:00 - Mon 08:00 UTC"], "2026-06-12T17:00", "2026-06-15T08:00", id="chained-windows"
    ),
    pytest.param(
        ["Fri 16:00 - Mon 08:00 UTC", "Sat 00:00 - Sat 06:00 UTC"], "2026-06-13T03:00", "2026-06-15T08:00", id="overlap-latest-end"
    ),
    pytest.param([], "2026-06-13T03:00", None, id="no-windows"),
]


@pytest.mark.parametrize(("windows", "now", "until"), FREEZE_CASES)
def test_freeze_until(windows, now, until):
    """A freeze holds from its start (inclusive) to its end (exclusive), in wall-clock time."""
    got = freeze_until(windows, utc(now))
    assert (got.astimezone(UTC) if got else None) == (utc(until) if until else None)


def test_freeze_end_is_in_the_window_zone():
    """The end is given in the window's zone, so messages can show local time."""
    got = freeze_until([WEEKEND_BERLIN], utc("2026-03-28T12:00"))
    assert got == datetime(2026, 3, 30, 8, 0, tzinfo=BERLIN)
    assert got.tzname() == "CEST"


def test_freeze_covering_all_time_ends_the_search():
    """Windows that leave no gap do not loop forever; some future end is returned."""
    windows = ["Mon 00:00 - Thu 00:00 UTC", "Thu 00:00 - Mon 00:00 UTC"]
    now = utc("2026-06-17T12:00")
    assert freeze_until(windows, now) > now + timedelta(weeks=4)


def test_naive_now_is_refused():
    """A naive time would be read in an unknown zone, so it is an error."""
    with pytest.raises(ValueError):
        freeze_until([WEEKEND_BERLIN], datetime(2026, 3, 28, 12, 0))
