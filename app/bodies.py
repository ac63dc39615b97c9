"""Reading request bodies under a size limit, chunked ones included."""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge


def read_body(limit: int) -> bytes:
    """The raw body; 413 past `limit`, from Content-Length before reading, or while reading a chunked body.

    Werkzeug cuts a body without Content-Length at the limit silently; allowing one byte more and
    counting is how an oversized chunked body is told apart from one that fits exactly.
    """
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    request.max_content_length = limit + 1
    stream = request.stream
    chunks, size = [], 0
    while chunk := stream.read(min(64 * 1024, limit + 1 - size)):
        size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)
