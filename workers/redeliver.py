"""Ask GitHub to redeliver the App's failed webhook deliveries that Slipway never stored, idempotently.

GitHub never retries a failed delivery by itself (reference/github.md section 1). This lists the App's
delivery attempts (GET /app/hook/deliveries, App JWT, cursor paging, newest first) back to a cut-off,
groups them by GUID, and redelivers each GUID that has no `OK` attempt, is not in the inbox, and has no
recent redelivery, by POSTing /app/hook/deliveries/{id}/attempts for its newest failed attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from models import Delivery
from slipway.runtime import Runtime
from workers.github import GitHubRefused

log = logging.getLogger(__name__)

PER_PAGE = 100
# A redelivery attempt younger than this counts as "under way": running the command again soon does not
# ask twice. An older failed redelivery (Slipway was still down) is asked for again.
REDELIVERY_COOLDOWN = timedelta(minutes=30)


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt as GitHub lists it."""

    id: int
    guid: str
    delivered_at: datetime
    redelivery: bool
    ok: bool
    status: str
    event: str | None
    action: str | None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Attempt:
        """Parse one item of GET /app/hook/deliveries."""
        return cls(id=int(item["id"]), guid=str(item["guid"]), delivered_at=parse_time(item["delivered_at"]),
                   redelivery=bool(item.get("redelivery")), ok=item.get("status") == "OK",
                   status=str(item.get("status") or item.get("status_code")), event=item.get("event"),
                   action=item.get("action"))

    @property
    def label(self) -> str:
        """event.action, for progress lines."""
        return f"{self.event}.{self.action}" if self.action else str(self.event)


@dataclass
class Report:
    """What one run found and did."""

    dry_run: bool = False
    listed: int = 0                 # delivery attempts listed inside the window
    failed: int = 0                 # GUIDs without any OK attempt
    stored: int = 0                 # ... of which Slipway has the delivery anyway
    pending: int = 0                # ... of which a redelivery was asked for less than the cooldown ago
    redelivered: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # GitHub would not redeliver (e.g. past its window)

    def summary(self) -> str:
        """The one-line summary printed on standard output."""
        verb = "would redeliver" if self.dry_run else "redelivered"
        text = f"listed {self.listed}, failed {self.failed}, already stored {self.stored}, {verb} {len(self.redelivered)}"
        if self.pending:
            text += f", redelivery under way {self.pending}"
        if self.refused:
            text += f", refused by GitHub {len(self.refused)}"
        return text


class Stopped(Exception):
    """GitHub stopped the run (rate limit, server error, bad credentials); `report` holds what was done."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


def parse_time(value: str) -> datetime:
    """GitHub's 2024-05-01T12:00:00Z as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _next_cursor(link: str | None) -> str | None:
    """The cursor of the Link header's rel="next" URL."""
    for part in (link or "").split(","):
        url, _, rel = part.partition(";")
        if 'rel="next"' in rel:
            return (parse_qs(urlsplit(url.strip().strip("<>")).query).get("cursor") or [None])[0]
    return None


def list_attempts(rt: Runtime, since: datetime, progress: Callable[[str], None]) -> Iterator[Attempt]:
    """Delivery attempts newer than `since`, newest first, page by page."""
    app = rt.github()
    cursor: str | None = None
    page = 0
    while True:
        kw = {"per_page": PER_PAGE, **({"cursor": cursor} if cursor else {})}
        resp = app.call_app(lambda gh, kw=kw: gh.rest.apps.list_webhook_deliveries(**kw))
        page += 1
        items = [Attempt.from_item(i) for i in resp.json()]
        inside = [a for a in items if a.delivered_at >= since]
        oldest = f", back to {inside[-1].delivered_at:%Y-%m-%d %H:%M}Z" if inside else ""
        progress(f"page {page}: {len(inside)} deliveries{oldest}")
        yield from inside
        cursor = _next_cursor(resp.headers.get("link"))
        if cursor is None or len(inside) < len(items):
            return  # the last page, or the window ends inside this one


def stored_guids(rt: Runtime, guids: list[str]) -> set[str]:
    """The GUIDs Slipway has in its inbox (any state: it will process or has processed them)."""
    found: set[str] = set()
    with rt.engine.connect() as conn:
        for i in range(0, len(guids), 500):
            found.update(conn.execute(select(Delivery.guid).where(Delivery.guid.in_(guids[i:i + 500]))).scalars())
    return found


def plan(attempts: list[Attempt], stored: set[str], now: datetime, report: Report) -> list[Attempt]:
    """The attempt to redeliver for each GUID that needs it (newest failure first); counts the rest."""
    by_guid: dict[str, list[Attempt]] = {}
    for a in attempts:
        by_guid.setdefault(a.guid, []).append(a)
    todo: list[Attempt] = []
    for guid, group in by_guid.items():
        if any(a.ok for a in group):
            continue
        report.failed += 1
        if guid in stored:
            report.stored += 1
            continue
        newest = max(group, key=lambda a: (a.delivered_at, a.id))
        if newest.redelivery and now - newest.delivered_at < REDELIVERY_COOLDOWN:
            report.pending += 1  # asked for already (by this command or by hand); do not ask twice
            continue
        todo.append(newest)  # every attempt failed, so the newest one is the newest failure
    return sorted(todo, key=lambda a: (a.delivered_at, a.id), reverse=True)


def redeliver_failed(rt: Runtime, since: timedelta, *, dry_run: bool = False,
                     progress: Callable[[str], None] = lambda _line: None,
                     now: datetime | None = None) -> Report:
    """List, decide and (unless dry_run) ask GitHub to redeliver; raises Stopped when GitHub stops us."""
    from workers.github import GitHubUnavailable, RateLimited

    now = now or datetime.now(timezone.utc)
    report = Report(dry_run=dry_run)
    try:
        attempts = list(list_attempts(rt, now - since, progress))
    except (RateLimited, GitHubUnavailable, GitHubRefused) as exc:
        raise Stopped(f"listing deliveries stopped: {_explain(exc)}", report) from None
    report.listed = len(attempts)
    failed_guids = sorted({a.guid for a in attempts} - {a.guid for a in attempts if a.ok})
    todo = plan(attempts, stored_guids(rt, failed_guids), now, report)
    app = None if dry_run else rt.github()
    for attempt in todo:
        line = f"{attempt.guid} ({attempt.label}, {attempt.status} at {attempt.delivered_at:%Y-%m-%d %H:%M}Z)"
        if app is None:
            progress(f"would redeliver {line}")
            report.redelivered.append(attempt.guid)
            continue
        try:
            app.call_app(lambda gh, i=attempt.id: gh.rest.apps.redeliver_webhook_delivery(i))
        except GitHubRefused as exc:
            if exc.status == 401:
                raise Stopped(f"redelivery stopped: {_explain(exc)}", report) from None
            progress(f"GitHub refused to redeliver {line}: {exc}")
            report.refused.append(attempt.guid)
            continue
        except (RateLimited, GitHubUnavailable) as exc:
            raise Stopped(f"redelivery stopped: {_explain(exc)}", report) from None
        log.debug("redelivery requested", extra={"delivery": attempt.guid, "hook_delivery_id": attempt.id})
        progress(f"redelivered {line}")
        report.redelivered.append(attempt.guid)
    return report


def _explain(exc: Exception) -> str:
    """A GitHub failure in words an operator can act on."""
    if isinstance(exc, GitHubRefused) and exc.status == 401:
        return f"{exc} (check APP_ID and the private key)"
    return str(exc)
