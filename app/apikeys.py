"""API keys: created once and shown once, stored as SHA-256 hashes, scoped, revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import wraps
from typing import Any, Callable

from flask import g, request
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from app.errors import ApiError
from app.state import runtime
from models import ApiKey
from models.base import utcnow
from models.db import session_scope
from models.keys import SCOPES

PREFIX = "slw_"
# What each scope may do; admin may do everything.
GRANTS = {"deploy": {"deploy"}, "read": {"read"}, "admin": {"deploy", "read", "admin"}}


def hash_key(plaintext: str) -> str:
    """The stored form of a key: keys are 256-bit random, so a plain SHA-256 suffices."""
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    """The authenticated key, as handlers see it."""

    id: int
    name: str
    scope: str
    environments: tuple[str, ...] | None
    rate: str | None
    key_hash: str

    def may(self, action: str) -> bool:
        """True when the scope grants the action."""
        return action in GRANTS.get(self.scope, set())

    def may_report(self, environment: str) -> bool:
        """True when the key may report this environment (no list = every environment)."""
        return not self.environments or environment in self.environments


def create_key(engine: Engine, name: str, scope: str = "deploy", environments: list[str] | None = None,
               rate: str | None = None) -> tuple[ApiKey, str]:
    """Create a key; the plaintext is returned here and never again."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    plaintext = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=plaintext[:10], key_hash=hash_key(plaintext), scope=scope,
                 environments=list(environments) or None if environments else None, rate=rate)
    with session_scope(engine) as s:
        s.add(row)
        s.flush()
        s.refresh(row)
    return row, plaintext


def list_keys(engine: Engine) -> list[ApiKey]:
    """Every key, newest first, revoked ones included."""
    with session_scope(engine) as s:
        return list(s.exec(select(ApiKey).order_by(ApiKey.id.desc())).scalars())  # type: ignore[call-overload]


def revoke_key(engine: Engine, key_id: int) -> bool:
    """Revoke a key at once; True if it existed and was active."""
    with engine.begin() as conn:
        return conn.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                            .values(revoked_at=utcnow())).rowcount == 1


def find_key(engine: Engine, plaintext: str) -> KeyInfo | None:
    """The active key with this plaintext, or None (unknown and revoked look the same)."""
    if not plaintext or len(plaintext) > 200:
        return None
    return _active(engine, ApiKey.key_hash == hash_key(plaintext))


def find_key_by_id(engine: Engine, key_id: int) -> KeyInfo | None:
    """The active key with this id (a dashboard session remembers the key it signed in with)."""
    return _active(engine, ApiKey.id == key_id)


def _active(engine: Engine, where: Any) -> KeyInfo | None:
    """One active key matching the condition."""
    with engine.connect() as conn:
        row = conn.execute(select(ApiKey).where(where, ApiKey.revoked_at.is_(None))).first()
    if row is None:
        return None
    return KeyInfo(row.id, row.name, row.scope, tuple(row.environments) if row.environments else None,
                   row.rate, row.key_hash)


def presented_key() -> str:
    """The key sent as `Authorization: Bearer <key>` or `X-Workspace-Key: <key>`."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("X-Workspace-Key", "").strip()


def authenticate(action: str) -> KeyInfo:
    """The request's key (or the dashboard session's) if it may do `action`; 401 (one body for every problem) or 403."""
    from flask import session

    presented = presented_key()
    if presented:
        key = find_key(runtime().engine, presented)
    else:
        # A revoked key ends its sessions at once: the session only remembers which key signed in.
        key_id = session.get("key_id")
        key = find_key_by_id(runtime().engine, int(key_id)) if isinstance(key_id, int) else None
    if key is None:
        raise ApiError(401, "unauthorized", "missing or invalid API key")
    if not key.may(action):
        raise ApiError(403, "forbidden", f"this key's scope ({key.scope}) does not allow {action}")
    g.api_key = key
    return key


def require(action: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a view so it needs a key allowed to do `action`."""

    def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            authenticate(action)
            return view(*args, **kwargs)

        return inner

    return wrap
