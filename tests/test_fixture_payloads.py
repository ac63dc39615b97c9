"""Every real GitHub payload in ../shared/fixtures/github, signed, in both content types: SPEC answers, terminal ends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from models import Delivery
from models.deliveries import TERMINAL
from tests.conftest import FIXTURES, IN_CI, Deliveries, drain
from workers.registry import get_handler


def fixture_files() -> list[Path]:
    """The payload files (CI always has the folder; a laptop may not)."""
    return sorted(FIXTURES.glob("*/*.json")) if FIXTURES.is_dir() else []


def test_fixture_folder_is_present_in_ci() -> None:
    """CI has ../shared beside the clone, so this suite must not silently run on nothing."""
    if not fixture_files():
        if IN_CI:
            pytest.fail(f"no fixtures at {FIXTURES}")
        pytest.skip("../shared/fixtures/github is not beside this checkout")
    assert len(fixture_files()) >= 100


def test_every_fixture_is_answered_per_spec_and_ends_terminal(rt, client) -> None:
    """Each payload in each content type: 202 (200 for ping), stored, then done or ignored; never a 5xx."""
    files = fixture_files()
    if not files:
        pytest.skip("no fixtures")
    poster = Deliveries(client)
    expected = {}
    for path in files:
        event = path.parent.name
        raw = path.read_bytes()
        action = json.loads(raw).get("action")
        for form in (False, True):
            guid = f"{event}-{path.stem}-{'form' if form else 'json'}"
            resp = poster.post(event, raw=raw, guid=guid, form=form)
            assert resp.status_code < 500, (guid, resp.status_code, resp.data[:300])
            if event == "ping":
                assert resp.status_code == 200 and resp.get_json()["zen"], guid
            else:
                assert resp.status_code == 202, (guid, resp.get_json())
                handled = get_handler(event, action) is not None
                assert resp.get_json()["state"] == ("queued" if handled else "ignored"), guid
            expected[guid] = event
    drain(rt, timeout=120)
    with rt.engine.connect() as conn:
        stored = {r.guid: r for r in conn.execute(select(Delivery.guid, Delivery.state, Delivery.error))}
    assert set(stored) == set(expected)
    not_terminal = {g: r.state for g, r in stored.items() if r.state not in TERMINAL}
    assert not_terminal == {}
    crashed = {g: r.error for g, r in stored.items() if r.state == "failed"}
    assert crashed == {}, "a real payload crashed its handler"
