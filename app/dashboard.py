"""The dashboard (SPEC section 7): sign-in with an API key, the deployment page, and admin key management.

The pages are plain server-rendered HTML; the deployment data itself is fetched by `static/dashboard.js`
from the read API with the session cookie, so no query lives here twice. A session remembers only the
id of the key that signed in, so revoking that key ends the session on its next request.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

from flask import (Blueprint, Response, current_app, g, make_response, redirect, render_template, request, session,
                   url_for)
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.apikeys import KeyInfo, create_key, find_key, find_key_by_id, list_keys, revoke_key
from app.limits import storage_uri
from app.queries import iso
from app.state import runtime
from models.keys import SCOPES
from slipway.ratelimit import parse_rate

log = logging.getLogger(__name__)
bp = Blueprint("dashboard", __name__)

PERIODS = {"1h": "Last hour", "24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days"}
DEFAULT_PERIOD = "24h"
SIGN_IN_SCOPES = ("read", "admin")  # a deploy key reports deployments; it cannot read them
SIGN_IN_ERROR = "That key cannot sign in. Check that you pasted a whole, active read or admin key."
# Failed sign-ins per client address; keys are 256-bit random, so this only keeps the noise down.
LOGIN_LIMIT = parse("10/minute")
LIMITER = "slipway.dashboard.login"
# Pages carry session data (and once, a new key): never cached, never framed, no third-party anything.
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@bp.record_once
def _setup(state: Any) -> None:
    """One failed-sign-in counter per app: Redis in production (shared by every web process), else memory."""
    rt = state.app.extensions["slipway"]
    state.app.extensions[LIMITER] = MovingWindowRateLimiter(storage_from_string(storage_uri(rt.settings)))


@bp.after_request
def _secure(response: Response) -> Response:
    """Security headers on every dashboard answer."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    """What every page needs: the CSRF token and the signed-in key."""
    return {"csrf_token": csrf_token(), "me": g.get("dashboard_key"), "iso": iso}


# ------------------------------------------------------------------ session helpers


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def csrf_ok() -> bool:
    """True when the POSTed form carries this session's token."""
    sent, expected = request.form.get("csrf_token", ""), session.get("csrf", "")
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def signed_in() -> KeyInfo | None:
    """The active key this session signed in with, or None (a revoked key's session is cleared)."""
    key_id = session.get("key_id")
    key = find_key_by_id(runtime().engine, key_id) if isinstance(key_id, int) else None
    if key is None or key.scope not in SIGN_IN_SCOPES:
        if key_id is not None:
            session.clear()
        return None
    g.dashboard_key = key
    return key


def page(template: str, status: int = 200, **context: Any) -> Response:
    """Render a page with its status."""
    return make_response(render_template(template, **context), status)


def refused(status: int, title: str, message: str) -> Response:
    """An HTML error page (the JSON error handlers are for the API)."""
    return page("error.html", status, title=title, message=message)


def bad_csrf() -> Response:
    """The answer to a POST without this session's token."""
    return refused(400, "Form expired", "This form has expired or did not come from this site. Go back, reload "
                                        "the page and try again.")


# ------------------------------------------------------------------ sign-in


@bp.get("/")
def home() -> Response:
    """The dashboard, for a signed-in key; everyone else is sent to the sign-in page."""
    key = signed_in()
    if key is None:
        return redirect(url_for("dashboard.login"))
    period = request.args.get("period", DEFAULT_PERIOD)
    filters = {"period": period if period in PERIODS else DEFAULT_PERIOD,
               "environment": request.args.get("environment", "")[:255],
               "repository": request.args.get("repository", "")[:140]}
    return page("dashboard.html", periods=PERIODS, filters=filters,
                github_url=github_web_url(runtime().settings.github_api_url))


def github_web_url(api_url: str) -> str:
    """Where commits are shown: github.com, or a GitHub Enterprise Server's own host."""
    base = api_url.rstrip("/")
    if base in ("https://api.github.com", "http://api.github.com"):
        return "https://github.com"
    return base[: -len("/api/v3")] if base.endswith("/api/v3") else "https://github.com"


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response:
    """Sign in with a read or admin key; one error message whatever was wrong with it."""
    if request.method == "GET":
        if signed_in() is not None:
            return redirect(url_for("dashboard.home"))
        return page("login.html")
    if not csrf_ok():
        return bad_csrf()
    limiter, client = current_app.extensions[LIMITER], request.remote_addr or "?"
    if not _allowed(limiter, client):
        return page("login.html", 429, error="Too many failed attempts. Wait a minute and try again.")
    key = find_key(runtime().engine, request.form.get("key", "").strip())
    if key is None or key.scope not in SIGN_IN_SCOPES:
        _count_failure(limiter, client)
        log.info("dashboard sign-in refused from %s", client)
        return page("login.html", 401, error=SIGN_IN_ERROR)
    # A fresh session on sign-in (no fixation); it remembers the key's id, never the key.
    session.clear()
    session["key_id"] = key.id
    csrf_token()
    log.info("dashboard sign-in with key %s (%s)", key.id, key.scope)
    return redirect(url_for("dashboard.home"), 303)


def _allowed(limiter: MovingWindowRateLimiter, client: str) -> bool:
    """False when the client has used up its failed attempts (a storage outage never locks anyone out)."""
    try:
        return limiter.test(LOGIN_LIMIT, LIMITER, client)
    except Exception:  # noqa: BLE001
        log.warning("sign-in limiter unavailable; attempt allowed")
        return True


def _count_failure(limiter: MovingWindowRateLimiter, client: str) -> None:
    """Count one failed attempt."""
    try:
        limiter.hit(LOGIN_LIMIT, LIMITER, client)
    except Exception:  # noqa: BLE001
        log.warning("sign-in limiter unavailable; failure not counted")


@bp.post("/logout")
def logout() -> Response:
    """End the session."""
    if not csrf_ok():
        return bad_csrf()
    session.clear()
    return redirect(url_for("dashboard.login"), 303)


# ------------------------------------------------------------------ API keys (admin)


@bp.get("/settings/keys")
def keys() -> Response:
    """The key list and the create form."""
    key = signed_in()
    if key is None:
        return redirect(url_for("dashboard.login"))
    if not key.may("admin"):
        return _admins_only()
    return _keys_page()


def _admin_post() -> tuple[Any, Response | None]:
    """The signed-in admin key of a POST, or the answer that refuses it (sign in, bad CSRF, not an admin)."""
    key = signed_in()
    if key is None:
        return None, redirect(url_for("dashboard.login"))
    if not csrf_ok():
        return None, bad_csrf()
    if not key.may("admin"):
        return None, _admins_only()
    return key, None


@bp.post("/settings/keys")
def create() -> Response:
    """Create a key and show it once, in this answer only (it is never stored or sent again)."""
    key, refusal = _admin_post()
    if refusal is not None:
        return refusal
    form, errors = _read_key_form()
    if errors:
        return _keys_page(422, form=form, errors=errors)
    envs = form["environments"].replace(",", " ").split()
    row, plaintext = create_key(runtime().engine, form["name"], form["scope"], envs, form["rate"] or None)
    log.info("key %s (%s) created from the dashboard by key %s", row.id, row.scope, key.id)
    return _keys_page(201, created={"id": row.id, "name": row.name, "scope": row.scope, "key": plaintext})


@bp.post("/settings/keys/<int:key_id>/revoke")
def revoke(key_id: int) -> Response:
    """Revoke a key at once (revoking one's own key ends this session too)."""
    key, refusal = _admin_post()
    if refusal is not None:
        return refusal
    if revoke_key(runtime().engine, key_id):
        log.info("key %s revoked from the dashboard by key %s", key_id, key.id)
    if key_id == key.id:
        session.clear()
        return redirect(url_for("dashboard.login"), 303)
    return redirect(url_for("dashboard.keys"), 303)


def _admins_only() -> Response:
    """The answer to a read key on an admin page."""
    return refused(403, "Admins only", "Managing API keys needs a key with the admin scope.")


def _keys_page(status: int = 200, **context: Any) -> Response:
    """The keys page with the current list."""
    context.setdefault("form", {"name": "", "scope": "deploy", "environments": "", "rate": ""})
    return page("keys.html", status, keys=list_keys(runtime().engine), scopes=SCOPES, **context)


def _read_key_form() -> tuple[dict[str, str], dict[str, str]]:
    """The create form's values (kept to fill the form again) and, per field, what is wrong with them."""
    form = {name: request.form.get(name, "").strip() for name in ("name", "scope", "environments", "rate")}
    errors: dict[str, str] = {}
    if not 1 <= len(form["name"]) <= 100:
        errors["name"] = "Give the key a name of 1 to 100 characters."
    if form["scope"] not in SCOPES:
        errors["scope"] = f"Choose one of: {', '.join(SCOPES)}."
    envs = form["environments"].replace(",", " ").split()
    if len(envs) > 20 or any(len(e) > 50 for e in envs):
        errors["environments"] = "At most 20 environments of up to 50 characters each."
    if form["rate"] and (len(form["rate"]) > 32 or parse_rate(form["rate"]) is None):
        errors["rate"] = "Use N/second, N/minute, N/hour or N/day, e.g. 60/minute."
    return form, errors
