"""Fuzzing the GitHub webhook receiver through the Flask test client (PostgreSQL, the production store).

Arbitrary headers, bodies, content types and signatures. Properties: never a 5xx; every answer is JSON;
nothing is stored unless the signature was valid; a wrong or missing signature is always 401; a valid
delivery (signed JSON object, well-formed headers) is always accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from models import Delivery
from tests import factories
from tests.conftest import SECRET, sign

pytestmark = [pytest.mark.postgres]

EVENT_NAME = re.compile(r"^[a-z_]{1,64}$")


class Recorder:
    """A transport that only remembers what it was handed (no job runs)."""

    def __init__(self) -> None:
        self.guids: list[str] = []

    def enqueue(self, guids: list[str]) -> None:
        self.guids.extend(guids)

    def ping(self) -> bool:
        return True

    def depth(self) -> int:
        return 0


@pytest.fixture
def receiver(make_runtime) -> tuple[Any, Any]:  # noqa: ANN001
    """(runtime, test client) on PostgreSQL with a transport that runs nothing."""
    from app import create_app

    rt = make_runtime("production", transport=Recorder(), webhook_secret=f"{SECRET},second-secret")
    return rt, create_app(rt=rt).test_client()


def count(rt: Any) -> int:
    with rt.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Delivery)).scalar_one()


# Header values as a WSGI server hands them over: latin-1 text without line breaks.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
    max_leaves=12)
payloads = st.one_of(
    st.sampled_from([factories.push(), factories.ping(), factories.pull_request("opened"),
                     factories.deployment_event(factories.deployment_obj(7)), factories.installation("created")]),
    st.dictionaries(st.sampled_from(["action", "installation", "repository", "sender", "zen", "ref", "after",
                                     "deployment", "deployment_status", "pull_request"]), json_values, max_size=6),
    json_values,
)


@st.composite
def bodies(draw: Any) -> tuple[bytes, str]:
    """(body bytes, content type): JSON (ASCII or raw UTF-8), form-encoded JSON, or any bytes."""
    kind = draw(st.sampled_from(["json", "utf8", "form", "bytes", "deep", "text"]))
    doc = draw(payloads)
    if kind == "json":
        return json.dumps(doc).encode(), "application/json"
    if kind == "utf8":
        return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass"), "application/json; charset=utf-8"
    if kind == "form":
        fields = {"payload": json.dumps(doc, ensure_ascii=draw(st.booleans()))}
        if draw(st.booleans()):
            fields[draw(st.text(max_size=8))] = draw(st.text(max_size=20))
        return urlencode(fields).encode("utf-8", "surrogatepass"), "application/x-www-form-urlencoded"
    if kind == "deep":
        depth = draw(st.integers(500, 50_000))
        return b"[" * depth + b"]" * depth, "application/json"
    if kind == "text":
        return draw(st.text(max_size=300)).encode("utf-8", "surrogatepass"), draw(header_text)
    return draw(st.binary(max_size=600)), draw(st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x",
         "application/octet-stream", ""]))


@st.composite
def signatures(draw: Any, body: bytes) -> tuple[str | None, bool, dict[str, str]]:
    """(X-Hub-Signature-256 value or None, whether it is valid, extra headers)."""
    kind = draw(st.sampled_from(["valid", "valid", "rotated", "wrong", "missing", "sha1", "garbage", "upper"]))
    if kind == "valid":
        return sign(body), True, {}
    if kind == "rotated":
        return sign(body, "second-secret"), True, {}
    if kind == "wrong":
        return sign(body, draw(st.text(min_size=1, max_size=20).filter(lambda s: s not in (SECRET, "second-secret")))), False, {}
    if kind == "missing":
        return None, False, {}
    if kind == "sha1":
        return None, False, {"X-Hub-Signature": "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()}
    if kind == "upper":
        return sign(body).upper(), False, {}
    return draw(header_text), False, {}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=st.composite(lambda draw: _draw_case(draw))())
def test_arbitrary_requests_never_5xx_and_store_only_signed_deliveries(receiver: tuple[Any, Any], case: Any) -> None:
    """Never a 5xx, always JSON; stored only with a valid signature; 401 without; valid deliveries accepted."""
    rt, client = receiver
    body, content_type, event, guid, (signature, valid), extra = case
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": guid, "Content-Type": content_type, **extra}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    before = count(rt)
    resp = client.post("/api/github/webhooks", data=body, headers={k: v for k, v in headers.items() if v is not None})
    after = count(rt)
    assert resp.status_code < 500, resp.get_data()[:300]
    assert resp.is_json and isinstance(resp.get_json(), dict), resp.get_data()[:300]
    if not valid or not guid:
        assert resp.status_code == 401, resp.get_json()
        assert after == before
    else:
        assert after - before in (0, 1)
        if after > before:
            assert 200 <= resp.status_code < 300
        if _well_formed(body, content_type, event, guid):
            assert 200 <= resp.status_code < 300, resp.get_json()


def _draw_case(draw: Any) -> tuple:
    body, content_type = draw(bodies())
    event = draw(st.one_of(st.sampled_from(["push", "ping", "deployment", "deployment_status", "installation",
                                                 "pull_request", "issues", "check_run", "status"]), header_text))
    guid = draw(st.one_of(st.uuids().map(str), header_text))
    signature, valid, extra = draw(signatures(body))
    return body, content_type, event, guid, (signature, valid), extra


def _well_formed(body: bytes, content_type: str, event: str, guid: str) -> bool:
    """A delivery GitHub could send: a JSON object (or a form with one in `payload`), sane headers."""
    if not EVENT_NAME.match(event) or len(guid) > 100 or guid.strip() != guid:
        return False
    mimetype = content_type.split(";")[0].strip().lower()
    try:
        if mimetype == "application/x-www-form-urlencoded":
            from urllib.parse import parse_qs

            values = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100).get("payload")
            doc = json.loads(values[0]) if values else None
        else:
            doc = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(doc, dict)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(min_size=1, max_size=200), ascii_escapes=st.booleans())
def test_form_encoded_deliveries_with_any_text_are_accepted(receiver: tuple[Any, Any], text: str,
                                                            ascii_escapes: bool) -> None:
    """A form-encoded delivery whose JSON carries any text (emoji, accents, astral planes) is accepted and
    stored exactly: GitHub's form bodies are percent-encoded UTF-8.

    Regression: parse_qs on bytes re-encoded every value as ASCII, so a non-ASCII character anywhere in the
    payload (a commit message, an author's name) turned a validly signed delivery into a 400.
    """
    rt, client = receiver
    payload = factories.push()
    payload["head_commit"]["message"] = text
    doc = json.dumps(payload, ensure_ascii=ascii_escapes)  # st.text() draws no lone surrogates
    body = urlencode({"payload": doc}).encode()
    resp = client.post("/api/github/webhooks", data=body, headers={
        "X-GitHub-Event": "push", "X-GitHub-Delivery": hashlib.sha1(body).hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded", "X-Hub-Signature-256": sign(body)})
    assert resp.status_code in (200, 202), resp.get_json()
    with rt.engine.connect() as conn:
        stored = conn.execute(select(Delivery.body).where(Delivery.guid == hashlib.sha1(body).hexdigest())).scalar()
    assert bytes(stored) == doc.encode()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats(allow_nan=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)
_payloads = st.fixed_dictionaries({}, optional={
    "action": _json_values, "zen": _json_values, "installation": st.dictionaries(
        st.sampled_from(["id", "node_id"]), _json_values, max_size=2) | _json_values,
    "repository": st.dictionaries(st.sampled_from(["full_name", "id"]), _json_values, max_size=2) | _json_values})


@given(doc=_payloads | _json_values, raw=st.booleans())
@settings(max_examples=300, deadline=None)
def test_decode_reads_what_json_loads_reads(doc: Any, raw: bool) -> None:
    """The fast decode (simdjson, json.loads on refusal) answers every body exactly as json.loads would."""
    from app.errors import ApiError
    from app.webhooks import _decode, _facts

    body = json.dumps(doc, ensure_ascii=raw).encode("utf-8", "surrogatepass")
    try:
        expected: Any = json.loads(body)
        expected = _facts(expected) if isinstance(expected, dict) else "not an object"
    except ValueError:
        expected = "invalid"
    try:
        got: Any = _decode(body)
    except ApiError as exc:
        got = "not an object" if "object" in exc.message else "invalid"
    assert got == expected
