"""installation and installation_repositories: tracked, including suspended and deleted ones."""

from __future__ import annotations

from sqlalchemy import select

from models import Installation, InstallationRepository
from tests import factories
from tests.conftest import drain


def installation(rt, inst_id: int = factories.INSTALLATION_ID) -> Installation:
    """The stored installation."""
    from sqlmodel import Session

    with Session(rt.engine) as session:
        return session.get(Installation, inst_id)


def repos(rt) -> dict[str, bool]:
    """full_name → still granted."""
    with rt.engine.connect() as conn:
        return {r.full_name: r.removed_at is None for r in conn.execute(select(InstallationRepository))}


def test_installation_lifecycle(rt, deliveries) -> None:
    """created → suspend → unsuspend → deleted, each reflected on the row."""
    deliveries.post("installation", factories.installation("created", repos=["octo-org/a", "octo-org/b"]))
    drain(rt)
    row = installation(rt)
    assert row.account == "octo-org" and row.active and repos(rt) == {"octo-org/a": True, "octo-org/b": True}
    deliveries.post("installation", factories.installation("suspend"))
    drain(rt)
    assert installation(rt).suspended_at is not None and not installation(rt).active
    deliveries.post("installation", factories.installation("unsuspend"))
    drain(rt)
    assert installation(rt).active
    deliveries.post("installation", factories.installation("deleted"))
    drain(rt)
    assert installation(rt).deleted_at is not None and not installation(rt).active


def test_repositories_added_and_removed(rt, deliveries) -> None:
    """installation_repositories keeps the granted list current."""
    deliveries.post("installation_repositories", factories.installation_repositories("added", [(1, "o/a"), (2, "o/b")]))
    drain(rt)
    deliveries.post("installation_repositories", factories.installation_repositories("removed", [(1, "o/a")]))
    drain(rt)
    assert repos(rt) == {"o/a": False, "o/b": True}
    deliveries.post("installation_repositories", factories.installation_repositories("added", [(1, "o/a")]))
    drain(rt)
    assert repos(rt) == {"o/a": True, "o/b": True}


def test_events_out_of_order_still_track_the_installation(rt, deliveries) -> None:
    """A suspend that arrives before created still leaves a suspended installation on record."""
    deliveries.post("installation", factories.installation("suspend", installation_id=7))
    drain(rt)
    deliveries.post("installation", factories.installation("created", installation_id=7))
    drain(rt)
    assert installation(rt, 7).suspended_at is not None
