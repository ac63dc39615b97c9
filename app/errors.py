"""JSON errors: `{"error": {"code", "message", "fields"}}`, for every failure, never an HTML page."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answer with its status, machine code and message."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields, self.headers = status, code, message, fields, headers


def error_document(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """An error in the canonical shape, as a plain document."""
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def json_error(status: int, code: str, message: str, fields: dict[str, Any] | None = None,
               headers: dict[str, str] | None = None) -> Response:
    """Build an error response in the canonical shape."""
    resp = jsonify(error_document(code, message, fields))
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
          503: "unavailable"}


def register(app: Flask) -> None:
    """Answer every error as JSON."""

    @app.errorhandler(ApiError)
    def _api(exc: ApiError) -> Response:
        return json_error(exc.status, exc.code, exc.message, exc.fields, exc.headers)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = "request body too large"
        resp = json_error(status, _CODES.get(status, "error"), message)
        for k, v in exc.get_headers():  # keep Retry-After, Allow, ...
            if k.lower() != "content-type":
                resp.headers[k] = v
        return resp

    @app.errorhandler(Exception)
    def _crash(exc: Exception) -> Response:
        log.exception("unhandled error")
        return json_error(500, "internal", "internal error; it has been logged")
