"""The dashboard's pages: sign-in, redirects, CSRF, scopes, key management, sessions of revoked keys."""

from __future__ import annotations

import re
from typing import Any

import pytest

from app.apikeys import create_key, find_key, list_keys, revoke_key
from app.dashboard import LOGIN_LIMIT, SIGN_IN_ERROR, github_web_url

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(client: Any, path: str = "/login") -> str:
    """The CSRF token a page hands out to this client's session."""
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client: Any, key: str) -> Any:
    """POST the sign-in form with this session's token."""
    return client.post("/login", data={"key": key, "csrf_token": csrf(client)})


@pytest.fixture
def read_key(rt) -> str:  # noqa: ANN001
    """A read key's plaintext."""
    return create_key(rt.engine, "maintainer", "read")[1]


@pytest.fixture
def admin_key(rt) -> str:  # noqa: ANN001
    """An admin key's plaintext."""
    return create_key(rt.engine, "ops", "admin")[1]


# ------------------------------------------------------------------ sign-in and redirects


def test_signed_out_visitors_are_sent_to_the_sign_in_page(client) -> None:
    """/ and the admin page redirect to /login; the login page is a form with a CSRF token."""
    for path in ("/", "/settings/keys"):
        resp = client.get(path)
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")
    page = client.get("/login")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert 'type="password"' in html and CSRF.search(html)
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


@pytest.mark.parametrize("scope", ["read", "admin"])
def test_read_and_admin_keys_sign_in(rt, client, scope: str) -> None:
    """A read or admin key signs in; the session cookie holds the key's id, never the key."""
    _, key = create_key(rt.engine, "me", scope)
    resp = sign_in(client, key)
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/")
    assert key not in resp.headers.get("Set-Cookie", "")
    with client.session_transaction() as sess:
        assert isinstance(sess["key_id"], int) and key not in repr(dict(sess))
    page = client.get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="deployments"' in html and 'data-deployments-url="/api/v1/deployments"' in html
    assert client.get("/login").status_code == 302  # already signed in


def test_every_bad_key_gets_the_same_answer(rt, client) -> None:
    """Unknown, revoked, deploy-scoped, empty and oversized keys are refused with one and the same page."""
    row, revoked = create_key(rt.engine, "old", "read")
    revoke_key(rt.engine, row.id)
    _, deploy = create_key(rt.engine, "ci", "deploy")
    token = csrf(client)
    answers = [client.post("/login", data={"key": k, "csrf_token": token})
               for k in ("slw_nope", revoked, deploy, "", "x" * 500)]
    assert {r.status_code for r in answers} == {401}
    assert len({r.data for r in answers}) == 1
    assert SIGN_IN_ERROR in answers[0].get_data(as_text=True)
    with client.session_transaction() as sess:
        assert "key_id" not in sess


def test_sign_in_needs_the_sessions_csrf_token(client, read_key: str) -> None:
    """A sign-in without the token, or with another session's, is refused and signs nobody in."""
    csrf(client)
    for data in ({"key": read_key}, {"key": read_key, "csrf_token": "forged"}):
        resp = client.post("/login", data=data)
        assert resp.status_code == 400 and "expired" in resp.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_failed_sign_ins_are_rate_limited_per_client(client, read_key: str) -> None:
    """After the allowed failures even a good key waits (the counter is by client address)."""
    token = csrf(client)
    for _ in range(LOGIN_LIMIT.amount):
        assert client.post("/login", data={"key": "slw_wrong", "csrf_token": token}).status_code == 401
    resp = client.post("/login", data={"key": read_key, "csrf_token": token})
    assert resp.status_code == 429 and "Too many" in resp.get_data(as_text=True)
    other = client.post("/login", data={"key": read_key, "csrf_token": token},
                        environ_overrides={"REMOTE_ADDR": "10.1.2.3"})
    assert other.status_code == 303


def test_sign_in_starts_a_fresh_session(client, read_key: str) -> None:
    """The pre-sign-in session (and its CSRF token) is replaced: no session fixation."""
    before = csrf(client)
    assert client.post("/login", data={"key": read_key, "csrf_token": before}).status_code == 303
    with client.session_transaction() as sess:
        assert sess["csrf"] != before


def test_sign_out_needs_csrf_and_ends_the_session(client, read_key: str) -> None:
    """POST /logout with the token signs out; without it nothing happens."""
    sign_in(client, read_key)
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200
    resp = client.post("/logout", data={"csrf_token": csrf(client, "/")})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/login")
    assert client.get("/").status_code == 302
    assert client.get("/logout").status_code == 405  # a link or image cannot sign anyone out


def test_a_revoked_keys_session_ends_at_once(rt, client, admin_key: str) -> None:
    """Revoking the key that signed in ends its session on the next page and the next API call."""
    sign_in(client, admin_key)
    assert client.get("/api/v1/deliveries").status_code == 200  # the session works for the read API
    revoke_key(rt.engine, find_key(rt.engine, admin_key).id)
    assert client.get("/api/v1/deliveries").status_code == 401
    resp = client.get("/")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")
    with client.session_transaction() as sess:
        assert "key_id" not in sess


def test_the_session_has_the_keys_scope_on_the_api(client, read_key: str) -> None:
    """A read session may not use admin endpoints; a signed-out client gets the API's 401."""
    assert client.get("/api/v1/deliveries").status_code == 401
    sign_in(client, read_key)
    assert client.get("/api/v1/deliveries").status_code == 403


# ------------------------------------------------------------------ key management


def test_read_keys_cannot_manage_keys(rt, client, read_key: str) -> None:
    """The keys page and its forms are for admins only; the nav shows no link to them."""
    sign_in(client, read_key)
    assert "/settings/keys" not in client.get("/").get_data(as_text=True)
    assert client.get("/settings/keys").status_code == 403
    token = csrf(client, "/")
    assert client.post("/settings/keys", data={"name": "x", "scope": "admin", "csrf_token": token}).status_code == 403
    first = list_keys(rt.engine)[0]
    assert client.post(f"/settings/keys/{first.id}/revoke", data={"csrf_token": token}).status_code == 403
    assert all(k.revoked_at is None for k in list_keys(rt.engine)) and len(list_keys(rt.engine)) == 1


def test_admin_creates_a_key_shown_once(rt, client, admin_key: str) -> None:
    """The new key is in the creating answer only, with a copy button; it works and the list never shows it."""
    sign_in(client, admin_key)
    token = csrf(client, "/settings/keys")
    resp = client.post("/settings/keys", data={"name": "Jenkins", "scope": "deploy", "environments": "staging, qa",
                                               "rate": "30/minute", "csrf_token": token})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 201 and resp.headers["Cache-Control"] == "no-store"
    plaintext = re.search(r'id="new-key-value"[^>]*value="(slw_[^"]+)"', html).group(1)
    assert html.count(plaintext) == 1 and 'data-copy="new-key-value"' in html and "will not be shown again" in html
    made = find_key(rt.engine, plaintext)
    assert made and (made.name, made.scope, made.environments, made.rate) == ("Jenkins", "deploy", ("staging", "qa"),
                                                                               "30/minute")
    listing = client.get("/settings/keys").get_data(as_text=True)
    assert "Jenkins" in listing and plaintext not in listing and plaintext[:10] in listing


def test_key_form_errors_name_each_field(rt, client, admin_key: str) -> None:
    """A bad form is answered 422 with every field at fault named; nothing is created."""
    sign_in(client, admin_key)
    token = csrf(client, "/settings/keys")
    resp = client.post("/settings/keys", data={"name": "", "scope": "root", "environments": "x" * 51,
                                               "rate": "lots", "csrf_token": token})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    for field in ("name", "scope", "environments", "rate"):
        assert f'id="err-{field}"' in html
    assert len(list_keys(rt.engine)) == 1


def test_key_forms_need_csrf(rt, client, admin_key: str) -> None:
    """Creating or revoking without the session's token does nothing."""
    sign_in(client, admin_key)
    assert client.post("/settings/keys", data={"name": "x", "scope": "admin"}).status_code == 400
    other, _ = create_key(rt.engine, "other", "read")
    assert client.post(f"/settings/keys/{other.id}/revoke").status_code == 400
    assert len(list_keys(rt.engine)) == 2 and all(k.revoked_at is None for k in list_keys(rt.engine))


def test_admin_revokes_keys_and_revoking_its_own_signs_out(rt, client, admin_key: str) -> None:
    """Revoking another key keeps the admin signed in; revoking its own ends the session."""
    sign_in(client, admin_key)
    other, other_key = create_key(rt.engine, "other", "read")
    token = csrf(client, "/settings/keys")
    resp = client.post(f"/settings/keys/{other.id}/revoke", data={"csrf_token": token})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/settings/keys")
    assert find_key(rt.engine, other_key) is None
    assert "revoked" in client.get("/settings/keys").get_data(as_text=True)
    mine = find_key(rt.engine, admin_key).id
    resp = client.post(f"/settings/keys/{mine}/revoke", data={"csrf_token": token})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/login")
    assert client.get("/").status_code == 302


# ------------------------------------------------------------------ assets


def test_pages_use_no_external_assets(client, read_key: str) -> None:
    """Scripts and styles are served by Slipway itself; nothing loads from another host."""
    sign_in(client, read_key)
    html = client.get("/").get_data(as_text=True)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        resp = client.get(asset)
        body = resp.get_data(as_text=True)
        assert resp.status_code == 200 and "@import" not in body and not re.search(r"url\(['\"]?(https?:)?//", body)
        assert f'"{asset}"' in html


def test_commit_links_follow_the_github_host() -> None:
    """github.com for the public API, the server's own host for GitHub Enterprise Server."""
    assert github_web_url("https://api.github.com") == "https://github.com"
    assert github_web_url("https://ghe.example.com/api/v3/") == "https://ghe.example.com"
