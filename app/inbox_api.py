"""GET /api/v1/deliveries[/<guid>]: the webhook inbox for admins."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app.apikeys import require
from app.errors import ApiError
from app.pagination import page, page_args
from app.state import runtime
from models import Delivery
from models.deliveries import STATES

bp = Blueprint("inbox", __name__)
COLUMNS = (Delivery.id, Delivery.guid, Delivery.event, Delivery.action, Delivery.state, Delivery.attempts,
           Delivery.error, Delivery.note, Delivery.received_at, Delivery.finished_at, Delivery.next_attempt_at,
           Delivery.repository, Delivery.installation_id)


def iso(value: Any) -> str | None:
    """ISO 8601 in UTC with a Z, or None."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def delivery_json(row: Any) -> dict[str, Any]:
    """A delivery as the API shows it."""
    return {"guid": row.guid, "event": row.event, "action": row.action, "state": row.state,
            "attempts": row.attempts, "error": row.error, "note": row.note, "received_at": iso(row.received_at),
            "finished_at": iso(row.finished_at), "next_attempt_at": iso(row.next_attempt_at),
            "repository": row.repository, "installation_id": row.installation_id}


@bp.get("/api/v1/deliveries")
@require("admin")
def list_deliveries() -> Any:
    """Newest first; filters `state` and `event`; cursor pagination."""
    limit, after = page_args()
    query = select(*COLUMNS).order_by(Delivery.id.desc()).limit(limit + 1)
    state, event = request.args.get("state"), request.args.get("event")
    if state:
        if state not in STATES:
            raise ApiError(422, "invalid", "invalid query parameters", {"state": f"must be one of {', '.join(STATES)}"})
        query = query.where(Delivery.state == state)
    if event:
        query = query.where(Delivery.event == event)
    if after is not None:
        query = query.where(Delivery.id < after)
    with runtime().engine.connect() as conn:
        rows = list(conn.execute(query))
    rows, cursor = page(rows, limit)
    return jsonify({"items": [delivery_json(r) for r in rows], "next_cursor": cursor})


@bp.get("/api/v1/deliveries/<guid>")
@require("admin")
def get_delivery(guid: str) -> Any:
    """One delivery, 404 if unknown."""
    with runtime().engine.connect() as conn:
        row = conn.execute(select(*COLUMNS).where(Delivery.guid == guid)).first()
    if row is None:
        raise ApiError(404, "not_found", f"no delivery {guid!r}")
    return jsonify(delivery_json(row))
