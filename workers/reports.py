"""Store a deploy report from any CI: match its repository or service, deduplicate, move a deployment along.

Everything a report writes happens in one transaction. A report with a ``dedup_id`` or ``build_id`` is
keyed by (repository or service, environment, that id) on the deployment's unique ``key`` column, so
copies arriving together create one deployment; a later report with another status adds a status to it
(pending, then in_progress, then success) and the same status twice adds nothing. Deciding functions
(keys, status times, whether to mirror) are pure; the rest reads and writes the database.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, cast, func, select, text, update
from sqlalchemy.engine import Connection, Engine

from app.deploy_formats import DeployReport, suggest
from models import Deployment, DeploymentStatus, Environment, Installation, InstallationRepository
from models.base import utcnow
from models.db import insert_ignore
from workers.record import lock_deployment, record_status

MAX_CANDIDATES = 5000  # names offered to suggest(); more would only slow an unmatched report down
MAX_DEPLOY_NUMBER = 2**63 - 1
# Where a status sits in a deployment's life; a report never reorders it (see status_time).
_RANK = {"pending": 0, "queued": 0, "in_progress": 1, "success": 2, "failure": 2, "error": 2, "cancelled": 2,
         "inactive": 3}
_NUDGE = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Reporter:
    """The API key that sent a report."""

    key_id: int
    key_name: str


@dataclass(frozen=True)
class Target:
    """What a report is about: a repository (owner/name) or a service alias."""

    kind: str  # repository | service
    name: str


@dataclass(frozen=True)
class Match:
    """Whether the target is known, under which spelling, and the installation that may mirror it."""

    name: str
    matched: bool
    suggestion: str | None
    installation_id: int | None  # an active installation of the App that grants this repository


@dataclass(frozen=True)
class Stored:
    """What storing a report did: created, moved (a new status) or duplicate, and the deployment now."""

    outcome: str
    deployment: Any  # the Deployment row after the report
    environment_id: int | None
    match: Match

    @property
    def duplicate(self) -> bool:
        """True when the report added nothing."""
        return self.outcome == "duplicate"


# --------------------------------------------------------------------------- pure decisions


def target_of(report: DeployReport, reporter: Reporter) -> Target:
    """The repository, else the service; a report naming neither (Pulse) belongs to its key's name."""
    if report.repository:
        return Target("repository", report.repository)
    # Laravel Pulse's body names no application: its token is per application, so the key stands for it.
    return Target("service", report.service or reporter.key_name)


def deployment_key(target: Target, environment: str, dedup_id: str | None, build_id: str | None) -> str | None:
    """The idempotency key of (target, environment, dedup_id or build_id); None when the report has no id."""
    if dedup_id is None and build_id is None:
        return None
    kind, ident = ("dedup", dedup_id) if dedup_id is not None else ("build", build_id)
    # GitHub treats repository names case-insensitively; service aliases are taken as sent.
    name = target.name.casefold() if target.kind == "repository" else target.name
    # Hashed so that no separator inside a name can make two different reports collide, and the key
    # stays short (it also travels in the GitHub deployment's payload).
    parts = json.dumps([target.kind, name, environment, kind, ident], ensure_ascii=False)
    return "ext:" + hashlib.sha256(parts.encode("utf-8")).hexdigest()


def fresh_key() -> str:
    """A key for a report without ids: every such report is a deployment of its own."""
    return f"ext:{uuid.uuid4().hex}"


def status_key(deployment_key_: str, state: str) -> str:
    """The key of a reported status; distinct from workers.deploy's `<key>/<state>` so mirroring still posts it."""
    return f"{deployment_key_}#report:{state}"


def status_time(reported: datetime, state: str, history: list[tuple[str, datetime]]) -> datetime:
    """The time to record a reported status at, so that CI clock skew never moves a deployment backwards.

    The reported time is kept unless it would sort this status before an earlier stage of the deployment's
    life (in_progress before pending) or after a later one (pending after success); then it is nudged
    just past, or just before, the status it must follow or precede.
    """
    rank = _RANK.get(state, 2)
    earlier = [t for s, t in history if _RANK.get(s, 2) < rank]
    later = [t for s, t in history if _RANK.get(s, 2) > rank]
    if earlier and reported <= max(earlier):
        return max(earlier) + _NUDGE
    if later and reported >= min(later):
        return min(later) - _NUDGE
    return reported


def mirror_skip_reason(outcome: str, installation_id: int | None, github_enabled: bool, has_ref: bool) -> str | None:
    """Why this report is not mirrored into GitHub, or None when it should be."""
    if outcome == "duplicate":
        return "duplicate report: nothing new to mirror"
    if installation_id is None:
        return "not a repository the GitHub App is installed on"
    if not github_enabled:
        return "the GitHub App is not configured (APP_ID and PRIVATE_KEY)"
    if not has_ref:
        return "no commit_sha or branch to create a GitHub deployment for"
    return None


def is_production(environment: str) -> bool:
    """GitHub's production_environment flag: environments named production (any case)."""
    return environment.casefold() == "production"


# --------------------------------------------------------------------------- matching


def match_target(conn: Connection, target: Target, exclude: int | None) -> Match:
    """Is the target known (installed repository, or reported before)? If not, the closest known name."""
    if target.kind == "repository":
        return _match_repository(conn, target.name, exclude)
    if _recorded(conn, Deployment.service, target.name, exclude):
        return Match(target.name, True, None, None)
    return Match(target.name, False, _suggest(target.name, _names(conn, Deployment.service)), None)


def _match_repository(conn: Connection, name: str, exclude: int | None) -> Match:
    """Match a repository by GitHub's case-insensitive rule, preferring an installed spelling."""
    grants = _grants(conn, name)
    if grants:
        spelling, installation_id = grants[0]
        return Match(spelling, True, None, installation_id)
    if _recorded(conn, Deployment.repository, name, exclude):
        return Match(name, True, None, None)
    known = _installed_names(conn) + _names(conn, Deployment.repository)
    spelling = next((k for k in known if k.casefold() == name.casefold()), None)
    if spelling is not None:
        return Match(spelling, True, None, None)
    return Match(name, False, _suggest(name, known), None)


def _suggest(name: str, known: list[str]) -> str | None:
    """The closest known name other than the name itself (a repeated report finds its own first record)."""
    return suggest(name, [k for k in known if k != name])


def _grants(conn: Connection, name: str) -> list[tuple[str, int | None]]:
    """(spelling, active installation id or None) of the granted repositories with this name, active first."""
    rows = conn.execute(
        select(InstallationRepository.full_name, InstallationRepository.installation_id,
               Installation.suspended_at, Installation.deleted_at, Installation.id)
        .join(Installation, Installation.id == InstallationRepository.installation_id, isouter=True)
        .where(func.lower(InstallationRepository.full_name) == name.lower(),
               InstallationRepository.removed_at.is_(None)))
    grants = [(r.full_name, r.installation_id if _active(r) else None) for r in rows]
    return sorted(grants, key=lambda g: g[1] is None)


def _active(row: Any) -> bool:
    """An installation is acted on only while it exists and is neither suspended nor deleted."""
    return row.id is not None and row.suspended_at is None and row.deleted_at is None


def active_installation(conn: Connection, repository: str) -> int | None:
    """The active installation that grants this repository now, if any."""
    grants = _grants(conn, repository)
    return grants[0][1] if grants else None


def _recorded(conn: Connection, column: Any, name: str, exclude: int | None) -> bool:
    """True when a deployment (other than `exclude`) was recorded under exactly this name."""
    query = select(Deployment.id).where(column == name).limit(1)
    if exclude is not None:
        query = query.where(Deployment.id != exclude)
    return conn.execute(query).first() is not None


def _names(conn: Connection, column: Any) -> list[str]:
    """Distinct names recorded in a deployment column (bounded)."""
    return [n for (n,) in conn.execute(select(column).where(column.is_not(None)).distinct().limit(MAX_CANDIDATES))]


def _installed_names(conn: Connection) -> list[str]:
    """Names of every granted repository."""
    query = select(InstallationRepository.full_name).where(InstallationRepository.removed_at.is_(None))
    return [n for (n,) in conn.execute(query.limit(MAX_CANDIDATES))]


# --------------------------------------------------------------------------- storing


def store(engine: Engine, report: DeployReport, reporter: Reporter, now: datetime | None = None) -> Stored:
    """Record the report in one transaction; returns what it did."""
    now = now or utcnow()
    target = target_of(report, reporter)
    key = deployment_key(target, report.environment, report.dedup_id, report.build_id) or fresh_key()
    # Reads first: on SQLite the write lock is only taken by the first write, so readers never wait on it.
    with engine.connect() as conn:
        match = match_target(conn, target, exclude=_id_by_key(conn, key))
    with engine.begin() as conn:
        return _write(conn, report, reporter, target, key, match, now)


def _write(conn: Connection, report: DeployReport, reporter: Reporter, target: Target, key: str, match: Match,
           now: datetime) -> Stored:
    """Insert or find the deployment, then add the reported status unless it is already there."""
    numbered = report.format == "opslevel" and report.deploy_number is None
    if numbered:
        _lock_sequence(conn, target.name)
    values = _deployment_values(report, reporter, target, key, match, now)
    new_id = insert_ignore(conn, Deployment, values, returning=Deployment.id)
    dep_id = new_id if new_id is not None else _id_by_key(conn, key)
    row = lock_deployment(conn, dep_id)
    history = _history(conn, dep_id)
    if new_id is None and any(state == report.status for state, _ in history):
        outcome = "duplicate"
    else:
        outcome = "created" if new_id is not None else "moved"
        if new_id is None:
            _fill_in(conn, row, report)
        elif numbered:
            _number(conn, dep_id, target.name, values["extra"])
        _record(conn, dep_id, report, key, history)
    row = conn.execute(select(Deployment).where(Deployment.id == dep_id)).one()
    return Stored(outcome, row, _environment_id(conn, row), match)


def _deployment_values(report: DeployReport, reporter: Reporter, target: Target, key: str, match: Match,
                       now: datetime) -> dict[str, Any]:
    """The new deployment row for a report."""
    repository = match.name if target.kind == "repository" else None
    service = report.service or (None if repository else target.name)
    return {
        "key": key, "repository": repository, "service": service, "environment": report.environment,
        "sha": report.sha, "ref": report.ref, "version": report.version, "task": "deploy", "status": "pending",
        "source": report.source, "deployer": report.deployer, "description": report.description,
        "log_url": report.deploy_url, "build_id": report.build_id, "dedup_id": report.dedup_id,
        "transient": False, "production": is_production(report.environment),
        "installation_id": match.installation_id, "extra": _extra(report, reporter),
        "created_at": now, "updated_at": now,
    }


def _extra(report: DeployReport, reporter: Reporter) -> dict[str, Any]:
    """What the report carried beyond the deployment's columns, and which key sent it."""
    extra = {"format": report.format, "reported_by": {"key_id": reporter.key_id, "key_name": reporter.key_name},
             "deploy_url": report.deploy_url, "deploy_number": report.deploy_number, "commit": report.commit,
             "extra_data": report.extra_data}
    return {k: v for k, v in extra.items() if v is not None}


def _id_by_key(conn: Connection, key: str) -> int | None:
    """The deployment stored under this key, if any."""
    return conn.execute(select(Deployment.id).where(Deployment.key == key)).scalar()


def _history(conn: Connection, deployment_id: int) -> list[tuple[str, datetime]]:
    """(state, time) of every status the deployment has."""
    rows = conn.execute(select(DeploymentStatus.state, DeploymentStatus.created_at)
                        .where(DeploymentStatus.deployment_id == deployment_id))
    return [(r.state, r.created_at) for r in rows]


def _record(conn: Connection, deployment_id: int, report: DeployReport, key: str,
            history: list[tuple[str, datetime]]) -> None:
    """Add the reported status; record_status re-derives the deployment's and environment's state."""
    record_status(conn, deployment_id, state=report.status,
                  created_at=status_time(report.deployed_at, report.status, history),
                  description=report.description, log_url=report.deploy_url, source=report.source,
                  key=status_key(key, report.status))


def _fill_in(conn: Connection, row: Any, report: DeployReport) -> None:
    """A later report may know what an earlier one did not (the sha, the version): fill the gaps only."""
    offered = {"sha": report.sha, "ref": report.ref, "version": report.version, "deployer": report.deployer,
               "description": report.description, "log_url": report.deploy_url}
    gaps = {column: value for column, value in offered.items() if value is not None and getattr(row, column) is None}
    if gaps:
        conn.execute(update(Deployment).where(Deployment.id == row.id).values(updated_at=utcnow(), **gaps))


def _lock_sequence(conn: Connection, service: str) -> None:
    """Serialise deploy numbering per service (PostgreSQL; SQLite has a single writer already)."""
    if conn.dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"slipway:deploy-number:{service}".encode("utf-8", "surrogatepass")).digest()
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(digest[:8], "big", signed=True)})


def _number(conn: Connection, deployment_id: int, service: str, extra: dict[str, Any]) -> None:
    """Give an OpsLevel deploy without deploy_number the next number of its service (as OpsLevel does)."""
    numbers = cast(Deployment.extra["deploy_number"].as_string(), BigInteger)
    highest = conn.execute(select(func.max(numbers)).where(Deployment.service == service,
                                                           Deployment.id != deployment_id)).scalar()
    following = (highest or 0) + 1
    if following > MAX_DEPLOY_NUMBER:
        return  # the sequence is spent; the deploy is still recorded, without a number
    conn.execute(update(Deployment).where(Deployment.id == deployment_id)
                 .values(extra={**extra, "deploy_number": following}))


def _environment_id(conn: Connection, row: Any) -> int | None:
    """The id of the environment row the deployment belongs to."""
    owner = row.repository or row.service or ""
    return conn.execute(select(Environment.id).where(Environment.repository == owner,
                                                     Environment.name == row.environment)).scalar()
