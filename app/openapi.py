"""GET /api/v1/openapi.json: the OpenAPI 3.1 document of every endpoint (kept in app/openapi.yml), no auth."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response

bp = Blueprint("openapi", __name__)
SOURCE = Path(__file__).with_name("openapi.yml")


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The document, read once (YAML for the comments and anchors; served as JSON)."""
    with SOURCE.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@lru_cache(maxsize=1)
def _body() -> bytes:
    """The JSON bytes, encoded once."""
    return json.dumps(document(), separators=(",", ":")).encode()


@bp.get("/api/v1/openapi.json")
def openapi_json() -> Response:
    """The document; it describes the API, so anyone may read it."""
    return Response(_body(), content_type="application/json", headers={"Cache-Control": "public, max-age=300"})
