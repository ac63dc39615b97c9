"""What GitOps handlers share: the guard that finds the repository client, and small payload readers."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select

from models import Decision, Installation
from models.base import utcnow
from models.db import Prepared, autocommit, run
from models.installations import is_active
from workers.events import Event, Ignored
from workers.github import Repo


def repo_for(event: Event) -> Repo:
    """The GitHub client for the event's repository, or Ignored when Slipway may not act on it."""
    _check_enabled(event)
    with autocommit(event.rt.engine) as conn:
        inst = run(conn, _installation_statement(), {"b_id": event.installation_id}).first()
    if inst is not None and not is_active(inst):
        raise Ignored(f"installation {event.installation_id} is suspended or deleted")
    return event.rt.github().repo(event.installation_id, event.repository)


def repo_and_config(event: Event) -> tuple[Repo, Any]:
    """repo_for, and the repository's cached configuration row (None if none) read in the same statement:
    one round trip instead of two for every push (give the row to repoconfig.load as `cached`)."""
    _check_enabled(event)
    with autocommit(event.rt.engine) as conn:
        got = run(conn, _installation_and_config_statement(),
                  {"b_id": event.installation_id, "b_repository": event.repository}).first()
    if got.inactive:
        raise Ignored(f"installation {event.installation_id} is suspended or deleted")
    cached = _ConfigRow(got.good_text, got.error) if got.has_config else None
    return event.rt.github().repo(event.installation_id, event.repository), cached


class _ConfigRow(NamedTuple):
    """What repoconfig.load reads of a cached configuration row."""

    good_text: str | None
    error: str | None


def _check_enabled(event: Event) -> None:
    """Ignored unless GitHub actions are on and the payload names an installation and a repository."""
    if not event.rt.settings.github_enabled:
        raise Ignored("GitHub actions are off: APP_ID and PRIVATE_KEY are not set")
    if not event.installation_id or not event.repository:
        raise Ignored("the payload names no installation or repository")


@functools.cache
def _installation_and_config_statement() -> Prepared:
    """Is the installation suspended or deleted (NULL: unknown here, so active), and the cached config row."""
    from sqlalchemy import exists, or_

    from models import RepoConfig

    i, c = Installation.__table__.c, RepoConfig.__table__.c
    inst = bindparam("b_id", type_=i.id.type)
    repo = bindparam("b_repository", type_=c.repository.type)
    inactive = (select(or_(i.suspended_at.is_not(None), i.deleted_at.is_not(None))).where(i.id == inst)
                .scalar_subquery().label("inactive"))
    return Prepared(select(inactive,
                           select(c.good_text).where(c.repository == repo).scalar_subquery().label("good_text"),
                           select(c.error).where(c.repository == repo).scalar_subquery().label("error"),
                           exists().where(c.repository == repo).label("has_config")))


@functools.cache
def _installation_statement() -> Prepared:
    """The installation's suspension and deletion times, built once (every GitOps delivery reads them)."""
    t = Installation.__table__.c
    return Prepared(select(t.suspended_at, t.deleted_at).where(t.id == bindparam("b_id", type_=t.id.type)))


def default_branch(event: Event) -> str:
    """The repository's default branch as the payload states it."""
    repo = event.payload.get("repository") or {}
    return str(repo.get("default_branch") or repo.get("master_branch") or "main")


def record_skip(event: Event, environment: str, sha: str | None, reasons: list[str]) -> None:
    """Store a `skip` decision that needs no candidate (a draft PR, a fork, previews off)."""
    with event.rt.engine.begin() as conn:
        conn.execute(Decision.__table__.insert().values(
            repository=event.repository or "", environment=environment, sha=sha, verdict="skip", reasons=reasons,
            delivery_guid=event.guid, created_at=utcnow()))


def get(obj: Any, *path: str) -> Any:
    """payload["a"]["b"] that is None instead of raising on a missing or null level."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj
