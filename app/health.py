"""Liveness and readiness probes (no auth)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from sqlalchemy import text

from app.state import runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    """The process answers."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Any:
    """Ready when the database and the queue are reachable."""
    rt = runtime()
    checks = {"database": _db_ok(rt), "queue": rt.transport.ping()}
    ok = all(checks.values())
    return jsonify({"status": "ok" if ok else "unavailable", "checks": checks}), 200 if ok else 503


def _db_ok(rt: Any) -> bool:
    """True when a trivial query succeeds."""
    try:
        with rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
