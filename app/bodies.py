"""Reading request bodies under a size limit, chunked ones included."""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream


def read_body(limit: int, environ: dict[str, Any] | None = None) -> bytes:
    """The raw body; 413 past `limit`, from Content-Length before reading, or while reading a chunked body.

    Werkzeug cuts a body without Content-Length at the limit silently; allowing one byte more and
    counting is how an oversized chunked body is told apart from one that fits exactly.
    """
    environ = environ if environ is not None else request.environ
    length = _content_length(environ)
    if length is not None and length <= limit:
        # The common case, read in one call: the server gives at most Content-Length bytes (fewer if the
        # client stops early, and then the signature does not match).
        return environ["wsgi.input"].read(length) if length else b""
    # From the WSGI environ (the webhook runs before Flask) or the current Flask request; 413 here when
    # Content-Length is over the limit, before a byte is read.
    stream = get_input_stream(environ, max_content_length=limit)
    chunks, size = [], 0
    while chunk := stream.read(min(64 * 1024, limit + 1 - size)):
        size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def _content_length(environ: dict[str, Any]) -> int | None:
    """Content-Length as a number, or None when absent or not a plain non-negative integer."""
    value = environ.get("CONTENT_LENGTH", "")
    return int(value) if value.isascii() and value.isdigit() else None
