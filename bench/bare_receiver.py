"""The ingest benchmark's baseline: a bare Flask receiver that only verifies GitHub's signature.

Same route and answer codes as Slipway (202 when the X-Hub-Signature-256 HMAC of the raw body matches,
401 otherwise) but nothing is parsed, stored or queued. `bench/ingest.py` serves it with gunicorn using
Slipway's own worker count and worker class:

    WEBHOOK_SECRET=... gunicorn --chdir bench -w 4 -k sync bare_receiver:app
"""

from __future__ import annotations

import hashlib
import hmac
import os

from flask import Flask, jsonify, request

SECRETS = [s.strip().encode() for s in os.environ.get("WEBHOOK_SECRET", "").split(",") if s.strip()]
PREFIX = "sha256="

app = Flask(__name__)


def _verified(body: bytes, header: str | None) -> bool:
    """True when the header is the sha256 HMAC of the body under one of the secrets."""
    if not header or not header.startswith(PREFIX):
        return False
    ok = False
    for secret in SECRETS:
        ok |= hmac.compare_digest(header, PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest())
    return ok


@app.post("/api/github/webhooks")
def receive():  # noqa: ANN201
    """Verify and answer; nothing else."""
    raw = request.get_data(cache=False)
    guid = request.headers.get("X-GitHub-Delivery", "")
    if not guid or not _verified(raw, request.headers.get("X-Hub-Signature-256")):
        return jsonify({"error": {"code": "unauthorized", "message": "bad signature"}}), 401
    return jsonify({"delivery": guid, "state": "verified"}), 202
