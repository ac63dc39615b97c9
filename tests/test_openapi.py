"""The OpenAPI document: served without auth, describes every route of the app (and nothing else), and the
answers of the endpoints it describes hold against its schemas.

`check_answer()` is the helper the API tests use: it finds the operation's response schema for the status
and validates the JSON body, with `jsonschema` when it is installed, else with the small checker below.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime
from typing import Any

import pytest

from app.apikeys import create_key
from app.openapi import document
from tests.conftest import sign

DOC = document()
SEEN_SHAS = "38d02f1d7aab64678a7ad3eeb2ad2887ce7253f5"


# --------------------------------------------------------------------------- the checker


def resolve(ref: str) -> Any:
    """A local `#/...` reference of the document."""
    node: Any = DOC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(value: Any, name: str) -> bool:
    """JSON Schema's types (booleans are not numbers)."""
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _format_ok(value: Any, fmt: str | None) -> bool:
    """date-time and date, the formats the answers use."""
    if not isinstance(value, str) or fmt not in ("date-time", "date"):
        return True
    try:
        (datetime.fromisoformat(value.replace("Z", "+00:00")) if fmt == "date-time" else date.fromisoformat(value))
    except ValueError:
        return False
    return fmt == "date" or "T" in value


def errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Every way `value` breaks `schema` (the JSON Schema 2020-12 keywords this document uses)."""
    if "$ref" in schema:
        return errors(value, {**resolve(schema["$ref"]), **{k: v for k, v in schema.items() if k != "$ref"}}, path)
    out: list[str] = []
    types = schema.get("type")
    if types is not None and not any(_is_type(value, t) for t in ([types] if isinstance(types, str) else types)):
        return [f"{path}: {value!r} is not of type {types}"]
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if not _format_ok(value, schema.get("format")):
        out.append(f"{path}: {value!r} is not a {schema['format']}")
    out += _scalar_errors(value, schema, path)
    if isinstance(value, dict):
        out += _object_errors(value, schema, path)
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{path}: more than {schema['maxItems']} items")
        for i, item in enumerate(value):
            out += errors(item, schema.get("items", {}), f"{path}[{i}]")
    for sub in schema.get("allOf", []):
        out += errors(value, sub, path)
    for key, wanted in (("oneOf", 1), ("anyOf", None)):
        if key in schema:
            ok = sum(1 for sub in schema[key] if not errors(value, sub, path))
            if (wanted and ok != wanted) or (not wanted and not ok):
                out.append(f"{path}: matches {ok} of the {key} schemas")
    return out


def _scalar_errors(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Bounds, lengths and patterns."""
    out = []
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            out.append(f"{path}: length {len(value)} out of bounds")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: {value!r} does not match {schema['pattern']}")
    return out


def _object_errors(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    """required, properties and additionalProperties."""
    out = [f"{path}: missing {name!r}" for name in schema.get("required", []) if name not in value]
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in props:
            out += errors(item, props[name], f"{path}.{name}")
        elif extra is False:
            out.append(f"{path}: unexpected property {name!r}")
        elif isinstance(extra, dict):
            out += errors(item, extra, f"{path}.{name}")
    return out


def validate(value: Any, schema: dict[str, Any]) -> None:
    """Raise AssertionError when `value` does not hold against `schema`."""
    try:
        import jsonschema
    except ImportError:
        problems = errors(value, schema)
        assert not problems, "\n".join(problems[:20])
        return
    root = {**schema, "components": DOC["components"]}  # so that #/components/... references resolve
    jsonschema.Draft202012Validator(root, format_checker=jsonschema.FormatChecker()).validate(value)


def operation(method: str, path: str) -> dict[str, Any]:
    """The documented operation."""
    return DOC["paths"][path][method.lower()]


def check_answer(method: str, path: str, resp: Any) -> Any:
    """Hold a JSON answer against the document's schema for its operation and status; returns the body."""
    responses = operation(method, path)["responses"]
    assert str(resp.status_code) in responses, f"{method} {path}: {resp.status_code} is not documented"
    documented = responses[str(resp.status_code)]
    documented = resolve(documented["$ref"]) if "$ref" in documented else documented
    content = documented.get("content", {})
    if "application/json" not in content:
        assert not resp.is_json, f"{method} {path}: {resp.status_code} answered JSON, documented otherwise"
        return None
    assert resp.is_json, f"{method} {path}: {resp.status_code} did not answer JSON"
    body = resp.get_json()
    validate(body, content["application/json"]["schema"])
    return body


# --------------------------------------------------------------------------- the checker checks


@pytest.mark.parametrize(("value", "ok"), [
    ({"error": {"code": "x", "message": "y"}}, True),
    ({"error": {"code": "x", "message": "y", "fields": {"a": "b"}}}, True),
    ({"error": {"code": "x"}}, False),  # message missing
    ({"error": {"code": "x", "message": "y"}, "more": 1}, False),  # additionalProperties
    ({"error": {"code": 1, "message": "y"}}, False),  # type
    ({"error": {"code": "x", "message": "y", "fields": {"a": 1}}}, False),  # additionalProperties schema
])
def test_checker_is_not_vacuous(value: Any, ok: bool) -> None:
    """The checker refuses what breaks the schema."""
    schema = {"$ref": "#/components/schemas/Error"}
    if ok:
        validate(value, schema)
    else:
        with pytest.raises(Exception):  # noqa: B017 - AssertionError, or jsonschema's ValidationError
            validate(value, schema)


def test_checker_formats_and_nullables() -> None:
    """Times must be ISO 8601 with a Z; nullable types accept null and nothing else."""
    validate("2026-01-01T00:00:00Z", {"$ref": "#/components/schemas/Time"})
    validate(None, {"$ref": "#/components/schemas/NullableTime"})
    for bad in ("2026-01-01T00:00:00+00:00", "yesterday", 5):
        with pytest.raises(Exception):  # noqa: B017
            validate(bad, {"$ref": "#/components/schemas/Time"})


# --------------------------------------------------------------------------- the document


def _refs(node: Any) -> list[str]:
    """Every $ref in the document."""
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_document_basics() -> None:
    """OpenAPI 3.1, every reference resolves, every operation has an id, a summary and responses."""
    assert DOC["openapi"] == "3.1.0"
    for ref in _refs(DOC):
        assert resolve(ref) is not None, ref
    ids = []
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            assert op.get("summary") and op.get("responses"), f"{method} {path}"
            ids.append(op["operationId"])
    assert len(ids) == len(set(ids))


def documented() -> set[tuple[str, str]]:
    """(METHOD, path) pairs of the document."""
    return {(m.upper(), p) for p, item in DOC["paths"].items() for m in item}


def routed(app: Any) -> set[tuple[str, str]]:
    """(METHOD, path) pairs the app answers, in OpenAPI's path syntax."""
    pairs = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", r"{\1}", rule.rule)
        pairs |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return pairs | app.extensions["slipway_wsgi_routes"]  # the webhook, answered in front of Flask


def test_every_route_is_documented_and_nothing_else(client: Any) -> None:
    """The document and the app's URL map name the same endpoints."""
    app_routes = routed(client.application)
    assert app_routes - documented() == set(), "routes missing from app/openapi.yml"
    assert documented() - app_routes == set(), "documented endpoints the app does not have"


def test_path_parameters_are_declared() -> None:
    """Each {name} in a path has its parameter."""
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if "$ref" not in p and p["in"] == "path"}
            assert set(re.findall(r"{(\w+)}", path)) == declared, f"{method} {path}"


def test_served_without_auth_as_json(client: Any) -> None:
    """GET /api/v1/openapi.json: no key needed; the same document."""
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert resp.get_json() == json.loads(json.dumps(DOC))


# --------------------------------------------------------------------------- the other endpoints' answers


def test_health_answers(client: Any) -> None:
    """/healthz and /readyz."""
    check_answer("GET", "/healthz", client.get("/healthz"))
    check_answer("GET", "/readyz", client.get("/readyz"))


def test_github_webhook_answers(client: Any) -> None:
    """Accepted, duplicate, replay, ping, unsigned and malformed deliveries."""
    body = json.dumps({"action": "opened", "repository": {"full_name": "o/r"}}).encode()
    guid = str(uuid.uuid4())

    def post(raw: bytes, guid: str, event: str = "issues", signature: str | None = None) -> Any:
        return client.post("/api/github/webhooks", data=raw, headers={
            "X-GitHub-Event": event, "X-GitHub-Delivery": guid, "Content-Type": "application/json",
            "X-Hub-Signature-256": signature or sign(raw)})

    path = "/api/github/webhooks"
    assert check_answer("POST", path, post(body, guid))["state"] == "ignored"
    assert check_answer("POST", path, post(body, guid))["duplicate"] is True
    assert check_answer("POST", path, post(body, str(uuid.uuid4())))["replay_of"] == guid
    ping = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    assert check_answer("POST", path, post(ping, str(uuid.uuid4()), "ping"))["zen"]
    assert post(body, str(uuid.uuid4()), signature="sha256=" + "0" * 64).status_code == 401
    check_answer("POST", path, post(body, str(uuid.uuid4()), signature="sha256=" + "0" * 64))
    check_answer("POST", path, post(b"not json", str(uuid.uuid4())))


def test_inbox_answers(client: Any, rt: Any) -> None:
    """The deliveries list and one delivery, with an admin key; 401, 403 and 404."""
    _, admin = create_key(rt.engine, "admin", "admin")
    _, reader = create_key(rt.engine, "reader", "read")
    raw = json.dumps({"zen": "z"}).encode()
    guid = str(uuid.uuid4())
    client.post("/api/github/webhooks", data=raw, headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": guid,
                                                           "X-Hub-Signature-256": sign(raw),
                                                           "Content-Type": "application/json"})
    auth = {"Authorization": f"Bearer {admin}"}
    items = check_answer("GET", "/api/v1/deliveries", client.get("/api/v1/deliveries", headers=auth))["items"]
    assert [d["guid"] for d in items] == [guid]
    check_answer("GET", "/api/v1/deliveries/{guid}", client.get(f"/api/v1/deliveries/{guid}", headers=auth))
    check_answer("GET", "/api/v1/deliveries/{guid}", client.get("/api/v1/deliveries/nope", headers=auth))
    check_answer("GET", "/api/v1/deliveries", client.get("/api/v1/deliveries?state=bogus", headers=auth))
    check_answer("GET", "/api/v1/deliveries", client.get("/api/v1/deliveries"))
    check_answer("GET", "/api/v1/deliveries", client.get("/api/v1/deliveries",
                                                         headers={"Authorization": f"Bearer {reader}"}))


def test_deploy_webhook_answers(client: Any, rt: Any) -> None:
    """The four deploy shapes: success, duplicate and error answers."""
    _, key = create_key(rt.engine, "ci", "deploy", rate="1000/minute")
    auth = {"Authorization": f"Bearer {key}"}
    canonical = {"environment": "production", "repository": "o/r", "commit_sha": SEEN_SHAS, "dedup_id": "1",
                 "deployer": {"name": "ci"}, "commit": {"sha": SEEN_SHAS, "date": "2026-01-01T00:00:00Z"}}
    for expected in (201, 200):
        resp = client.post("/api/v1/deployments", json=canonical, headers=auth)
        assert resp.status_code == expected
        check_answer("POST", "/api/v1/deployments", resp)
    check_answer("POST", "/api/v1/deployments", client.post("/api/v1/deployments", json={}, headers=auth))
    check_answer("POST", "/api/v1/deployments", client.post("/api/v1/deployments", json=canonical))
    vibe = {"environment": "staging", "repository": "o/r", "commit_sha": SEEN_SHAS, "status": "success"}
    check_answer("POST", "/api/v1/deployments/webhook", client.post("/api/v1/deployments/webhook", json=vibe,
                                                                    headers=auth))
    check_answer("POST", "/api/v1/deployments/webhook", client.post("/api/v1/deployments/webhook", json={},
                                                                    headers=auth))
    check_answer("POST", "/api/v1/deployments/webhook", client.post("/api/v1/deployments/webhook", json=vibe))
    pulse = {"environment": "production", "version": "v1", "commit": SEEN_SHAS, "build_date": "2026-01-15"}
    check_answer("POST", "/api/deployments", client.post("/api/deployments", json=pulse, headers=auth))
    check_answer("POST", "/api/deployments", client.post("/api/deployments", json={}, headers=auth))
    check_answer("POST", "/api/deployments", client.post("/api/deployments", json=pulse))
    ops = {"service": "cart", "description": "Deploy #1", "deployed_at": "2026-02-01 13:28:33"}
    path = "/integrations/deploy/{key}"
    check_answer("POST", path, client.post(f"/integrations/deploy/{key}", json=ops))
    check_answer("POST", path, client.post(f"/integrations/deploy/{key}", json={}))
    check_answer("POST", path, client.post("/integrations/deploy/nope", json=ops))

