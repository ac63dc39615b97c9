"""The generic deploy webhook (SPEC section 6): one canonical endpoint and three compatible ones.

Every endpoint runs the same steps: key (401, 403 for a scope without deploy), the key's rate limit
(429), JSON body (415, 413, 400), the shape's own validation (422), the key's environments (403), one
transaction to store, then the mirror job. Each step refuses with a `Refusal`, which the endpoint's
`Shape` words in its original system's error format, so existing CI steps see the answers they know.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import RequestEntityTooLarge

from app import deploy_formats as df
from app import limits
from app.bodies import read_body
from app.apikeys import KeyInfo, find_key, presented_key
from app.deploy_formats import Answer, DeployReport, InvalidReport
from app.state import runtime
from models.base import utcnow
from slipway.settings import API_BODY_LIMIT
from workers import reports
from workers.inbox import submit_internal

log = logging.getLogger(__name__)
bp = Blueprint("deploy_api", __name__)

MIRROR_EVENT = "slipway.mirror"
_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 413: "payload_too_large",
          415: "unsupported_media_type", 422: "invalid", 429: "rate_limited", 503: "unavailable"}
_TITLES = {400: "Body Error", 401: "Unauthorized", 403: "Forbidden", 413: "Payload Too Large",
           415: "Unsupported Media Type", 429: "Too Many Requests", 503: "Service Unavailable"}


class Refusal(Exception):
    """A request refused before anything was stored; `field` names the part at fault (e.g. body)."""

    def __init__(self, status: int, message: str, *, field: str | None = None,
                 invalid: InvalidReport | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.invalid = status, message, field, invalid


@dataclass(frozen=True)
class Shape:
    """How one endpoint reads its body and words its answers."""

    name: str
    parse: Callable[[Any, datetime], DeployReport]
    refuse: Callable[[Refusal], Answer]
    accept: Callable[[reports.Stored, DeployReport, dict[str, Any]], Answer]
    challenge: bool = True  # answer 401 with WWW-Authenticate (not when the key is in the URL)


# --------------------------------------------------------------------------- endpoints


@bp.post("/api/v1/deployments")
def canonical() -> Response:
    """Slipway's own request shape (SPEC section 6)."""
    return _receive(CANONICAL, presented_key())


@bp.post("/api/v1/deployments/webhook")
def vibe() -> Response:
    """Vibe Monitor's deployment webhook."""
    return _receive(VIBE, presented_key())


@bp.post("/api/deployments")
def pulse() -> Response:
    """Laravel Pulse's deployment tracking endpoint."""
    return _receive(PULSE, presented_key())


@bp.post("/integrations/deploy/<key>")
def opslevel(key: str) -> Response:
    """OpsLevel's deploy integration: the key is the last part of the URL."""
    return _receive(OPSLEVEL, key)


# --------------------------------------------------------------------------- the steps


def _receive(shape: Shape, presented: str) -> Response:
    """Run the steps; answer in the shape's words."""
    rt, now = runtime(), utcnow()
    try:
        key = _authorise(rt, presented)
        report = _report(shape, key, now)
        stored = reports.store(rt.engine, report, reports.Reporter(key.id, key.name), now)
    except Refusal as refusal:
        return _refused(shape, refusal)
    except (OperationalError, InterfaceError):
        log.exception("database unavailable while storing a deploy report")
        return _refused(shape, Refusal(503, "the database is unavailable; retry later"))
    mirror = _mirror(rt, stored)
    log.info("deploy report %s", stored.outcome, extra={
        "deployment": stored.deployment.id, "format": shape.name, "key_id": key.id, "matched": stored.match.matched})
    return _json(shape.accept(stored, report, mirror))


def _authorise(rt: Any, presented: str) -> KeyInfo:
    """The key, allowed to deploy and within its rate; one 401 for every kind of bad key."""
    key = find_key(rt.engine, presented)
    if key is None:
        raise Refusal(401, "missing or invalid API key")
    if not key.may("deploy"):
        raise Refusal(403, f"this key's scope ({key.scope}) does not allow deploy")
    g.api_key = key
    try:
        limits.enforce()
    except limits.RateLimitExceeded:
        rate = limits.rate_for(key.rate, rt.settings.key_rate)
        raise Refusal(429, f"rate limit of this key ({rate}) exceeded; retry after Retry-After seconds") from None
    return key


def _report(shape: Shape, key: KeyInfo, now: datetime) -> DeployReport:
    """The validated report, if the key may report its environment."""
    body = _json_body()
    try:
        report = shape.parse(body, now)
    except InvalidReport as exc:
        raise Refusal(422, f"invalid fields: {', '.join(exc.fields)}", invalid=exc) from None
    if not key.may_report(report.environment):
        allowed = ", ".join(key.environments or ())
        raise Refusal(403, f"this key may not report this environment; it may report: {allowed}",
                      field="environment")
    return report


def _json_body() -> Any:
    """The decoded JSON body: 415 unless JSON, 413 over the limit, 400 when it does not decode."""
    if not is_json_type(request.mimetype):
        raise Refusal(415, "Content-Type must be application/json")
    return decode_json(_read_body())


def _read_body() -> bytes:
    """The body, refused in this endpoint's own words past the limit."""
    try:
        return read_body(API_BODY_LIMIT)
    except RequestEntityTooLarge:
        raise Refusal(413, f"request body is larger than {API_BODY_LIMIT // (1024 * 1024)} MiB") from None


def is_json_type(mimetype: str) -> bool:
    """application/json or any +json type (Flask has already lower-cased it and dropped parameters)."""
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


class _NotJsonConstant(ValueError):
    """NaN, Infinity or -Infinity: Python's json accepts them, JSON does not."""


def _refuse_constant(name: str) -> Any:
    """Refuse a non-finite number literal."""
    raise _NotJsonConstant(name)


def decode_json(raw: bytes) -> Any:
    """Decode a UTF-8 JSON document (a leading BOM is tolerated); Refusal(400) says exactly what is wrong."""
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise Refusal(400, f"is not valid UTF-8 (byte {exc.start})", field="body") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise Refusal(400, "nests arrays or objects too deeply", field="body") from None
    except json.JSONDecodeError as exc:
        raise Refusal(400, f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                      field="body") from None
    except _NotJsonConstant:
        raise Refusal(400, "contains NaN or Infinity, which JSON does not allow", field="body") from None
    except ValueError:  # an integer literal longer than Python converts (sys.get_int_max_str_digits)
        raise Refusal(400, "contains a number with too many digits", field="body") from None


def _mirror(rt: Any, stored: reports.Stored) -> dict[str, Any]:
    """Queue the mirror job when the repository is installed and GitHub is configured; say why not otherwise."""
    row = stored.deployment
    reason = reports.mirror_skip_reason(stored.outcome, stored.match.installation_id, rt.settings.github_enabled,
                                        bool(row.sha or row.ref))
    if reason:
        return {"queued": False, "reason": reason}
    payload = {"deployment_id": row.id, "repository": row.repository, "installation_id": stored.match.installation_id}
    try:
        job = submit_internal(rt.engine, rt.transport, MIRROR_EVENT, payload)
    except Exception:  # the report is committed; a lost mirror must not turn it into an error
        log.exception("could not queue the mirror job", extra={"deployment": row.id})
        return {"queued": False, "reason": "the mirror job could not be stored; see the server log"}
    return {"queued": True, "job": job}


def _refused(shape: Shape, refusal: Refusal) -> Response:
    """The shape's error answer, with the headers its status calls for."""
    resp = _json(shape.refuse(refusal))
    if refusal.status == 401 and shape.challenge:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="slipway"'
    if refusal.status == 503:
        resp.headers["Retry-After"] = "5"
    return resp


def _json(answer: Answer) -> Response:
    """A JSON response from (status, body)."""
    status, body = answer
    resp = jsonify(body)
    resp.status_code = status
    return resp


# --------------------------------------------------------------------------- answers


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def deployment_json(stored: reports.Stored, mirror: dict[str, Any]) -> dict[str, Any]:
    """The stored deployment as the API shows it, with what this report did to it."""
    row, match = stored.deployment, stored.match
    extra = row.extra or {}
    return {
        "id": row.id, "repository": row.repository, "service": row.service, "environment": row.environment,
        "environment_id": stored.environment_id, "sha": row.sha, "ref": row.ref, "version": row.version,
        "status": row.status, "source": row.source, "deployer": row.deployer, "description": row.description,
        "deploy_url": extra.get("deploy_url"), "environment_url": row.environment_url,
        "github_deployment_id": row.github_deployment_id, "build_id": row.build_id, "dedup_id": row.dedup_id,
        "deploy_number": extra.get("deploy_number"), "created_at": iso(row.created_at),
        "deployed_at": iso(row.deployed_at), "status_at": iso(row.status_at),
        "matched": match.matched, "suggestion": match.suggestion,
        "outcome": stored.outcome, "duplicate": stored.duplicate, "mirror": mirror,
    }


def _created_or_ok(stored: reports.Stored) -> int:
    """201 for a new deployment, 200 for a duplicate or a deployment moved along."""
    return 201 if stored.outcome == "created" else 200


def _match_fields(stored: reports.Stored) -> dict[str, Any]:
    """Slipway's additions to a compatible answer: never a silent success for an unknown target."""
    fields: dict[str, Any] = {"matched": stored.match.matched}
    if not stored.match.matched:
        fields["suggestion"] = stored.match.suggestion
    if stored.duplicate:
        fields["duplicate"] = True
    return fields


def _canonical_accept(stored: reports.Stored, report: DeployReport, mirror: dict[str, Any]) -> Answer:
    """201 or 200 with the deployment."""
    return _created_or_ok(stored), deployment_json(stored, mirror)


def _canonical_refuse(refusal: Refusal) -> Answer:
    """Slipway's `{"error": {"code", "message", "fields"}}`."""
    if refusal.invalid is not None:
        return df.canonical_invalid(refusal.invalid)
    fields = {refusal.field: refusal.message} if refusal.field else None
    message = f"request {refusal.field} {refusal.message}" if refusal.field == "body" else refusal.message
    return df.canonical_error(refusal.status, _CODES.get(refusal.status, "error"), message, fields)


def _pulse_accept(stored: reports.Stored, report: DeployReport, mirror: dict[str, Any]) -> Answer:
    """Pulse's `{"status": "recorded"}`."""
    _, body = df.pulse_created()
    return _created_or_ok(stored), {**body, **_match_fields(stored)}


def _pulse_refuse(refusal: Refusal) -> Answer:
    """Laravel's error bodies; a body that does not decode fails validation there (422)."""
    if refusal.invalid is not None:
        return df.pulse_error(422, refusal.invalid)
    if refusal.field == "body":
        return df.pulse_error(422, {"body": refusal.message})
    if refusal.status in (401, 429):
        return df.pulse_error(refusal.status)
    return refusal.status, {"message": refusal.message}


def _vibe_accept(stored: reports.Stored, report: DeployReport, mirror: dict[str, Any]) -> Answer:
    """Vibe Monitor's 201 body."""
    record = deployment_json(stored, mirror)
    record["deployed_at"] = record["deployed_at"] or iso(report.deployed_at)  # Vibe echoes the reported time
    _, body = df.vibe_created(record)
    return _created_or_ok(stored), {**body, **_match_fields(stored)}


def _vibe_refuse(refusal: Refusal) -> Answer:
    """FastAPI's `{"detail": ...}`; a body that does not decode is FastAPI's 422 json_invalid."""
    if refusal.invalid is not None:
        return df.vibe_error(422, refusal.invalid)
    if refusal.field == "body":
        return df.vibe_error(422, InvalidReport({"body": refusal.message}, {"body": "json_invalid"}))
    return df.vibe_error(refusal.status, refusal.message)


def _opslevel_accept(stored: reports.Stored, report: DeployReport, mirror: dict[str, Any]) -> Answer:
    """OpsLevel's 202 results."""
    if stored.duplicate:
        return df.opslevel_duplicate()
    if not stored.match.matched:
        return df.opslevel_no_service(report.service or "", stored.match.suggestion)
    return df.opslevel_ok()


def _opslevel_refuse(refusal: Refusal) -> Answer:
    """OpsLevel's `{"errors": [{"status", "title", "detail"}]}`; invalid fields are its 400."""
    if refusal.invalid is not None:
        return df.opslevel_invalid(refusal.invalid)
    detail = f"{refusal.field} {refusal.message}" if refusal.field == "body" else refusal.message
    return df.opslevel_errors(refusal.status, [(_TITLES.get(refusal.status, "Error"), detail)])


CANONICAL = Shape("canonical", df.parse_canonical, _canonical_refuse, _canonical_accept)
PULSE = Shape("pulse", df.parse_pulse, _pulse_refuse, _pulse_accept)
VIBE = Shape("vibe", df.parse_vibe, _vibe_refuse, _vibe_accept)
OPSLEVEL = Shape("opslevel", df.parse_opslevel, _opslevel_refuse, _opslevel_accept, challenge=False)
