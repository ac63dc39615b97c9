"""POST /api/github/webhooks: verify, store, enqueue, answer. Nothing else happens on the request path.

The endpoint is a plain WSGI app in front of Flask (`mount`): GitHub's deliveries are the one hot path
of the web tier, and Flask's request context, URL matching, session and response objects cost about as
much CPU as verifying and storing a delivery (docs/benchmarks.md, Ingest). Every other path goes to Flask.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import orjson
import simdjson
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from app.bodies import read_body
from app.errors import ApiError, error_document
from app.signatures import verify_signature
from models import Delivery
from models.base import utcnow
from slipway.runtime import Runtime
from slipway.settings import GITHUB_BODY_LIMIT
from workers import inbox
from workers.registry import get_handler

log = logging.getLogger(__name__)

PATH = "/api/github/webhooks"
EVENT_NAME = re.compile(r"^[a-z_]{1,64}$")
Answer = tuple[int, dict[str, Any]]
_STATUS_LINES = {code: f"{code} {HTTPStatus(code).phrase}" for code in (200, 202, 400, 401, 405, 413, 500, 503)}


def mount(rt: Runtime, flask_wsgi: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: the webhook path answered here, everything else by Flask."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return flask_wsgi(environ, start_response)
        status, doc, headers = _answer(rt, environ)
        body = orjson.dumps(doc) + b"\n"
        start_response(_STATUS_LINES.get(status) or f"{status} {HTTPStatus(status).phrase}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
        return [body]

    return wsgi


def _answer(rt: Runtime, environ: dict[str, Any]) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    """Status, JSON document and extra headers for one request on the webhook path; errors as JSON."""
    if environ.get("REQUEST_METHOD") != "POST":
        return 405, error_document("method_not_allowed", "use POST"), [("Allow", "POST")]
    try:
        return (*receive(rt, environ), [])
    except ApiError as exc:
        return exc.status, error_document(exc.code, exc.message, exc.fields), list((exc.headers or {}).items())
    except HTTPException as exc:  # 413 from the body limit, 400 when the client stops sending
        status = exc.code or 400
        message = "request body too large" if status == 413 else (exc.description or exc.name)
        return status, error_document("payload_too_large" if status == 413 else "bad_request", message), []
    except Exception:
        log.exception("unhandled error")
        return 500, error_document("internal", "internal error; it has been logged"), []


def receive(rt: Runtime, environ: dict[str, Any]) -> Answer:
    """Accept one GitHub delivery (SPEC section 3, GitHub webhook endpoint)."""
    if not rt.settings.secrets:
        raise ApiError(503, "not_configured", "WEBHOOK_SECRET is not set, so deliveries cannot be verified")
    raw = read_body(GITHUB_BODY_LIMIT, environ)  # 413 from Content-Length before reading, or when a chunked body runs over
    guid = environ.get("HTTP_X_GITHUB_DELIVERY", "")
    if not guid or not verify_signature(rt.settings.secrets, raw, environ.get("HTTP_X_HUB_SIGNATURE_256")):
        log.warning("webhook rejected: bad signature or no delivery id", extra={"delivery": guid[:100]})
        raise ApiError(401, "unauthorized", "signature missing or wrong, or no X-GitHub-Delivery header")
    event = environ.get("HTTP_X_GITHUB_EVENT", "")
    if not EVENT_NAME.match(event) or len(guid) > 100 or "\x00" in guid:
        raise ApiError(400, "bad_request", "X-GitHub-Event or X-GitHub-Delivery header is malformed")
    mimetype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    doc = _json_document(raw, mimetype)
    return _store_and_enqueue(rt, environ, guid, event, raw, doc, _decode(doc))


def _json_document(raw: bytes, mimetype: str) -> bytes:
    """The JSON bytes of the delivery: the body itself, or the `payload` field of a form body."""
    if mimetype == "application/x-www-form-urlencoded":
        try:
            # Decoded here, not by parse_qs: given bytes it re-encodes every value as ASCII and so refuses
            # any non-ASCII character (an emoji in a commit message). surrogateescape keeps the exact bytes.
            fields = parse_qs(raw.decode("utf-8", "surrogateescape"), keep_blank_values=True, strict_parsing=False,
                              max_num_fields=100, encoding="utf-8", errors="surrogateescape")
        except ValueError as exc:
            raise ApiError(400, "bad_request", f"form body could not be parsed: {exc}") from None
        values = fields.get("payload")
        if not values:
            raise ApiError(400, "bad_request", "form body has no `payload` field")
        return values[0].encode("utf-8", "surrogateescape")
    return raw


def _decode(doc: bytes) -> dict[str, Any]:
    """The facts read at the door (action, installation, repository, ping's zen) from the JSON object.

    simdjson validates the whole document and builds Python objects only for what is read (about 11 µs
    for a 25 KB delivery against orjson's 42); whatever it refuses, json.loads decides, so every body gets
    exactly json.loads' answer. A parser per call: its proxies must never outlive it. (With a repeated key,
    simdjson reads the first and json.loads the last; GitHub's signed bodies have none.)
    """
    try:
        root = simdjson.Parser().parse(doc)
    except (ValueError, RuntimeError):
        return _facts(_loads(doc))
    if not isinstance(root, simdjson.Object):
        raise ApiError(400, "bad_request", "body must be a JSON object")
    return _facts(root)


def _loads(doc: bytes) -> dict[str, Any]:
    """json.loads, with its refusals as 400s; GitHub always sends an object."""
    try:
        payload = json.loads(doc)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_request", "body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "bad_request", "body must be a JSON object")
    return payload


_OBJECTS = (dict, simdjson.Object)


def _facts(payload: Any) -> dict[str, Any]:
    """Action, installation, repository and zen as plain values, read defensively (payloads are untrusted)."""
    inst = payload.get("installation")
    repo = payload.get("repository")
    inst_id = inst.get("id") if isinstance(inst, _OBJECTS) else None
    return {
        "action": _text(payload.get("action"), 64),
        "installation_id": inst_id if isinstance(inst_id, int) and not isinstance(inst_id, bool)
        and 0 < inst_id < 2**63 else None,
        "repository": _text(repo.get("full_name") if isinstance(repo, _OBJECTS) else None, 140),
        "zen": _text(payload.get("zen"), 1000),
    }


def _text(value: Any, limit: int) -> str | None:
    """A string the database can hold, cut to its column, or None.

    A NUL or a lone surrogate (JSON allows both as escapes) would fail the INSERT, and with it every
    delivery that shares the statement (workers/groupcommit.py); the raw body keeps the exact value.
    """
    if not isinstance(value, str):
        return None
    value = value[:limit]
    if "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _store_and_enqueue(rt: Runtime, environ: dict[str, Any], guid: str, event: str, raw: bytes, doc: bytes,
                       facts: dict[str, Any]) -> Answer:
    """Commit the delivery, then hand it to the queue; answer with what happened."""
    zen = facts.pop("zen")
    handled = get_handler(event, facts["action"]) is not None
    now = utcnow()
    values = {
        "guid": guid, "hook_id": _text(environ.get("HTTP_X_GITHUB_HOOK_ID"), 40) or None, "event": event,
        **facts, "state": "queued" if handled else "ignored", "received_at": now,
        "queued_at": now if handled else None, "finished_at": None if handled else now,
        "note": None if handled else f"Slipway does not act on {event}" + (f".{facts['action']}" if facts["action"] else ""),
        "body_sha256": hashlib.sha256(raw).hexdigest(), "body": doc,
    }
    try:
        stored = inbox.store(rt.engine, values)
        if stored is None:
            return _already_stored(rt, guid, values["body_sha256"])
    except DBAPIError:
        log.exception("database unavailable; delivery not stored", extra={"delivery": guid})
        raise ApiError(503, "unavailable", "database unavailable; GitHub will record a failed delivery") from None
    state = values["state"]
    if handled:
        state = _enqueue(rt, [guid])
    if event == "ping":
        return 200, {"zen": zen, "delivery": guid, "state": state}
    return 202, {"delivery": guid, "state": state}


def _enqueue(rt: Runtime, guids: list[str]) -> str:
    """Hand over to the transport; if it is down, the rows stay for the sweeper and the answer is still 2xx."""
    try:
        rt.transport.enqueue(guids)
        return "queued"
    except Exception as exc:
        log.warning("queue unavailable; the sweeper will queue the delivery",
                    extra={"delivery": ",".join(guids), "error": str(exc)})
        try:
            inbox.mark_unqueued(rt.engine, guids)
        except DBAPIError:
            pass  # the sweeper also re-queues 'queued' rows that nobody picked up
        return "received"


def _already_stored(rt: Runtime, guid: str, body_sha: str) -> Answer:
    """A redelivery (same GUID) or a replayed body under another GUID: nothing runs twice."""
    with rt.engine.connect() as conn:
        row = conn.execute(select(Delivery.guid, Delivery.state).where(Delivery.guid == guid)).first()
        first = None if row else conn.execute(
            select(Delivery.guid).where(Delivery.body_sha256 == body_sha)).scalar()
    if row is not None:
        body: dict[str, Any] = {"delivery": guid, "state": row.state, "duplicate": True}
        if row.state == "failed" and inbox.requeue(rt.engine, guid):
            # GitHub redelivers a delivery we failed: run it once more.
            body.update(state=_enqueue(rt, [guid]), requeued=True)
        return 200, body
    log.warning("replayed body under a new delivery id ignored", extra={"delivery": guid, "replay_of": first})
    return 200, {"delivery": guid, "duplicate": True, "replay_of": first}
