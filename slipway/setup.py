"""`slipway setup`: register the GitHub App from app.yml through GitHub's manifest flow, write .env.

The flow (docs: "Registering a GitHub App from a manifest"), all within one hour:
1. a local page on 127.0.0.1 shows a form that POSTs the manifest JSON to GitHub's "new App" page;
2. GitHub sends the browser back to the local page's redirect URL with `code` and our `state`;
3. the code is exchanged once at POST {GITHUB_API_URL}/app-manifests/{code}/conversions (no auth),
   and the credentials are written: the PEM to a 0600 file, the rest to .env.
"""

from __future__ import annotations

import html
import json
import logging
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import yaml

from slipway.settings import Settings

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/github/webhooks"
REDIRECT_PATH = "/redirect"
FLOW_TIMEOUT = 3600  # GitHub's codes are valid for one hour
ENV_KEYS = ("APP_ID", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET", "GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET")


class SetupError(Exception):
    """The registration could not be completed; the message says why and what to do."""


# ---------------------------------------------------------------- manifest


def find_manifest(path: Path | None = None) -> Path:
    """app.yml: the given path, else the working directory's, else the one beside the source tree."""
    candidates = [path] if path else [Path("app.yml"), Path(__file__).resolve().parents[1] / "app.yml"]
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return candidate
    raise SetupError(f"no app.yml found (looked at {', '.join(str(c) for c in candidates)}); pass --manifest")


def build_manifest(app_yml: Path, webhook_url: str, redirect_url: str, name: str | None = None) -> dict[str, Any]:
    """The manifest GitHub receives: app.yml with this deployment's webhook, homepage and redirect URLs."""
    parts = urlsplit(webhook_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SetupError(f"--webhook-url {webhook_url!r} is not an http(s) URL")
    manifest = yaml.safe_load(app_yml.read_text()) or {}
    if not isinstance(manifest, dict):
        raise SetupError(f"{app_yml} is not a YAML mapping")
    manifest["hook_attributes"] = {**(manifest.get("hook_attributes") or {}), "url": webhook_url}
    manifest["url"] = f"{parts.scheme}://{parts.netloc}"  # Slipway's dashboard is the App's homepage
    manifest["redirect_url"] = redirect_url
    if name:
        manifest["name"] = name
    return manifest


def github_web_url(api_url: str) -> str:
    """GitHub's web origin from the REST base: api.github.com → github.com, HOST/api/v3 → HOST."""
    parts = urlsplit(api_url.rstrip("/"))
    host, path = parts.netloc, parts.path
    if path.endswith("/api/v3"):
        path = path[: -len("/api/v3")]  # GitHub Enterprise Server
    elif host.startswith("api."):
        host = host[len("api."):]  # github.com and GHE.com data residency (api.SUBDOMAIN.ghe.com)
    return f"{parts.scheme}://{host}{path}"


def new_app_url(api_url: str, org: str | None, state: str) -> str:
    """Where the form posts: the user's or the organisation's "new GitHub App" page, with our state."""
    owner = f"/organizations/{org}" if org else ""
    return f"{github_web_url(api_url)}{owner}/settings/apps/new?{urlencode({'state': state})}"


# ---------------------------------------------------------------- exchange and files


def exchange_code(code: str, settings: Settings) -> dict[str, Any]:
    """POST /app-manifests/{code}/conversions: the new App with its id, secrets and PEM."""
    from githubkit import GitHub, UnauthAuthStrategy
    from githubkit.exception import RequestError, RequestFailed

    gh = GitHub(UnauthAuthStrategy(), base_url=settings.github_api_url.rstrip("/") + "/",
                timeout=settings.github_timeout, auto_retry=False, http_cache=False, user_agent="Slipway")
    try:
        data = gh.rest.apps.create_from_manifest(code).json()
    except RequestFailed as exc:
        status = exc.response.status_code
        if status in (404, 422):
            raise SetupError(f"GitHub refused the code ({status}): it is unknown, was already used, or is more "
                             "than an hour old; run `slipway setup` again") from None
        raise SetupError(f"GitHub answered {status} while converting the code; try again") from None
    except RequestError as exc:
        raise SetupError(f"GitHub is unreachable at {settings.github_api_url}: {type(exc).__name__}") from None
    missing = [k for k in ("id", "pem", "webhook_secret", "client_id", "client_secret") if not data.get(k)]
    if missing:
        raise SetupError(f"GitHub's answer lacks {', '.join(missing)}")
    return data


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (0600 from the first byte), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def update_env(env_path: Path, values: dict[str, str]) -> None:
    """Set these keys in a .env file, keeping every other line; the file stays 0600 (it holds secrets)."""
    lines = env_path.read_text().splitlines() if env_path.exists() else []
    out: list[str] = []
    seen: set[str] = set()
    for line in lines:
        key = line.split("=", 1)[0].strip().removeprefix("export ").strip() if "=" in line else ""
        if key == "PRIVATE_KEY":
            continue  # an inline key would win over PRIVATE_KEY_PATH and hide the new App's key
        if key in values:
            if key not in seen:
                out.append(f"{key}={_quoted(values[key])}")
                seen.add(key)
            continue
        out.append(line)
    out += [f"{k}={_quoted(v)}" for k, v in values.items() if k not in seen]
    _write_private(env_path, "\n".join(out) + "\n")


def _quoted(value: str) -> str:
    """A .env value; single-quoted (literal for dotenv and compose) when it holds spaces, # or quotes."""
    if value and not any(c in value for c in " \t#'\"\\$"):
        return value
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _key_path_for_env(key_path: Path, env_path: Path) -> str:
    """The key's path as .env should name it: relative to the .env's folder when inside it, else absolute."""
    key, folder = key_path.resolve(), env_path.resolve().parent
    try:
        return str(key.relative_to(folder))
    except ValueError:
        return str(key)


def complete_registration(code: str, settings: Settings, env_path: Path, key_path: Path) -> dict[str, Any]:
    """Exchange the code, write the key (0600) and .env; return what was registered, without secrets."""
    data = exchange_code(code, settings)
    _write_private(key_path, data["pem"])
    update_env(env_path, {
        "APP_ID": str(data["id"]), "PRIVATE_KEY_PATH": _key_path_for_env(key_path, env_path),
        "WEBHOOK_SECRET": data["webhook_secret"], "GITHUB_CLIENT_ID": data["client_id"],
        "GITHUB_CLIENT_SECRET": data["client_secret"],
    })
    slug = data.get("slug") or ""
    web = github_web_url(settings.github_api_url)
    return {"app_id": data["id"], "slug": slug, "name": data.get("name"), "html_url": data.get("html_url"),
            "owner": (data.get("owner") or {}).get("login"), "env_path": str(env_path), "key_path": str(key_path),
            "install_url": f"{web}/apps/{slug}/installations/new" if slug else None}


# ---------------------------------------------------------------- the local page


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Slipway setup</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.6rem 1.2rem}} code{{background:#eee;padding:0 .2rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def _page(title: str, body: str) -> bytes:
    """A small HTML page."""
    return PAGE.format(title=html.escape(title), body=body).encode()


@dataclass
class SetupFlow:
    """The state of one registration: the manifest, the expected `state`, and the outcome."""

    settings: Settings
    manifest: dict[str, Any]
    env_path: Path
    key_path: Path
    org: str | None = None
    state: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    result: dict[str, Any] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def form_page(self) -> bytes:
        """The page with the form that sends the manifest to GitHub."""
        target = new_app_url(self.settings.github_api_url, self.org, self.state)
        where = f"the organisation <code>{html.escape(self.org)}</code>" if self.org else "your account"
        body = (f"<p>Register the GitHub App <b>{html.escape(str(self.manifest.get('name')))}</b> on {where}. "
                f"Webhooks go to <code>{html.escape(self.manifest['hook_attributes']['url'])}</code>.</p>"
                f'<form method="post" action="{html.escape(target)}">'
                f'<input type="hidden" name="manifest" value="{html.escape(json.dumps(self.manifest))}">'
                "<button type=\"submit\">Register on GitHub</button></form>"
                "<p>GitHub asks you to confirm the name, then sends you back here.</p>")
        return _page("Slipway setup", body)

    def redirect(self, query: dict[str, list[str]]) -> tuple[int, bytes]:
        """GitHub sent the browser back: check `state`, exchange the code, write the files."""
        code, state = (query.get("code") or [""])[0], (query.get("state") or [""])[0]
        if not secrets.compare_digest(state.encode(), self.state.encode()):
            log.warning("setup redirect refused: state does not match")
            return 400, _page("Refused", "<p>The <code>state</code> does not match this setup session, so the "
                                         "code was not used. Start again from the setup page.</p>")
        if not code:
            return 400, _page("No code", "<p>GitHub did not send a code. Start again from the setup page.</p>")
        with self.lock:  # a double-clicked redirect must not convert twice
            if self.result is not None:
                return 200, self._success_page()
            try:
                self.result = complete_registration(code, self.settings, self.env_path, self.key_path)
            except SetupError as exc:
                return 400, _page("Registration not completed", f"<p>{html.escape(str(exc))}</p>")
        return 200, self._success_page()  # the handler sets `done` once this page is sent

    def _success_page(self) -> bytes:
        """What was written and what to do next; never a secret."""
        r = self.result or {}
        install = r.get("install_url")
        body = (f"<p>Registered <b>{html.escape(str(r.get('name')))}</b> (App id {r.get('app_id')}).</p>"
                f"<p>Credentials written to <code>{html.escape(r.get('env_path', ''))}</code>; private key in "
                f"<code>{html.escape(r.get('key_path', ''))}</code> (mode 0600). You can close this tab.</p>"
                + (f'<p>Next: <a href="{html.escape(install)}">install the App</a> on your repositories.</p>'
                   if install else ""))
        return _page("Slipway is registered", body)


class _Handler(BaseHTTPRequestHandler):
    """GET / (the form) and GET /redirect (GitHub's way back); nothing else."""

    server: _SetupServer

    def do_GET(self) -> None:  # noqa: N802
        """Route the two pages."""
        parts = urlsplit(self.path)
        flow = self.server.flow
        port = self.server.server_address[1]
        if self.headers.get("Host") not in (f"127.0.0.1:{port}", f"localhost:{port}"):
            # DNS rebinding: a web page must not reach this server under another name and read the state.
            self._send(421, _page("Wrong host", "<p>Open the setup page at the address Slipway printed.</p>"))
        elif parts.path == "/":
            self._send(200, flow.form_page())
        elif parts.path == REDIRECT_PATH:
            self._send(*flow.redirect(parse_qs(parts.query)))
            if flow.result is not None:
                flow.done.set()  # only now: the CLI stops the server as soon as `done` is set
        else:
            self._send(404, _page("Not found", "<p>Open the setup page at <a href=\"/\">/</a>.</p>"))

    def _send(self, status: int, body: bytes) -> None:
        """Answer with an HTML page that no one caches or frames."""
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")  # the redirect URL carries the code
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: request lines would carry the one-time code."""


class _SetupServer(ThreadingHTTPServer):
    """The local setup server; `flow` holds the registration."""

    daemon_threads = True
    flow: SetupFlow


class SetupServer:
    """Serves the setup page on 127.0.0.1 until the App is registered (or the hour is up)."""

    def __init__(self, settings: Settings, *, webhook_url: str, env_path: Path, key_path: Path,
                 manifest_path: Path | None = None, org: str | None = None, name: str | None = None,
                 port: int = 0, host: str = "127.0.0.1") -> None:
        self._thread: threading.Thread | None = None
        self._httpd = _SetupServer((host, port), _Handler)
        try:
            redirect_url = f"http://{host}:{self.port}{REDIRECT_PATH}"
            manifest = build_manifest(find_manifest(manifest_path), webhook_url, redirect_url, name)
        except BaseException:
            self._httpd.server_close()
            raise
        self._httpd.flow = self.flow = SetupFlow(settings, manifest, env_path, key_path, org)

    @property
    def port(self) -> int:
        """The port actually bound (a free one when 0 was asked)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The setup page."""
        return f"http://{self._httpd.server_address[0]}:{self.port}/"

    def start(self) -> SetupServer:
        """Serve from a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="slipway-setup", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float = FLOW_TIMEOUT) -> dict[str, Any]:
        """Block until the registration completed; SetupError when the time is up."""
        if not self.flow.done.wait(timeout):
            raise SetupError(f"no registration completed within {timeout:.0f} s; run `slipway setup` again")
        assert self.flow.result is not None
        return self.flow.result

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> SetupServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
