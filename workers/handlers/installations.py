"""installation and installation_repositories: which accounts and repositories the App may act on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from models import Installation, InstallationRepository
from models.base import utcnow
from models.db import upsert
from workers.events import Event, Outcome
from workers.registry import handles


def _account(inst: dict[str, Any]) -> dict[str, Any]:
    """The installation's row values from its payload object."""
    account = inst.get("account") or {}
    return {"id": inst["id"], "account": str(account.get("login") or "")[:100],
            "account_type": account.get("type"), "repository_selection": inst.get("repository_selection"),
            "updated_at": utcnow()}


def _add_repos(conn: Any, installation_id: int, repos: list[dict[str, Any]]) -> None:
    """Record repositories as granted to the installation (a repository moves with its latest grant)."""
    for repo in repos:
        upsert(conn, InstallationRepository,
               {"id": repo["id"], "installation_id": installation_id, "full_name": repo["full_name"],
                "removed_at": None, "updated_at": utcnow()},
               keys=["id"], update=["installation_id", "full_name", "removed_at", "updated_at"])


def _remove_repos(conn: Any, installation_id: int, repos: list[dict[str, Any]]) -> None:
    """Mark repositories as no longer granted."""
    ids = [r["id"] for r in repos]
    if ids:
        conn.execute(update(InstallationRepository)
                     .where(InstallationRepository.id.in_(ids),
                            InstallationRepository.installation_id == installation_id)
                     .values(removed_at=utcnow(), updated_at=utcnow()))


def _set(conn: Any, installation_id: int, **values: Any) -> None:
    """Update one installation's columns."""
    conn.execute(update(Installation).where(Installation.id == installation_id).values(updated_at=utcnow(), **values))


@handles("installation", "created", "deleted", "suspend", "unsuspend", "new_permissions_accepted")
def on_installation(event: Event) -> Outcome:
    """Track the installation's life: created, suspended, unsuspended, deleted."""
    inst = event.payload["installation"]
    with event.rt.engine.begin() as conn:
        upsert(conn, Installation, _account(inst), keys=["id"],
               update=["account", "account_type", "repository_selection", "updated_at"])
        if event.action == "created":
            _set(conn, inst["id"], deleted_at=None)
            _add_repos(conn, inst["id"], event.payload.get("repositories") or [])
        elif event.action == "deleted":
            _set(conn, inst["id"], deleted_at=utcnow())
        elif event.action == "suspend":
            _set(conn, inst["id"], suspended_at=utcnow())
        elif event.action == "unsuspend":
            _set(conn, inst["id"], suspended_at=None)
    return Outcome("done", f"installation {inst['id']} {event.action}")


@handles("installation_repositories", "added", "removed")
def on_installation_repositories(event: Event) -> Outcome:
    """Follow repositories added to or removed from an installation."""
    inst = event.payload["installation"]
    with event.rt.engine.begin() as conn:
        upsert(conn, Installation, _account(inst), keys=["id"],
               update=["account", "account_type", "repository_selection", "updated_at"])
        _add_repos(conn, inst["id"], event.payload.get("repositories_added") or [])
        _remove_repos(conn, inst["id"], event.payload.get("repositories_removed") or [])
    added = len(event.payload.get("repositories_added") or [])
    removed = len(event.payload.get("repositories_removed") or [])
    return Outcome("done", f"{added} added, {removed} removed")
