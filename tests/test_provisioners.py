"""The http provisioner (signed Standard Webhooks requests, SSRF rules) and server-wide defaults."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from models import Delivery
from tests import factories as f
from tests.conftest import Deliveries, drain
from workers.urlsafety import UnsafeURL, check_url

REPO = f.REPO


class Sink:
    """A provisioner endpoint on 127.0.0.1 that records requests and answers with a fixed JSON."""

    def __init__(self, answer: dict) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                raw = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *a) -> None:  # noqa: ANN002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/slipway"

    def close(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink():  # noqa: ANN201
    """A provisioner that reports success at once."""
    s = Sink({"status": "success", "environment_url": "https://staging.example.com", "log_url": "https://ci/1"})
    yield s
    s.close()


def _http_config(fake, url: str) -> None:  # noqa: ANN001
    fake.set_file(REPO, ".github/slipway.yml", "environments:\n  staging:\n    on: push\n    required_checks: []\n"
                                               f"provisioner:\n  kind: http\n  url: \"{url}\"\n")


def test_http_provisioner_gets_a_signed_request_and_its_answer_becomes_statuses(
        make_runtime, github_settings, fake_github, sink) -> None:  # noqa: ANN001
    """POST with Standard Webhooks headers; in_progress when accepted; the answered outcome is posted."""
    from app import create_app

    rt = make_runtime("embedded", allow_private_urls=True, provisioner_secret="prov-secret", **github_settings)
    rt.transport.start()
    _http_config(fake_github, sink.url)
    sha = f.sha("http")
    assert Deliveries(create_app(rt=rt).test_client()).post("push", f.push(after=sha)).status_code == 202
    drain(rt)
    (headers, body), = sink.requests
    payload = json.loads(body)
    assert payload["action"] == "deploy" and payload["sha"] == sha and payload["environment"] == "staging"
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(b"prov-secret", signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == expected
    gh_dep = fake_github.deployments[REPO][0]["id"]
    posted = [c.json for c in fake_github.calls_to("POST", rf"/deployments/{gh_dep}/statuses$")]
    assert [p["state"] for p in posted] == ["queued", "in_progress", "success"]
    assert posted[-1]["environment_url"] == "https://staging.example.com"


def test_http_provisioner_refuses_private_addresses_by_default(make_runtime, github_settings, fake_github, sink) -> None:  # noqa: ANN001
    """Without ALLOW_PRIVATE_URLS a loopback provisioner URL is refused; the sink sees no connection."""
    from app import create_app

    rt = make_runtime("embedded", **github_settings)
    rt.transport.start()
    _http_config(fake_github, sink.url)
    guid = Deliveries(create_app(rt=rt).test_client()).post("push", f.push(after=f.sha("ssrf"))).get_json()["delivery"]
    drain(rt)
    with rt.engine.connect() as conn:
        row = conn.execute(select(Delivery).where(Delivery.guid == guid)).one()
    assert row.state == "failed" and "provisioner URL refused" in row.error
    assert sink.requests == []


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x", "http://[::1]/x", "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/",
    "http://192.168.0.1/", "http://172.16.0.1/", "http://[::ffff:127.0.0.1]/", "http://2130706433/",
    "http://localhost:8080/", "file:///etc/passwd", "ftp://example.com/", "http://user:pw@example.com/",
    "http://0.0.0.0/", "http://[fd00::1]/",
])
def test_ssrf_rules_refuse_internal_targets(url: str) -> None:
    """Loopback, link-local, private, ULA, mapped and numeric forms, and other schemes are refused."""
    with pytest.raises(UnsafeURL):
        check_url(url)


def test_ssrf_rules_allow_private_when_configured() -> None:
    """ALLOW_PRIVATE_URLS lets an operator target internal deployers."""
    assert check_url("http://127.0.0.1:9/x", allow_private=True) == ["127.0.0.1"]


def test_server_defaults_apply_without_a_repository_file(make_runtime, github_settings, fake_github, tmp_path) -> None:  # noqa: ANN001
    """SLIPWAY_CONFIG gives every repository without its own file the operator's defaults."""
    from app import create_app

    server = tmp_path / "defaults.yml"
    server.write_text("environments:\n  qa:\n    on: push\n    required_checks: []\n")
    rt = make_runtime("embedded", slipway_config=str(server), **github_settings)
    rt.transport.start()
    assert Deliveries(create_app(rt=rt).test_client()).post("push", f.push(after=f.sha("qa"))).status_code == 202
    drain(rt)
    assert [c.json["environment"] for c in fake_github.calls_to("POST", r"/deployments$")] == ["qa"]
