"""`slipway replay`, `slipway sweep` and `slipway prune` as an operator runs them (embedded mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import select, update

from models import Delivery
from models.base import utcnow
from models.db import make_engine
from slipway.transport import InlineTransport
from tests import factories
from tests.conftest import Deliveries


def cli(sqlite_url: str, cwd, *args: str) -> subprocess.CompletedProcess:  # noqa: ANN001
    """Run the slipway command against the test database."""
    env = {**os.environ, "DATABASE_URL": sqlite_url, "REDIS_URL": "", "LOG_FORMAT": "text", "WEBHOOK_SECRET": "x"}
    return subprocess.run([sys.executable, "-m", "slipway.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def _post(make_runtime, n: int, *, run: bool = True) -> tuple[list[str], object]:  # noqa: ANN001
    """Store n ping deliveries (run or left 'received') and return their GUIDs and the runtime."""
    from app import create_app

    rt = make_runtime("embedded", transport=InlineTransport(None if run else (lambda g: None)))
    poster = Deliveries(create_app(rt=rt).test_client())
    return [poster.post("ping", factories.ping(f"z{i}")).get_json()["delivery"] for i in range(n)], rt


def states(url: str) -> dict[str, str]:
    """GUID → state."""
    engine = make_engine(url)
    with engine.connect() as conn:
        out = dict(conn.execute(select(Delivery.guid, Delivery.state)).all())
    engine.dispose()
    return out


def test_replay_runs_a_finished_delivery_again(make_runtime, sqlite_url: str, tmp_path) -> None:  # noqa: ANN001
    """replay GUID runs it once more and prints how it ended; an unknown GUID is a clear error."""
    (guid,), _ = _post(make_runtime, 1)
    run = cli(sqlite_url, tmp_path, "replay", guid)
    assert run.returncode == 0 and run.stdout.strip() == f"{guid}: done"
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(select(Delivery.attempts).where(Delivery.guid == guid)).scalar() == 1
    engine.dispose()
    missing = cli(sqlite_url, tmp_path, "replay", "no-such-guid")
    assert missing.returncode == 1 and "no finished delivery 'no-such-guid'" in missing.stderr


def test_sweep_runs_what_was_never_queued(make_runtime, sqlite_url: str, tmp_path) -> None:  # noqa: ANN001
    """sweep (embedded mode) queues and runs stranded deliveries and prints a summary."""
    guids, rt = _post(make_runtime, 3, run=False)
    with rt.engine.begin() as conn:
        conn.execute(update(Delivery).values(state="received", queued_at=None))
    run = cli(sqlite_url, tmp_path, "sweep")
    assert run.returncode == 0 and run.stdout.strip() == "queued 3, failed 0"
    assert set(states(sqlite_url).values()) == {"done"}


def test_prune_deletes_only_old_finished_deliveries(make_runtime, sqlite_url: str, tmp_path) -> None:  # noqa: ANN001
    """prune --older-than 30d keeps recent and unfinished deliveries and prints how many it deleted."""
    guids, rt = _post(make_runtime, 5)
    old = utcnow() - timedelta(days=40)
    with rt.engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.guid.in_(guids[:4])).values(received_at=old))
        conn.execute(update(Delivery).where(Delivery.guid == guids[3]).values(state="queued"))
    run = cli(sqlite_url, tmp_path, "prune", "--older-than", "30d")
    assert run.returncode == 0 and run.stdout.strip() == "deleted 3 deliveries"
    assert set(states(sqlite_url)) == {guids[3], guids[4]}
    bad = cli(sqlite_url, tmp_path, "prune", "--older-than", "soon")
    assert bad.returncode == 2 and "use a number and a unit" in bad.stderr
