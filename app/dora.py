"""DORA figures from plain deployment rows: PURE (no database, no Flask, no clock).

The definitions are written down in docs/dora.md; every function here implements one sentence of them.
`summarize()` is given the history it may look at: the deployments created in the period, plus context
rows marked `counted=False` (the last success of each environment before the period, the first one
after it, other deployments of the same commits). A counted deployment belongs to the period in which
it finished (its first success, else its first failure); context rows only tell what came before and after.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

EnvKey = tuple[str, str]  # (repository or service, environment)


@dataclass(frozen=True)
class DeployRow:
    """What DORA needs to know about one deployment."""

    id: int
    owner: str  # repository (owner/name) or service alias
    environment: str
    created_at: datetime
    sha: str | None = None
    version: str | None = None
    deployed_at: datetime | None = None  # its first success
    failed_at: datetime | None = None  # its first failure or error status
    committed_at: datetime | None = None  # the commit time a CI reported with it
    counted: bool = True  # False for context: a row that only tells what came before or after

    @property
    def env(self) -> EnvKey:
        """The environment it belongs to."""
        return (self.owner, self.environment)

    @property
    def at(self) -> datetime | None:
        """When it finished: its first success, else its first failure; None while it runs (or was cancelled)."""
        return self.deployed_at or self.failed_at

    @property
    def identity(self) -> str | None:
        """What was deployed: the commit, else the version."""
        return self.sha or self.version


@dataclass(frozen=True)
class Period:
    """A half-open time range [since, until)."""

    since: datetime
    until: datetime

    def __contains__(self, moment: datetime | None) -> bool:
        return moment is not None and self.since <= moment < self.until

    @property
    def days(self) -> float:
        """Its length in days."""
        return (self.until - self.since).total_seconds() / 86400


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile with linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Count, median and p90 of durations in seconds."""
    return {"count": len(values), "median_seconds": _round(percentile(values, 0.5)),
            "p90_seconds": _round(percentile(values, 0.9))}


def _round(value: float | None) -> float | None:
    """Seconds to the millisecond."""
    return None if value is None else round(value, 3)


# --------------------------------------------------------------------------- history per environment


def by_environment(rows: Iterable[DeployRow]) -> dict[EnvKey, list[DeployRow]]:
    """Rows grouped by environment, each group in creation order (ties by id); of duplicates the first is kept."""
    groups: dict[EnvKey, dict[int, DeployRow]] = defaultdict(dict)
    for row in rows:
        groups[row.env].setdefault(row.id, row)
    return {env: sorted(g.values(), key=lambda r: (r.created_at, r.id)) for env, g in groups.items()}


def successes(history: Sequence[DeployRow]) -> list[DeployRow]:
    """The deployments that succeeded, in the order they went live."""
    return sorted((r for r in history if r.deployed_at), key=lambda r: (r.deployed_at, r.id))


def baseline_id(history: Sequence[DeployRow]) -> int | None:
    """The environment's first success: it brings all earlier history with it, so it is no change."""
    live = successes(history)
    return live[0].id if live else None


def rolled_back(history: Sequence[DeployRow]) -> set[int]:
    """Successes undone by a rollback: the next success put back what ran before them."""
    live = successes(history)
    undone = set()
    for before, row, after in zip(live, live[1:], live[2:]):
        if row.identity and before.identity and row.identity != before.identity == after.identity:
            undone.add(row.id)
    return undone


def first_successes(history: Sequence[DeployRow]) -> set[int]:
    """Each commit's (or version's) first success in the environment; later ones are redeploys."""
    seen: set[str] = set()
    first = set()
    for row in successes(history):
        if row.identity and row.identity not in seen:
            seen.add(row.identity)
            first.add(row.id)
    return first


# --------------------------------------------------------------------------- the four keys


def commit_time(row: DeployRow, first_seen: Mapping[tuple[str, str], datetime]) -> datetime | None:
    """The CI-reported commit time, else the earliest time Slipway knew of the commit."""
    if row.committed_at:
        return row.committed_at
    return first_seen.get((row.owner, row.sha)) if row.sha else None


def lead_times(history: Sequence[DeployRow], period: Period,
               first_seen: Mapping[tuple[str, str], datetime]) -> tuple[list[tuple[DeployRow, float]], dict[str, int]]:
    """(row, seconds from commit to success) of each new change that went live; and what was left out."""
    base, first = baseline_id(history), first_successes(history)
    out: list[tuple[DeployRow, float]] = []
    skipped = {"baseline": 0, "redeploys": 0, "without_commit_time": 0}
    for row in history:
        if not row.counted or row.deployed_at not in period:
            continue
        committed = commit_time(row, first_seen)
        if row.id == base:
            skipped["baseline"] += 1
        elif row.id not in first:
            skipped["redeploys"] += 1
        elif committed is None:
            skipped["without_commit_time"] += 1
        else:  # a CI clock ahead of ours must not make a negative lead time
            out.append((row, max(0.0, (row.deployed_at - committed).total_seconds())))
    return out, skipped


def change_failures(history: Sequence[DeployRow]) -> dict[int, datetime]:
    """Deployment id -> when its failure began: a failed deployment at its failure, a rolled-back one when it went live."""
    undone = rolled_back(history)
    starts = {}
    for row in history:
        if not row.counted:
            continue
        if row.failed_at:
            starts[row.id] = row.failed_at
        elif row.id in undone and row.deployed_at:
            starts[row.id] = row.deployed_at
    return starts


def incidents(history: Sequence[DeployRow]) -> list[tuple[datetime, datetime | None]]:
    """(start, restored) of each outage: from a change failure to the next success; overlapping ones merge."""
    went_live = sorted(r.deployed_at for r in history if r.deployed_at)
    found: list[tuple[datetime, datetime | None]] = []
    for start in sorted(change_failures(history).values()):
        if found and (found[-1][1] is None or start < found[-1][1]):
            continue  # the environment was still down: the same incident
        i = bisect.bisect_right(went_live, start)
        found.append((start, went_live[i] if i < len(went_live) else None))
    return found


# --------------------------------------------------------------------------- the summary


def summarize(rows: Iterable[DeployRow], since: datetime, until: datetime, *,
              first_seen: Mapping[tuple[str, str], datetime] | None = None) -> dict[str, Any]:
    """The four keys over [since, until), and a daily series for a chart."""
    period, rows = Period(since, until), list(rows)
    seen = _first_seen(rows, first_seen or {})
    days = _Days(period)
    totals = {"successful": 0, "finished": 0, "failed": 0, "rolled_back": 0}
    leads: list[float] = []
    restores: list[float | None] = []  # None: not restored yet
    skipped = dict.fromkeys(("baseline", "redeploys", "without_commit_time"), 0)
    for history in by_environment(rows).values():
        _count(history, period, totals, days)
        env_leads, env_skipped = lead_times(history, period, seen)
        for row, seconds in env_leads:
            leads.append(seconds)
            days.add_lead(row.deployed_at, seconds)
        for k, v in env_skipped.items():
            skipped[k] += v
        restores += [(end - start).total_seconds() if end else None
                     for start, end in incidents(history) if start in period]
    return _answer(period, totals, leads, skipped, restores, days)


def _first_seen(rows: list[DeployRow], given: Mapping[tuple[str, str], datetime]) -> dict[tuple[str, str], datetime]:
    """Earliest known time of each (owner, sha): the given times and every time of every row that deployed it."""
    seen = dict(given)
    for row in rows:
        if row.sha:
            key = (row.owner, row.sha)
            # A report may arrive after the fact (created now, deployed earlier): its reported times count too.
            seen[key] = min(t for t in (seen.get(key), row.created_at, row.at) if t is not None)
    return seen


def _count(history: Sequence[DeployRow], period: Period, totals: dict[str, int], days: _Days) -> None:
    """Add the environment's deployments of the period to the totals and the days."""
    undone = rolled_back(history)
    for row in history:
        if not row.counted or row.at not in period:
            continue
        totals["finished"] += 1
        totals["successful"] += bool(row.deployed_at)
        failed, back = bool(row.failed_at), row.id in undone and not row.failed_at
        totals["failed"] += failed
        totals["rolled_back"] += back
        days.add(row.at, bool(row.deployed_at), failed or back)


def _answer(period: Period, totals: dict[str, int], leads: list[float], skipped: dict[str, int],
            restores: list[float | None], days: _Days) -> dict[str, Any]:
    """The summary in the API's shape."""
    failures = totals["failed"] + totals["rolled_back"]
    restored = [r for r in restores if r is not None]
    return {
        "deployment_frequency": {
            "deployments": totals["successful"],
            "per_day": round(totals["successful"] / period.days, 4) if period.days > 0 else None,
            "days_with_deployments": days.active(),
        },
        "lead_time_for_changes": {**spread(leads), "excluded": skipped},
        "change_failure_rate": {
            "rate": round(failures / totals["finished"], 4) if totals["finished"] else None,
            "failed": totals["failed"], "rolled_back": totals["rolled_back"], "deployments": totals["finished"],
        },
        "time_to_restore": {**spread(restored), "unrestored": len(restores) - len(restored)},
        "series": days.series(),
    }


class _Days:
    """Per UTC day of the period: successful deployments, change failures and the lead times."""

    def __init__(self, period: Period) -> None:
        first, last = period.since.date(), (period.until - timedelta(microseconds=1)).date()
        self.order = [first + timedelta(days=i) for i in range((last - first).days + 1)] if period.days > 0 else []
        self.counts: dict[date, list[int]] = {d: [0, 0] for d in self.order}
        self.leads: dict[date, list[float]] = {d: [] for d in self.order}

    def add(self, when: datetime | None, success: bool, failure: bool) -> None:
        """Count one finished deployment on its day."""
        day = self.counts.get(when.date()) if when else None
        if day is not None:
            day[0] += success
            day[1] += failure

    def add_lead(self, when: datetime | None, seconds: float) -> None:
        """Add one lead time to its day."""
        if when and when.date() in self.leads:
            self.leads[when.date()].append(seconds)

    def active(self) -> int:
        """Days with at least one successful deployment."""
        return sum(1 for c in self.counts.values() if c[0])

    def series(self) -> list[dict[str, Any]]:
        """One entry per day, oldest first."""
        return [{"date": d.isoformat(), "deployments": self.counts[d][0], "change_failures": self.counts[d][1],
                 "lead_time_median_seconds": _round(percentile(self.leads[d], 0.5))} for d in self.order]
