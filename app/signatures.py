"""GitHub's X-Hub-Signature-256 check over the raw body, with several secrets during a rotation."""

from __future__ import annotations

from githubkit.webhooks import verify

PREFIX = "sha256="


def verify_signature(secrets: list[str], body: bytes, header: str | None) -> bool:
    """True when the header is a sha256 HMAC of the raw body under any configured secret.

    githubkit's verify() falls back to SHA-1 for any other prefix, so the prefix is required here.
    """
    if not header or not header.startswith(PREFIX) or len(header) != len(PREFIX) + 64:
        return False
    ok = False
    for secret in secrets:
        ok |= verify(secret, body, header)  # no early exit: time does not tell which secret matched
    return ok
