"""Opaque keyset cursors: pages never skip or repeat rows while new ones arrive."""

from __future__ import annotations

import base64

from flask import request

from app.errors import ApiError

DEFAULT_LIMIT, MAX_LIMIT = 20, 100


def page_args() -> tuple[int, int | None]:
    """The request's `limit` (1..100, default 20) and the id after which the page starts."""
    raw_limit = request.args.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ApiError(422, "invalid", "invalid query parameters", {"limit": f"must be an integer from 1 to {MAX_LIMIT}"})
    return int(raw_limit), decode_cursor(request.args.get("cursor"))


def encode_cursor(last_id: int) -> str:
    """An opaque token for 'rows older than this one'."""
    return base64.urlsafe_b64encode(f"v1:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(token: str | None) -> int | None:
    """The id a cursor stands for; 422 when it is not one of ours."""
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        version, _, value = text.partition(":")
        if version == "v1" and value.isdigit():
            return int(value)
    except (ValueError, UnicodeDecodeError):
        pass
    raise ApiError(422, "invalid", "invalid query parameters", {"cursor": "is not a cursor this API issued"})


def page(rows: list, limit: int) -> tuple[list, str | None]:
    """Split a fetched `limit + 1` rows into the page and the next cursor."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1].id)
    return rows, None
