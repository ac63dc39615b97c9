"""A fake GitHub REST API on 127.0.0.1 for tests: real HTTP, real App auth, complete objects.

Every GitHub-side test talks to this server through githubkit exactly as production code talks to
api.github.com. Answers carry every field githubkit 0.16.1 (schemas 2026-03-10) requires, because
`parsed_data` validates strictly; the shapes follow GitHub's REST answers and webhook fixtures.

    fake = FakeGitHub(app_id=12345, private_key_pem=generate_private_key_pem())
    fake.add_installation(1); fake.add_repo("octo-org/hello", 1)
    with fake:
        gh = GitHub(AppInstallationAuthStrategy(12345, pem, 1), base_url=fake.url + "/", ...)

Set-up: add_installation, suspend_installation/unsuspend_installation, add_repo, set_branch,
set_file/delete_file, add_check_run, add_commit_status, add_workflow_run/set_workflow_run,
add_hook_delivery, add_manifest_code, expire_tokens; knobs token_ttl, latency, rate_limit,
redelivery_status_code,
merge_needed, merge_conflict, admin_denied (sets of full names).
Faults: fail(method, path_regex, status, times, headers, body, delay, drop),
fail_secondary_rate_limit, fail_primary_rate_limit, clear_faults.
Records: calls / calls_to / reset_calls, token_mints, deployments, deployment_statuses,
commit_statuses (with a private "_sha" key), environments, check_runs, workflow_runs,
hook_deliveries, dispatches, gate_reviews, redeliveries, deleted_environments, errors (bugs of
the fake itself; should stay empty).

Deliberate GitHub behaviours worth knowing: GET answers carry ETags and githubkit revalidates
(304s appear in `calls`); repositories a token cannot see answer 404, not 401; check runs count
as contexts for a deployment's required_contexts; auto-merge (202) applies only to branch refs
other than the default branch. State set-up methods and faults are thread-safe; the state
attributes hold the very dicts the API answers with.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import json
import re
import secrets
import socket
import string
import sys
import threading
import traceback
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DOCS = "https://docs.github.com/rest"
HTML = "https://github.com"
SUPPORTED_API_VERSIONS = frozenset({"2022-11-28", "2026-03-10"})
STATUS_STATES = ("error", "failure", "pending", "success")
DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
# Check-run conclusions that GitHub counts as a passing "context" for required_contexts.
PASSING_CONCLUSIONS = ("success", "neutral", "skipped")
# What a fresh installation of Slipway may do; tests narrow it through add_installation().
DEFAULT_PERMISSIONS = {
    "actions": "write",
    "administration": "write",
    "checks": "write",
    "contents": "read",
    "deployments": "write",
    "environments": "write",
    "metadata": "read",
    "pull_requests": "read",
    "statuses": "write",
}
DEFAULT_EVENTS = [
    "check_run", "check_suite", "create", "delete", "deployment", "deployment_protection_rule",
    "deployment_status", "pull_request", "push", "release", "status", "workflow_run",
]
_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")

_key_lock = threading.Lock()
_cached_key: bytes | None = None


def generate_private_key_pem() -> bytes:
    """Return an RSA 2048 private key as PKCS8 PEM, generated once per process (it is slow)."""
    global _cached_key
    with _key_lock:
        if _cached_key is None:
            _cached_key = new_private_key_pem()
        return _cached_key


def new_private_key_pem() -> bytes:
    """Generate a fresh RSA 2048 PKCS8 PEM key (for 'signed by another key' tests)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@functools.lru_cache(maxsize=8)
def _public_key(pem: bytes) -> Any:
    """Return the public half of a PEM private key (parsing costs ~40 ms, so remember it)."""
    return serialization.load_pem_private_key(pem, None).public_key()


def _now() -> datetime:
    """Return the current UTC time to the second, as GitHub timestamps are."""
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime | float) -> str:
    """Format a datetime or epoch as GitHub does: 2024-05-01T12:00:00Z."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(kind: str, ident: int | str) -> str:
    """Build a legacy-format GraphQL node id, e.g. base64('010:Deployment42')."""
    return base64.b64encode(f"{len(kind):03d}:{kind}{ident}".encode()).decode()


def _random_sha() -> str:
    """Return a random 40-hex commit sha."""
    return secrets.token_hex(20)


def _derived_sha(*parts: object) -> str:
    """Return a stable 40-hex sha derived from parts (tree ids and the like)."""
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


def _blob_sha(data: bytes) -> str:
    """Return git's blob sha for data, as the contents API reports it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _wrapped_base64(data: bytes) -> str:
    """Encode like the contents API: base64 in 60-character lines, each ending in a newline."""
    encoded = base64.b64encode(data).decode()
    return "".join(encoded[i:i + 60] + "\n" for i in range(0, len(encoded), 60))


@dataclass
class Call:
    """One request the fake received; `status` is 0 while unanswered or when dropped."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    status: int = 0


@dataclass
class Fault:
    """An injected failure: answer `status` (None = answer normally), after `delay`, or drop."""

    method: str
    pattern: re.Pattern[str]
    status: int | None
    times: int | None
    headers: dict[str, str]
    body: Any
    delay: float
    drop: bool

    def matches(self, method: str, path: str) -> bool:
        """Tell whether this fault applies to a request."""
        return self.method in ("*", method) and bool(self.pattern.search(path))


@dataclass
class Answer:
    """A response to send: status, JSON-able body (or bytes, or None) and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Raised inside a route to answer with a GitHub-style error body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 documentation_url: str = DOCS, **extra: Any) -> None:
        super().__init__(message)
        body = {"message": message, "documentation_url": documentation_url, **extra}
        body["status"] = str(status)  # GitHub added "status" to error bodies in 2023
        self.answer = Answer(status, body, headers or {})


def _not_found() -> ApiError:
    """Return GitHub's plain 404, used for unknown and invisible resources alike."""
    return ApiError(404, "Not Found")


@dataclass
class Installation:
    """An installation of the App on an account."""

    id: int
    account: str
    account_id: int
    account_type: str
    permissions: dict[str, str]
    repository_selection: str
    created_at: datetime
    suspended_at: datetime | None = None


@dataclass
class Repo:
    """A repository known to the fake and the installation that owns it."""

    id: int
    full_name: str
    installation_id: int
    default_branch: str
    private: bool
    created_at: datetime
    branches: dict[str, str] = field(default_factory=dict)
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        """Return the owner login."""
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        """Return the repository name without owner."""
        return self.full_name.split("/", 1)[1]


@dataclass
class Token:
    """An installation access token minted by the fake."""

    value: str
    installation_id: int
    expires_at: float
    permissions: dict[str, str]
    repository_ids: frozenset[int] | None  # None = every repository of the installation


@dataclass
class Request:
    """What a route handler sees of an incoming request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    params: dict[str, str]
    repo: Repo | None = None
    token: Token | None = None

    def body(self) -> dict[str, Any]:
        """Return the JSON body as an object, or answer 400 like GitHub for anything else."""
        if self.json is None:
            return {}
        if not isinstance(self.json, dict):
            raise ApiError(400, "Problems parsing JSON")
        return self.json

    def int_param(self, name: str) -> int:
        """Return a numeric path parameter."""
        return int(self.params[name])


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    auth: str  # "jwt", "token" or "none"
    permission: tuple[str, str] | None
    handler: Callable[..., Answer]


_ROUTES: list[_Route] = []
_REPO = r"/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"


def route(method: str, pattern: str, auth: str = "token",
          permission: tuple[str, str] | None = None) -> Callable[[Callable[..., Answer]], Callable[..., Answer]]:
    """Register a FakeGitHub method as the handler of METHOD PATTERN ({repo} = /repos/o/r)."""
    compiled = re.compile("^" + pattern.replace("{repo}", _REPO) + "$")

    def register(handler: Callable[..., Answer]) -> Callable[..., Answer]:
        _ROUTES.append(_Route(method, compiled, auth, permission, handler))
        return handler

    return register


class _Server(ThreadingHTTPServer):
    """The HTTP server; handler crashes are recorded in `fake.errors` instead of printed."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that went away (timeouts, drops); record anything else."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.fake.errors.append(repr(error))  # type: ignore[attr-defined]


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the FakeGitHub that owns the server."""

    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects from GitHub
    server_version = "GitHub.com"
    sys_version = ""
    timeout = 30  # idle keep-alive connections must not pin threads forever
    # An answer's head and body go out in two writes; with Nagle on, a kept-alive connection then holds the
    # body until the client's delayed ACK (~40 ms). GitHub has no such stall.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        """Track the connection so stop() can close it."""
        super().setup()
        self.server.fake._track(self.connection, add=True)  # type: ignore[attr-defined]

    def finish(self) -> None:
        """Forget the connection."""
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)  # type: ignore[attr-defined]

    def _dispatch(self) -> None:
        self.server.fake._serve(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Stay quiet; `fake.calls` is the log."""


class FakeGitHub:
    """A GitHub REST API fake for one GitHub App; see the module docstring."""

    def __init__(self, app_id: int = 12345, private_key_pem: bytes | str | None = None, *,
                 app_slug: str = "slipway", app_name: str = "Slipway", owner: str = "octo-org",
                 path_prefix: str = "") -> None:
        self.app_id = app_id
        pem = private_key_pem if private_key_pem is not None else generate_private_key_pem()
        self.private_key_pem = pem.encode() if isinstance(pem, str) else pem
        self._public_key = _public_key(self.private_key_pem)
        self.app_slug, self.app_name, self.app_owner = app_slug, app_name, owner
        self.client_id = "Iv23li" + hashlib.sha1(str(app_id).encode()).hexdigest()[:14]
        self.webhook_secret: str | None = None  # set by a manifest conversion
        self.path_prefix = path_prefix.rstrip("/")  # "/api/v3" mimics GitHub Enterprise Server
        self.created_at = _now()

        self.token_ttl = 3600
        self.redelivery_status_code = 200  # what the receiver answers to a redelivery
        self.latency = 0.0
        self.rate_limit = 5000
        self.token_mints: Counter[int] = Counter()
        self.merge_needed: set[str] = set()
        self.merge_conflict: set[str] = set()
        self.admin_denied: set[str] = set()

        self.calls: list[Call] = []
        self.errors: list[str] = []  # bugs of the fake itself (answered 500); tests can assert it is empty
        self.deployments: dict[str, list[dict[str, Any]]] = {}
        self.deployment_statuses: dict[int, list[dict[str, Any]]] = {}
        self.commit_statuses: dict[str, list[dict[str, Any]]] = {}
        self.environments: dict[str, dict[str, dict[str, Any]]] = {}
        self.check_runs: dict[str, list[dict[str, Any]]] = {}
        self.workflow_runs: dict[str, list[dict[str, Any]]] = {}
        self.hook_deliveries: list[dict[str, Any]] = []
        self.dispatches: list[dict[str, Any]] = []
        self.gate_reviews: list[dict[str, Any]] = []
        self.redeliveries: list[int] = []
        self.deleted_environments: list[dict[str, str]] = []
        self.pulls: dict[tuple[str, int], dict[str, Any]] = {}

        self._lock = threading.RLock()
        self._ids = {kind: itertools.count(start) for kind, start in (
            ("repo", 700000001), ("deployment", 1000001), ("deployment_status", 2000001),
            ("status", 3000001), ("check_run", 4000001), ("check_suite", 5000001),
            ("workflow_run", 6000001), ("workflow", 7000001), ("delivery", 8000001),
            ("environment", 9000001), ("rule", 9500001), ("account", 38000001))}
        self._installations: dict[int, Installation] = {}
        self._repos: dict[str, Repo] = {}  # lower-case full name -> repo (GitHub ignores case)
        self._tokens: dict[str, Token] = {}
        self._faults: list[Fault] = []
        self._manifest_codes: dict[str, dict[str, Any]] = {}
        self._suites: dict[tuple[str, str, str], int] = {}
        self._workflow_ids: dict[tuple[str, str], int] = {}
        self._run_numbers: Counter[tuple[str, int]] = Counter()
        self._deployment_repo: dict[int, str] = {}
        self._rate_used: Counter[str] = Counter()
        self._rate_window = int(time.time()) + 3600
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        """Listen on a free port of 127.0.0.1 and serve from a daemon thread."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fakegithub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive sockets would otherwise outlive the server
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Return the API root, e.g. http://127.0.0.1:PORT (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("FakeGitHub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.path_prefix}"

    def _api(self) -> str:
        """Return the URL that API links inside answers start with."""
        return self.url

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # ---- state set-up ------------------------------------------------------------------------

    def add_installation(self, installation_id: int, account: str = "octo-org", suspended: bool = False,
                         *, account_type: str = "Organization", permissions: dict[str, str] | None = None,
                         repository_selection: str = "all") -> None:
        """Install the App on an account (an Organization unless account_type says User)."""
        with self._lock:
            self._installations[installation_id] = Installation(
                id=installation_id, account=account, account_id=self._account_id(account),
                account_type=account_type, permissions=dict(permissions or DEFAULT_PERMISSIONS),
                repository_selection=repository_selection, created_at=_now(),
                suspended_at=_now() if suspended else None)

    def suspend_installation(self, installation_id: int) -> None:
        """Suspend an installation: no new tokens, existing tokens refused."""
        with self._lock:
            self._installations[installation_id].suspended_at = _now()

    def unsuspend_installation(self, installation_id: int) -> None:
        """Lift a suspension."""
        with self._lock:
            self._installations[installation_id].suspended_at = None

    def add_repo(self, full_name: str, installation_id: int, default_branch: str = "main",
                 *, private: bool = True) -> int:
        """Add a repository to an installation; its default branch points at a random sha."""
        with self._lock:
            if installation_id not in self._installations:
                raise KeyError(f"add_installation({installation_id}) first")
            repo = Repo(id=next(self._ids["repo"]), full_name=full_name, installation_id=installation_id,
                        default_branch=default_branch, private=private, created_at=_now())
            repo.branches[default_branch] = _random_sha()
            self._repos[full_name.lower()] = repo
            for store in (self.deployments, self.commit_statuses, self.check_runs, self.workflow_runs):
                store.setdefault(full_name, [])
            self.environments.setdefault(full_name, {})
            return repo.id

    def repo_id(self, full_name: str) -> int:
        """Return the id given to a repository."""
        return self._repo(full_name).id

    def set_branch(self, full_name: str, branch: str, sha: str) -> None:
        """Point a branch (or tag) name at a sha; deployments and refs resolve through it."""
        with self._lock:
            self._repo(full_name).branches[branch] = sha.lower()

    def branch_sha(self, full_name: str, branch: str) -> str:
        """Return the sha a branch points at."""
        return self._repo(full_name).branches[branch]

    def set_pull(self, full_name: str, number: int, head_sha: str, *, state: str = "open", draft: bool = False,
                 head_ref: str = "feature/login", labels: tuple[str, ...] = (), merged: bool = False,
                 head_repo: str | None = None) -> None:
        """Say what GET /repos/{o}/{r}/pulls/{number} answers now (the pull request's current state)."""
        with self._lock:
            repo = self._repos[full_name.lower()]
            head_full = head_repo or full_name
            self.pulls[(full_name.lower(), number)] = {
                "url": f"https://api.github.com/repos/{full_name}/pulls/{number}", "id": 90000 + number,
                "number": number, "state": state, "draft": draft, "merged": merged, "title": f"PR {number}",
                "labels": [{"name": name} for name in labels], "updated_at": _iso(_now()),
                "head": {"ref": head_ref, "sha": head_sha, "label": f"{head_full.split('/')[0]}:{head_ref}",
                         "repo": {"full_name": head_full, "name": head_full.split("/")[1]}},
                "base": {"ref": repo.default_branch, "sha": repo.branches.get(repo.default_branch),
                         "repo": {"full_name": full_name, "name": repo.name}},
            }

    def set_file(self, full_name: str, path: str, text: str | bytes, ref: str | None = None) -> None:
        """Store a file for the contents API; ref None = the default branch."""
        with self._lock:
            repo = self._repo(full_name)
            data = text.encode() if isinstance(text, str) else text
            repo.files[(ref or repo.default_branch, path.strip("/"))] = data

    def delete_file(self, full_name: str, path: str, ref: str | None = None) -> None:
        """Remove a file set with set_file."""
        with self._lock:
            repo = self._repo(full_name)
            repo.files.pop((ref or repo.default_branch, path.strip("/")), None)

    def add_check_run(self, full_name: str, sha: str, name: str, status: str = "completed",
                      conclusion: str | None = "success", app_slug: str = "github-actions",
                      *, details_url: str | None = None, external_id: str = "") -> int:
        """Record a check run on a commit (grouped in one suite per app); return its id."""
        with self._lock:
            repo = self._repo(full_name)
            suite_key = (repo.full_name, sha.lower(), app_slug)
            if suite_key not in self._suites:
                self._suites[suite_key] = next(self._ids["check_suite"])
            run_id = next(self._ids["check_run"])
            moment = _now()
            self.check_runs[repo.full_name].append({
                "id": run_id, "sha": sha.lower(), "name": name, "status": status,
                "conclusion": conclusion if status == "completed" else None, "app_slug": app_slug,
                "suite_id": self._suites[suite_key], "started_at": moment,
                "completed_at": moment if status == "completed" else None,
                "details_url": details_url, "external_id": external_id})
            return run_id

    def add_commit_status(self, full_name: str, sha: str, context: str, state: str,
                          *, description: str | None = None, target_url: str | None = None) -> dict[str, Any]:
        """Record a commit status as if another integration had posted it; return it."""
        with self._lock:
            repo = self._repo(full_name)
            return self._store_commit_status(repo, sha.lower(), state, context, description, target_url,
                                             self._user("octocat", 583231))

    def add_workflow_run(self, full_name: str, head_sha: str, name: str, status: str = "completed",
                         conclusion: str | None = "success", event: str = "push",
                         path: str = ".github/workflows/ci.yml", *, head_branch: str | None = None) -> int:
        """Record a GitHub Actions workflow run for a commit; return the run id."""
        with self._lock:
            repo = self._repo(full_name)
            return self._store_workflow_run(repo, head_sha.lower(), name, status, conclusion, event, path,
                                            head_branch)

    def set_workflow_run(self, full_name: str, run_id: int, *, status: str,
                         conclusion: str | None = None) -> None:
        """Move a workflow run along (e.g. queued -> completed)."""
        with self._lock:
            try:
                run = self._workflow_run(self._repo(full_name), run_id)
            except ApiError:
                raise KeyError(f"no workflow run {run_id} in {full_name}") from None
            run.update(status=status, conclusion=conclusion if status == "completed" else None,
                       updated_at=_now())

    def add_hook_delivery(self, guid: str, event: str, action: str | None = None, status_code: int = 200,
                          redelivery: bool = False, delivered_at: datetime | str | None = None,
                          installation_id: int | None = None, *, repository_id: int | None = None,
                          payload: dict[str, Any] | None = None) -> int:
        """Record a webhook delivery of the App (as GitHub's delivery log would); return its id."""
        with self._lock:
            return self._store_delivery(guid, event, action, status_code, redelivery, delivered_at,
                                        installation_id, repository_id, payload)

    def add_manifest_code(self, code: str, overrides: dict[str, Any] | None = None) -> None:
        """Accept `code` once at POST /app-manifests/{code}/conversions."""
        with self._lock:
            self._manifest_codes[code] = dict(overrides or {})

    def expire_tokens(self) -> None:
        """Make every minted installation token expired (clients still hold them in cache)."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = time.time() - 1

    # ---- fault injection and recording -------------------------------------------------------

    _UNSET: Any = object()

    def fail(self, method: str, path_regex: str, status: int | None = _UNSET, times: int | None = 1,
             headers: dict[str, str] | None = None, body: Any = None, delay: float = 0.0,
             drop: bool = False) -> None:
        """Inject a fault for requests matching METHOD ("*" = any) and a regex searched in the path.

        `status` defaults to 500, except that a fault with only `delay` (a slow answer) or
        `drop` answers normally; pass status=None to be explicit. `drop=True` performs the real
        action, then closes the socket without a response. `times=None` never runs out.
        """
        if status is self._UNSET:
            status = None if (delay or drop) else 500
        with self._lock:
            self._faults.append(Fault(method.upper(), re.compile(path_regex), status, times,
                                      {k.lower(): v for k, v in (headers or {}).items()}, body, delay, drop))

    def fail_secondary_rate_limit(self, method: str, path_regex: str, retry_after: int = 60,
                                  status: int = 403, times: int | None = 1) -> None:
        """Inject GitHub's secondary rate-limit answer (retry-after header, documented message)."""
        self.fail(method, path_regex, status, times, headers={"retry-after": str(retry_after)}, body={
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes before "
                       "you try again. If you reach out to GitHub Support for help, please include "
                       "the request ID.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
                                 "#about-secondary-rate-limits"})

    def fail_primary_rate_limit(self, method: str, path_regex: str, reset_in: int = 60,
                                status: int = 403, times: int | None = 1) -> None:
        """Inject GitHub's primary rate-limit answer (remaining 0, reset in `reset_in` seconds)."""
        self.fail(method, path_regex, status, times, headers={
            "x-ratelimit-remaining": "0", "x-ratelimit-used": str(self.rate_limit),
            "x-ratelimit-reset": str(int(time.time()) + reset_in)}, body={
            "message": "API rate limit exceeded for installation.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"})

    def clear_faults(self) -> None:
        """Forget every injected fault."""
        with self._lock:
            self._faults.clear()

    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        """Return the recorded calls with METHOD ("*" = any) whose path matches the regex."""
        pattern = re.compile(path_regex)
        with self._lock:
            return [c for c in self.calls
                    if method.upper() in ("*", c.method) and pattern.search(c.path)]

    def reset_calls(self) -> None:
        """Forget recorded calls."""
        with self._lock:
            self.calls.clear()

    # ---- HTTP plumbing -----------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer one request: record it, apply latency and faults, route, send."""
        split = urlsplit(handler.path)
        path = unquote(split.path)
        if self.path_prefix and path.startswith(self.path_prefix):
            path = path[len(self.path_prefix):] or "/"
        elif self.path_prefix:
            path = "/__missing_api_prefix__" + path  # GHES serves the API only under its prefix: 404
        path = path.rstrip("/") or "/"
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        raw = handler.rfile.read(int(headers.get("content-length") or 0))
        payload, bad_json = self._parse_json(raw)
        call = Call(handler.command, path, query, headers, payload)
        with self._lock:
            self.calls.append(call)
            fault = self._take_fault(handler.command, path)
        pause = self.latency + (fault.delay if fault else 0.0)
        if pause:
            time.sleep(pause)
        if fault is not None and fault.status is not None and not fault.drop:
            answer = Answer(fault.status, fault.body if fault.body is not None else {
                "message": HTTPStatus(fault.status).phrase, "documentation_url": DOCS}, fault.headers)
        elif bad_json:
            answer = ApiError(400, "Problems parsing JSON").answer
        else:
            answer = self._answer(Request(handler.command, path, query, headers, payload, {}))
        if fault is not None and fault.drop:
            self._drop(handler)
            return
        self._send(handler, answer, call)

    def _answer(self, request: Request) -> Answer:
        """Route under the state lock; a crash of the fake becomes a 500 and an entry in `errors`."""
        try:
            with self._lock:
                return self._route(request)
        except Exception:  # noqa: BLE001 - a fake must answer, and say what broke
            self.errors.append(traceback.format_exc())
            return Answer(500, {"message": "FakeGitHub crashed; see fake.errors", "documentation_url": DOCS})

    @staticmethod
    def _parse_json(raw: bytes) -> tuple[Any, bool]:
        """Decode a request body; report whether it was present but not JSON."""
        if not raw.strip():
            return None, False
        try:
            return json.loads(raw), False
        except ValueError:
            return raw.decode("utf-8", "replace"), True

    def _take_fault(self, method: str, path: str) -> Fault | None:
        """Return (and consume one use of) the first fault matching this request."""
        for fault in self._faults:
            if fault.matches(method, path):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _drop(handler: BaseHTTPRequestHandler) -> None:
        """Close the connection without a single byte of response."""
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, handler: BaseHTTPRequestHandler, answer: Answer, call: Call) -> None:
        """Write an answer with GitHub's standard headers, recording its status in `call` first."""
        status, body, request_headers = answer.status, answer.body, call.headers
        data = body if isinstance(body, bytes) else (b"" if body is None else
                                                      (body if isinstance(body, str) else json.dumps(body)).encode())
        extra = {k.lower(): v for k, v in answer.headers.items()}
        if handler.command == "GET" and status == 200 and body is not None:
            # Conditional requests: githubkit (hishel) revalidates with If-None-Match.
            etag = 'W/"%s"' % hashlib.sha256(data).hexdigest()[:32]
            extra.setdefault("etag", etag)
            extra.setdefault("cache-control", "private, max-age=60, s-maxage=60")
            extra.setdefault("vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
            if etag in request_headers.get("if-none-match", ""):
                status, data = 304, b""
        base = self._rate_headers(request_headers, counted=status != 304)
        if status not in (204, 304):
            base["content-type"] = "application/json; charset=utf-8"
        merged = {**base, **extra}
        with self._lock:  # before the first byte: the client may look at `calls` as soon as it reads
            call.status = status
        handler.send_response(status)
        for name, value in merged.items():
            handler.send_header(name, value)
        if status not in (204, 304):
            handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        if data and status not in (204, 304):
            handler.wfile.write(data)

    def _rate_headers(self, request_headers: dict[str, str], *, counted: bool) -> dict[str, str]:
        """Return the x-ratelimit-* and request-id headers for the caller's bucket."""
        with self._lock:
            bucket = self._bucket(request_headers)
            if time.time() > self._rate_window:
                self._rate_used.clear()
                self._rate_window = int(time.time()) + 3600
            if counted:
                self._rate_used[bucket] += 1
            used = self._rate_used[bucket]
        limit = self.rate_limit if bucket != "anonymous" else 60
        return {
            "x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(max(limit - used, 0)),
            "x-ratelimit-reset": str(self._rate_window), "x-ratelimit-used": str(used),
            "x-ratelimit-resource": "core",
            "x-github-request-id": ":".join(secrets.token_hex(n).upper() for n in (2, 2, 4, 4, 4)),
            "x-github-media-type": "github.v3; format=json",
            "x-github-api-version-selected": request_headers.get("x-github-api-version", "2022-11-28"),
        }

    def _bucket(self, request_headers: dict[str, str]) -> str:
        """Name the rate-limit bucket a request counts against (per installation, app, or anon)."""
        credential = request_headers.get("authorization", "").split(" ", 1)[-1].strip()
        token = self._tokens.get(credential)
        if token is not None:
            return f"installation:{token.installation_id}"
        return "app" if credential.startswith("ey") else "anonymous"

    def _route(self, request: Request) -> Answer:
        """Find the route, authenticate, authorise and run the handler."""
        try:
            version = request.headers.get("x-github-api-version")
            if version is not None and version not in SUPPORTED_API_VERSIONS:
                raise ApiError(400, f"API version {version} is not supported.")
            for candidate in _ROUTES:
                match = candidate.pattern.match(request.path)
                if match and candidate.method == request.method:
                    request.params = {k: v for k, v in match.groupdict().items() if v is not None}
                    self._authenticate(candidate, request)
                    self._enforce_rate_limit(request)
                    return candidate.handler(self, request)
            raise _not_found()
        except ApiError as error:
            return error.answer

    def _enforce_rate_limit(self, request: Request) -> None:
        """Answer 403 with remaining 0 once a bucket has used `rate_limit` requests this hour."""
        bucket = self._bucket(request.headers)
        if bucket != "anonymous" and self._rate_used[bucket] >= self.rate_limit:
            raise ApiError(403, "API rate limit exceeded for installation.",
                           {"x-ratelimit-remaining": "0"},
                           documentation_url="https://docs.github.com/rest/overview/rate-limits-for-the-rest-api")

    # ---- authentication ----------------------------------------------------------------------

    def _authenticate(self, candidate: _Route, request: Request) -> None:
        """Apply the route's auth: App JWT, installation token (+ repo and permission), or none."""
        if candidate.auth == "jwt":
            self._verify_jwt(request.headers.get("authorization", ""))
            if "owner" in request.params:
                request.repo = self._find_repo(request.params)
            return
        if candidate.auth == "none":
            return
        request.token = self._verify_token(request.headers.get("authorization", ""))
        if "owner" in request.params:
            repo = self._find_repo(request.params)
            if repo.installation_id != request.token.installation_id or (
                    request.token.repository_ids is not None and repo.id not in request.token.repository_ids):
                raise _not_found()  # GitHub hides repositories a token cannot see
            request.repo = repo
        if candidate.permission is not None:
            self._check_permission(request.token, *candidate.permission)

    def _verify_jwt(self, authorization: str) -> dict[str, Any]:
        """Check an App JWT like GitHub: RS256 by the App's key, right iss, sane iat/exp."""
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise ApiError(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(credential.strip(), self._public_key, algorithms=["RS256"],
                                options={"verify_exp": False, "verify_iat": False, "verify_iss": False,
                                         "verify_aud": False, "require": ["iat", "exp", "iss"]})
        except jwt.PyJWTError:
            raise ApiError(401, "A JSON web token could not be decoded") from None
        if str(claims["iss"]) not in (str(self.app_id), self.client_id):
            raise ApiError(401, "A JSON web token could not be decoded")
        iat, exp, now = claims["iat"], claims["exp"], time.time()
        if not isinstance(iat, int | float) or iat > now + 60:
            raise ApiError(401, "'Issued at' claim ('iat') must be an Integer representing the time "
                                "that the assertion was issued")
        if not isinstance(exp, int | float) or exp <= now:
            raise ApiError(401, "'Expiration time' claim ('exp') must be a numeric value representing "
                                "the future time at which the assertion expires")
        if exp - iat > 600 or exp > now + 600 + 60:
            raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")
        return claims

    def _verify_token(self, authorization: str) -> Token:
        """Return the live installation token named by `token X` or `Bearer X`."""
        scheme, _, credential = authorization.partition(" ")
        if not authorization:
            raise ApiError(401, "Requires authentication")
        token = self._tokens.get(credential.strip()) if scheme.lower() in ("token", "bearer") else None
        if token is None or token.expires_at <= time.time():
            raise ApiError(401, "Bad credentials")
        installation = self._installations.get(token.installation_id)
        if installation is None:
            raise ApiError(401, "Bad credentials")
        if installation.suspended_at is not None:
            raise ApiError(403, "This installation has been suspended")
        return token

    @staticmethod
    def _check_permission(token: Token, name: str, level: str) -> None:
        """Answer 403 'Resource not accessible by integration' when the token lacks a permission."""
        granted = token.permissions.get(name)
        if granted is None or (level == "write" and granted != "write"):
            raise ApiError(403, "Resource not accessible by integration",
                           {"x-accepted-github-permissions": f"{name}={level}"})

    # ---- lookups -----------------------------------------------------------------------------

    def _repo(self, full_name: str) -> Repo:
        """Return a repository by full name, for set-up methods."""
        try:
            return self._repos[full_name.lower()]
        except KeyError:
            raise KeyError(f"add_repo({full_name!r}, ...) first") from None

    def _find_repo(self, params: dict[str, str]) -> Repo:
        """Return the repository named in a path, or 404."""
        repo = self._repos.get(f"{params['owner']}/{params['name']}".lower())
        if repo is None:
            raise _not_found()
        return repo

    def _account_id(self, login: str) -> int:
        """Return a stable id for an account login."""
        return 10_000_000 + int(hashlib.sha1(login.lower().encode()).hexdigest()[:6], 16)

    def _resolve_ref(self, repo: Repo, ref: str) -> str | None:
        """Resolve a sha, branch or tag (optionally refs/heads/..., refs/tags/...) to a sha."""
        if _HEX40.match(ref):
            return ref.lower()
        return repo.branches.get(self._short_ref(ref))

    @staticmethod
    def _short_ref(ref: str) -> str:
        """Strip refs/heads/, refs/tags/, heads/ and tags/ prefixes."""
        for prefix in ("refs/heads/", "refs/tags/", "heads/", "tags/"):
            if ref.startswith(prefix):
                return ref[len(prefix):]
        return ref

    def _branch_of(self, repo: Repo, sha: str) -> str | None:
        """Return a branch pointing at sha, preferring the default branch."""
        if repo.branches.get(repo.default_branch) == sha:
            return repo.default_branch
        return next((b for b, s in repo.branches.items() if s == sha), None)

    def _deployment(self, request: Request) -> dict[str, Any]:
        """Return the deployment named in the path, or 404."""
        assert request.repo is not None
        dep_id = request.int_param("deployment_id")
        for dep in self.deployments[request.repo.full_name]:
            if dep["id"] == dep_id:
                return dep
        raise _not_found()

    def _workflow_run(self, repo: Repo, run_id: int) -> dict[str, Any]:
        """Return a stored workflow run, or 404."""
        for run in self.workflow_runs[repo.full_name]:
            if run["id"] == run_id:
                return run
        raise _not_found()

    def _page(self, request: Request, items: list[Any], default: int = 30) -> tuple[list[Any], dict[str, str]]:
        """Slice a list by per_page/page and build GitHub's Link header (first/prev/next/last)."""
        per_page = self._int_query(request, "per_page", default, 1, 100)
        page = self._int_query(request, "page", 1, 1, 10**9)
        last = max((len(items) + per_page - 1) // per_page, 1)
        links = []
        for rel, target in (("prev", page - 1), ("next", page + 1), ("last", last), ("first", 1)):
            if (rel == "prev" and page > 1) or (rel == "next" and page < last) or (
                    rel in ("last", "first") and last > 1 and (page != target)):
                query = {**request.query, "per_page": str(per_page), "page": str(target)}
                links.append(f'<{self._api()}{request.path}?{urlencode(query)}>; rel="{rel}"')
        headers = {"link": ", ".join(links)} if links else {}
        return items[(page - 1) * per_page: page * per_page], headers

    @staticmethod
    def _int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
        """Read an integer query parameter, clamped like GitHub does."""
        try:
            return min(max(int(request.query.get(name, default)), low), high)
        except ValueError:
            return default

    # ---- object builders (complete, as githubkit's strict models demand) ---------------------

    def _user(self, login: str, user_id: int, kind: str = "User") -> dict[str, Any]:
        """Build a full simple-user object."""
        api = self._api()
        bot = kind == "Bot"
        return {
            "login": login, "id": user_id, "node_id": _node_id("Bot" if bot else kind, user_id),
            "avatar_url": (f"https://avatars.githubusercontent.com/in/{self.app_id}?v=4" if bot
                           else f"https://avatars.githubusercontent.com/u/{user_id}?v=4"),
            "gravatar_id": "", "url": f"{api}/users/{login}",
            "html_url": f"{HTML}/apps/{login.removesuffix('[bot]')}" if bot else f"{HTML}/{login}",
            "followers_url": f"{api}/users/{login}/followers",
            "following_url": f"{api}/users/{login}/following{{/other_user}}",
            "gists_url": f"{api}/users/{login}/gists{{/gist_id}}",
            "starred_url": f"{api}/users/{login}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/users/{login}/subscriptions",
            "organizations_url": f"{api}/users/{login}/orgs", "repos_url": f"{api}/users/{login}/repos",
            "events_url": f"{api}/users/{login}/events{{/privacy}}",
            "received_events_url": f"{api}/users/{login}/received_events",
            "type": kind, "user_view_type": "public", "site_admin": False,
        }

    def _account(self, login: str, kind: str | None = None) -> dict[str, Any]:
        """Build the user object of an account (an installation's type when it is one)."""
        installation = next((i for i in self._installations.values() if i.account.lower() == login.lower()), None)
        kind = kind or (installation.account_type if installation else "User")
        return self._user(login, self._account_id(login), kind)

    def _bot_user(self) -> dict[str, Any]:
        """Build the App's bot user, the creator of everything an installation token makes."""
        return self._user(f"{self.app_slug}[bot]", 90_000_000 + self.app_id % 1_000_000, "Bot")

    def _app(self, slug: str | None = None) -> dict[str, Any]:
        """Build a full GitHub App (integration) object: this App, GitHub Actions, or another."""
        slug = slug or self.app_slug
        if slug == self.app_slug:
            app_id, name, owner = self.app_id, self.app_name, self._account(self.app_owner, "Organization")
            permissions, events = dict(DEFAULT_PERMISSIONS), list(DEFAULT_EVENTS)
        elif slug == "github-actions":
            app_id, name, owner = 15368, "GitHub Actions", self._user("github", 9919, "Organization")
            permissions = {"actions": "write", "checks": "write", "contents": "write", "deployments": "write",
                           "metadata": "read", "statuses": "write"}
            events = ["check_run", "check_suite", "push", "pull_request", "workflow_dispatch"]
        else:
            app_id = 100_000 + int(hashlib.sha1(slug.encode()).hexdigest()[:5], 16)
            name, owner = slug.replace("-", " ").title(), self._user("octocat", 583231)
            permissions, events = {"checks": "write", "metadata": "read"}, ["check_suite"]
        return {
            "id": app_id, "slug": slug, "node_id": _node_id("App", app_id),
            "client_id": self.client_id if slug == self.app_slug else f"Iv1.{app_id:016x}",
            "owner": owner, "name": name, "description": "", "external_url": f"{HTML}/apps/{slug}",
            "html_url": f"{HTML}/apps/{slug}", "created_at": _iso(self.created_at),
            "updated_at": _iso(self.created_at), "permissions": permissions, "events": events,
        }

    def _installation(self, installation: Installation) -> dict[str, Any]:
        """Build a full installation object."""
        api, org = self._api(), installation.account_type == "Organization"
        settings = (f"{HTML}/organizations/{installation.account}/settings/installations/{installation.id}"
                    if org else f"{HTML}/settings/installations/{installation.id}")
        return {
            "id": installation.id,
            "account": self._user(installation.account, installation.account_id, installation.account_type),
            "repository_selection": installation.repository_selection,
            "access_tokens_url": f"{api}/app/installations/{installation.id}/access_tokens",
            "repositories_url": f"{api}/installation/repositories", "html_url": settings,
            "app_id": self.app_id, "client_id": self.client_id, "app_slug": self.app_slug,
            "target_id": installation.account_id, "target_type": installation.account_type,
            "permissions": dict(installation.permissions), "events": list(DEFAULT_EVENTS),
            "created_at": _iso(installation.created_at), "updated_at": _iso(installation.created_at),
            "single_file_name": None, "has_multiple_single_files": False, "single_file_paths": [],
            "suspended_by": self._user("octocat", 583231) if installation.suspended_at else None,
            "suspended_at": _iso(installation.suspended_at) if installation.suspended_at else None,
        }

    def _repo_urls(self, repo: Repo) -> dict[str, Any]:
        """Build the URL fields shared by every repository shape."""
        base, html = f"{self._api()}/repos/{repo.full_name}", f"{HTML}/{repo.full_name}"
        templates = {
            "archive": "/{archive_format}{/ref}", "assignees": "/assignees{/user}", "blobs": "/git/blobs{/sha}",
            "branches": "/branches{/branch}", "collaborators": "/collaborators{/collaborator}",
            "comments": "/comments{/number}", "commits": "/commits{/sha}", "compare": "/compare/{base}...{head}",
            "contents": "/contents/{+path}", "contributors": "/contributors", "deployments": "/deployments",
            "downloads": "/downloads", "events": "/events", "forks": "/forks", "git_commits": "/git/commits{/sha}",
            "git_refs": "/git/refs{/sha}", "git_tags": "/git/tags{/sha}", "hooks": "/hooks",
            "issue_comment": "/issues/comments{/number}", "issue_events": "/issues/events{/number}",
            "issues": "/issues{/number}", "keys": "/keys{/key_id}", "labels": "/labels{/name}",
            "languages": "/languages", "merges": "/merges", "milestones": "/milestones{/number}",
            "notifications": "/notifications{?since,all,participating}", "pulls": "/pulls{/number}",
            "releases": "/releases{/id}", "stargazers": "/stargazers", "statuses": "/statuses/{sha}",
            "subscribers": "/subscribers", "subscription": "/subscription", "tags": "/tags", "teams": "/teams",
            "trees": "/git/trees{/sha}",
        }
        urls = {f"{key}_url": base + suffix for key, suffix in templates.items()}
        urls.update(url=base, html_url=html, git_url=f"git://github.com/{repo.full_name}.git",
                    ssh_url=f"git@github.com:{repo.full_name}.git", clone_url=f"{html}.git", svn_url=html)
        return urls

    def _repository(self, repo: Repo) -> dict[str, Any]:
        """Build a full repository object (fits FullRepository, Repository and MinimalRepository)."""
        owner = self._account(repo.owner)
        return {
            "id": repo.id, "node_id": _node_id("Repository", repo.id), "name": repo.name,
            "full_name": repo.full_name, "owner": owner, "private": repo.private,
            "description": None, "fork": False, **self._repo_urls(repo), "mirror_url": None, "homepage": None,
            "language": "Python", "forks_count": 0, "stargazers_count": 0, "watchers_count": 0, "size": 108,
            "default_branch": repo.default_branch,
            "open_issues_count": 0, "is_template": False, "topics": [],
            "has_issues": True, "has_projects": True, "has_wiki": True, "has_pages": False,
            "has_downloads": True, "has_discussions": False, "archived": False, "disabled": False,
            "visibility": "private" if repo.private else "public",
            "pushed_at": _iso(repo.created_at), "created_at": _iso(repo.created_at),
            "updated_at": _iso(repo.created_at), "allow_forking": True, "web_commit_signoff_required": False,
            "subscribers_count": 1, "network_count": 0, "license": None, "forks": 0, "open_issues": 0,
            "watchers": 0, "temp_clone_token": "", "allow_squash_merge": True, "allow_merge_commit": True,
            "allow_rebase_merge": True, "allow_auto_merge": False, "delete_branch_on_merge": False,
        } | ({"organization": owner} if owner["type"] == "Organization" else {})

    def _commit(self, sha: str) -> dict[str, Any]:
        """Build the simple-commit object GitHub embeds in suites and workflow runs."""
        person = {"name": "Octocat", "email": "octocat@github.com"}
        return {"id": sha, "tree_id": _derived_sha("tree", sha), "message": f"Commit {sha[:7]}",
                "timestamp": _iso(self.created_at), "author": dict(person), "committer": dict(person)}

    # ---- App endpoints (JWT) -----------------------------------------------------------------

    @route("GET", "/app", auth="jwt")
    def _get_app(self, request: Request) -> Answer:
        """GET /app: the authenticated App."""
        return Answer(200, {**self._app(), "installations_count": len(self._installations)})

    @route("GET", "/app/installations", auth="jwt")
    def _list_installations(self, request: Request) -> Answer:
        """GET /app/installations."""
        items = [self._installation(i) for i in sorted(self._installations.values(), key=lambda i: i.id)]
        page, headers = self._page(request, items)
        return Answer(200, page, headers)

    @route("GET", r"/app/installations/(?P<installation_id>\d+)", auth="jwt")
    def _get_installation(self, request: Request) -> Answer:
        """GET /app/installations/{id}."""
        installation = self._installations.get(request.int_param("installation_id"))
        if installation is None:
            raise _not_found()
        return Answer(200, self._installation(installation))

    @route("POST", r"/app/installations/(?P<installation_id>\d+)/access_tokens", auth="jwt")
    def _create_token(self, request: Request) -> Answer:
        """POST /app/installations/{id}/access_tokens: mint a ghs_ token, optionally narrowed."""
        installation = self._installations.get(request.int_param("installation_id"))
        if installation is None:
            raise _not_found()
        if installation.suspended_at is not None:
            raise ApiError(403, "This installation has been suspended")
        body = request.body()
        permissions = self._narrow_permissions(installation, body.get("permissions"))
        repos = self._narrow_repos(installation, body.get("repositories"), body.get("repository_ids"))
        value = "ghs_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))
        expires_at = int(time.time()) + self.token_ttl
        self._tokens[value] = Token(value, installation.id, expires_at, permissions,
                                    frozenset(r.id for r in repos) if repos is not None else None)
        self.token_mints[installation.id] += 1
        answer: dict[str, Any] = {
            "token": value, "expires_at": _iso(expires_at), "permissions": permissions,
            "repository_selection": "selected" if repos is not None else installation.repository_selection}
        if repos is not None:
            answer["repositories"] = [self._repository(r) for r in repos]
        return Answer(201, answer)

    @staticmethod
    def _narrow_permissions(installation: Installation, wanted: Any) -> dict[str, str]:
        """Return the token's permissions: the installation's, or a subset asked for (never wider)."""
        if not wanted:
            return dict(installation.permissions)
        for name, level in wanted.items():
            granted = installation.permissions.get(name)
            if granted is None or (level == "write" and granted != "write"):
                raise ApiError(422, "The permissions requested are not granted to this installation.")
        return dict(wanted)

    def _narrow_repos(self, installation: Installation, names: Any, ids: Any) -> list[Repo] | None:
        """Return the repositories a token is narrowed to, or None for all of the installation's."""
        if not names and not ids:
            return None
        by_name = {r.name.lower(): r for r in self._repos.values() if r.installation_id == installation.id}
        by_id = {r.id: r for r in by_name.values()}
        try:
            chosen = [by_name[str(n).lower()] for n in names or []] + [by_id[i] for i in ids or []]
        except KeyError:
            raise ApiError(422, "There is at least one repository that does not exist or is not "
                                "accessible to the parent installation.") from None
        return list({r.id: r for r in chosen}.values())

    @route("GET", "/installation/repositories", permission=("metadata", "read"))
    def _installation_repositories(self, request: Request) -> Answer:
        """GET /installation/repositories: what the token can see."""
        assert request.token is not None
        token = request.token
        repos = [r for r in self._repos.values() if r.installation_id == token.installation_id
                 and (token.repository_ids is None or r.id in token.repository_ids)]
        page, headers = self._page(request, [self._repository(r) for r in sorted(repos, key=lambda r: r.id)])
        installation = self._installations[token.installation_id]
        return Answer(200, {"total_count": len(repos), "repositories": page,
                            "repository_selection": installation.repository_selection}, headers)

    @route("GET", "{repo}/installation", auth="jwt")
    def _repo_installation(self, request: Request) -> Answer:
        """GET /repos/{o}/{r}/installation (JWT)."""
        assert request.repo is not None
        return Answer(200, self._installation(self._installations[request.repo.installation_id]))

    @route("POST", r"/app-manifests/(?P<code>[^/]+)/conversions", auth="none")
    def _manifest_conversion(self, request: Request) -> Answer:
        """POST /app-manifests/{code}/conversions: each registered code converts once."""
        overrides = self._manifest_codes.pop(request.params["code"], None)
        if overrides is None:
            raise _not_found()
        answer = {
            **self._app(), "installations_count": 0,
            "client_secret": secrets.token_hex(20), "webhook_secret": secrets.token_hex(20),
            "pem": self.private_key_pem.decode(), **overrides}
        self.webhook_secret = answer["webhook_secret"]
        return Answer(201, answer)

    # ---- App webhook deliveries (JWT) ---------------------------------------------------------

    def _store_delivery(self, guid: str, event: str, action: str | None, status_code: int, redelivery: bool,
                        delivered_at: datetime | str | None, installation_id: int | None,
                        repository_id: int | None, payload: dict[str, Any] | None) -> int:
        """Append a delivery record in GitHub's item shape; return its id."""
        if isinstance(delivered_at, str):
            delivered_at = datetime.fromisoformat(delivered_at.replace("Z", "+00:00"))
        delivery_id = next(self._ids["delivery"])
        self.hook_deliveries.append({
            "id": delivery_id, "guid": guid, "delivered_at": _iso(delivered_at or _now()),
            "redelivery": redelivery, "duration": 0.27,
            "status": "OK" if 200 <= status_code < 300 else f"Invalid HTTP Response: {status_code}",
            "status_code": status_code, "event": event, "action": action,
            "installation_id": installation_id, "repository_id": repository_id, "throttled_at": None,
            "_payload": payload or {}})
        return delivery_id

    @staticmethod
    def _public(record: dict[str, Any]) -> dict[str, Any]:
        """Drop the fake's private bookkeeping keys (those starting with '_')."""
        return {k: v for k, v in record.items() if not k.startswith("_")}

    @route("GET", "/app/hook/deliveries", auth="jwt")
    def _list_deliveries(self, request: Request) -> Answer:
        """GET /app/hook/deliveries: newest first, cursor paging through the Link header."""
        items = sorted(self.hook_deliveries, key=lambda d: (d["delivered_at"], d["id"]), reverse=True)
        wanted = request.query.get("status")
        if wanted in ("success", "failure"):
            items = [d for d in items if (d["status"] == "OK") == (wanted == "success")]
        cursor = request.query.get("cursor")
        if cursor:
            position = next((i for i, d in enumerate(items) if f"v1_{d['id']}" == cursor), None)
            if position is None:
                raise ApiError(400, "Invalid cursor")
            items = items[position + 1:]
        per_page = self._int_query(request, "per_page", 30, 1, 100)
        page, headers = items[:per_page], {}
        if len(items) > per_page:
            query = {**request.query, "per_page": str(per_page), "cursor": f"v1_{page[-1]['id']}"}
            headers["link"] = f'<{self._api()}{request.path}?{urlencode(query)}>; rel="next"'
        return Answer(200, [self._public(d) for d in page], headers)

    def _delivery(self, request: Request) -> dict[str, Any]:
        """Return the delivery named in the path, or 404."""
        delivery_id = request.int_param("delivery_id")
        found = next((d for d in self.hook_deliveries if d["id"] == delivery_id), None)
        if found is None:
            raise _not_found()
        return found

    @route("GET", r"/app/hook/deliveries/(?P<delivery_id>\d+)", auth="jwt")
    def _get_delivery(self, request: Request) -> Answer:
        """GET /app/hook/deliveries/{id}: the delivery with its request and response."""
        delivery = self._delivery(request)
        return Answer(200, {
            **self._public(delivery), "url": "",
            "request": {"headers": {"X-GitHub-Delivery": delivery["guid"], "X-GitHub-Event": delivery["event"],
                                    "Content-Type": "application/json"}, "payload": delivery["_payload"]},
            "response": {"headers": {}, "payload": ""}})

    @route("POST", r"/app/hook/deliveries/(?P<delivery_id>\d+)/attempts", auth="jwt")
    def _redeliver(self, request: Request) -> Answer:
        """POST /app/hook/deliveries/{id}/attempts: 202 and a new delivery with the same guid."""
        delivery = self._delivery(request)
        self.redeliveries.append(delivery["id"])
        self._store_delivery(delivery["guid"], delivery["event"], delivery["action"],
                             self.redelivery_status_code, True, None,
                             delivery["installation_id"], delivery["repository_id"], delivery["_payload"])
        return Answer(202, {})

    # ---- repository ---------------------------------------------------------------------------

    @route("GET", "{repo}", permission=("metadata", "read"))
    def _get_repo(self, request: Request) -> Answer:
        """GET /repos/{o}/{r}."""
        assert request.repo is not None
        return Answer(200, self._repository(request.repo))

    # ---- deployments --------------------------------------------------------------------------

    @route("POST", "{repo}/deployments", permission=("deployments", "write"))
    def _create_deployment(self, request: Request) -> Answer:
        """POST /repos/{o}/{r}/deployments: resolve ref, auto-merge, status checks, then 201."""
        repo, body = request.repo, request.body()
        assert repo is not None
        ref = body.get("ref")
        if not isinstance(ref, str) or not ref:
            raise ApiError(422, "Invalid request.\n\n\"ref\" wasn't supplied.",
                           documentation_url=f"{DOCS}/deployments/deployments#create-a-deployment")
        payload = body.get("payload", {})
        if payload is None:
            payload = {}
        if not isinstance(payload, dict | str):
            raise ApiError(422, "Invalid request.\n\nFor 'properties/payload', "
                                f"{json.dumps(payload)} is not an object or string.")
        sha = self._resolve_ref(repo, ref)
        if sha is None:
            raise ApiError(422, f"No ref found for: {ref}",
                           documentation_url=f"{DOCS}/deployments/deployments#create-a-deployment")
        if body.get("auto_merge", True):
            merged = self._auto_merge(repo, ref)
            if merged is not None:
                return merged
        failing = self._failing_contexts(repo, sha, body.get("required_contexts"))
        if failing:
            raise ApiError(409, f"Conflict: Commit status checks failed for {ref}.",
                           documentation_url=f"{DOCS}/deployments/deployments#create-a-deployment",
                           errors=[{"contexts": failing, "resource": "Deployment", "field": "required_contexts"}])
        return Answer(201, self._store_deployment(repo, ref, sha, body, payload))

    def _store_deployment(self, repo: Repo, ref: str, sha: str, body: dict[str, Any], payload: Any) -> dict[str, Any]:
        """Create and keep the deployment object; make its environment exist."""
        environment = body.get("environment") or "production"
        production = body.get("production_environment")
        dep_id, moment = next(self._ids["deployment"]), _iso(_now())
        base = f"{self._api()}/repos/{repo.full_name}"
        deployment = {
            "url": f"{base}/deployments/{dep_id}", "id": dep_id, "node_id": _node_id("Deployment", dep_id),
            "sha": sha, "ref": ref, "task": body.get("task") or "deploy", "payload": payload,
            "original_environment": environment, "environment": environment,
            "description": body.get("description"), "creator": self._bot_user(),
            "created_at": moment, "updated_at": moment,
            "statuses_url": f"{base}/deployments/{dep_id}/statuses", "repository_url": base,
            "transient_environment": bool(body.get("transient_environment", False)),
            "production_environment": environment == "production" if production is None else bool(production),
            "performed_via_github_app": self._app(),
        }
        self.deployments[repo.full_name].append(deployment)
        self.deployment_statuses[dep_id] = []
        self._deployment_repo[dep_id] = repo.full_name
        self._ensure_environment(repo, environment)
        return deployment

    def _auto_merge(self, repo: Repo, ref: str) -> Answer | None:
        """Merge the default branch into a behind branch the way GitHub does (202), or None.

        Only branch refs other than the default branch are merged into; a sha cannot be.
        """
        branch = self._short_ref(ref)
        if _HEX40.match(ref) or branch == repo.default_branch or branch not in repo.branches:
            return None
        if repo.full_name in self.merge_conflict:
            raise ApiError(409, f"Conflict merging {repo.default_branch} into {branch}.",
                           documentation_url=f"{DOCS}/deployments/deployments#create-a-deployment")
        if repo.full_name not in self.merge_needed:
            return None
        self.merge_needed.discard(repo.full_name)
        repo.branches[branch] = _random_sha()  # the merge commit; a retry deploys it
        return Answer(202, {"message": f"Auto-merged {repo.default_branch} into {branch} on deployment."})

    def _failing_contexts(self, repo: Repo, sha: str, required: Any) -> list[dict[str, str]]:
        """Return required contexts not in 'success': statuses and check runs (None = all of them)."""
        states = self._context_states(repo, sha)
        if required is None:
            wanted = list(states)
        elif isinstance(required, list):
            wanted = [str(c).lower() for c in required]
        else:
            raise ApiError(422, "Invalid request.\n\nFor 'properties/required_contexts', "
                                f"{json.dumps(required)} is not an array.")
        return [{"context": c, "state": states.get(c, "pending")} for c in wanted
                if states.get(c) != "success"]

    def _context_states(self, repo: Repo, sha: str) -> dict[str, str]:
        """Return each context's latest state on a commit; check runs count as contexts too."""
        states: dict[str, str] = {}
        for status in self.commit_statuses[repo.full_name]:
            if status["_sha"] == sha:
                states[status["context"].lower()] = status["state"]
        for run in self._latest_check_runs(repo, sha):
            if run["status"] != "completed":
                state = "pending"
            else:
                state = "success" if run["conclusion"] in PASSING_CONCLUSIONS else "failure"
            states[run["name"].lower()] = state
        return states

    @route("GET", "{repo}/deployments", permission=("deployments", "read"))
    def _list_deployments(self, request: Request) -> Answer:
        """GET /repos/{o}/{r}/deployments: filters sha, ref, task, environment; newest first."""
        assert request.repo is not None
        items = list(reversed(self.deployments[request.repo.full_name]))
        for name in ("sha", "ref", "task", "environment"):
            wanted = request.query.get(name)
            if wanted not in (None, "", "none"):
                items = [d for d in items if str(d[name]) == wanted]
        page, headers = self._page(request, items)
        return Answer(200, page, headers)

    @route("GET", r"{repo}/deployments/(?P<deployment_id>\d+)", permission=("deployments", "read"))
    def _get_deployment(self, request: Request) -> Answer:
        """GET /repos/{o}/{r}/deployments/{id}."""
        return Answer(200, self._deployment(request))

    @route("DELETE", r"{repo}/deployments/(?P<deployment_id>\d+)", permission=("deployments", "write"))
    def _delete_deployment(self, request: Request) -> Answer:
        """DELETE a deployment: only inactive ones, unless it is the repository's only one."""
        assert request.repo is not None
        deployment, repo_deployments = self._deployment(request), self.deployments[request.repo.full_name]
        statuses = self.deployment_statuses[deployment["id"]]
        active = not statuses or statuses[-1]["state"] != "inactive"
        if active and len(repo_deployments) > 1:
            raise ApiError(422, "We cannot delete an active deployment unless it is the only deployment in a "
                                "given environment.",
                           documentation_url=f"{DOCS}/deployments/deployments#delete-a-deployment")
        repo_deployments.remove(deployment)
        self.deployment_statuses.pop(deployment["id"], None)
        return Answer(204)

    # ---- deployment statuses ------------------------------------------------------------------

    @route("POST", r"{repo}/deployments/(?P<deployment_id>\d+)/statuses", permission=("deployments", "write"))
    def _create_deployment_status(self, request: Request) -> Answer:
        """POST a deployment status; `success` with auto_inactive retires older deployments."""
        deployment, body = self._deployment(request), request.body()
        assert request.repo is not None
        state = body.get("state")
        if state not in DEPLOYMENT_STATES:
            raise ApiError(422, "Validation Failed",
                           documentation_url=f"{DOCS}/deployments/statuses#create-a-deployment-status",
                           errors=[{"resource": "DeploymentStatus", "code": "invalid", "field": "state"}])
        statuses = self.deployment_statuses[deployment["id"]]
        environment = body.get("environment") or (
            statuses[-1]["environment"] if statuses else deployment["environment"])
        status = self._store_deployment_status(request.repo, deployment, state, environment, body)
        if state == "success" and body.get("auto_inactive", True):
            self._retire_older_deployments(request.repo, deployment, environment)
        return Answer(201, status)

    def _store_deployment_status(self, repo: Repo, deployment: dict[str, Any], state: str, environment: str,
                                 body: dict[str, Any]) -> dict[str, Any]:
        """Create and keep a deployment status; move the deployment to its environment."""
        status_id, moment = next(self._ids["deployment_status"]), _iso(_now())
        log_url = body.get("log_url") or body.get("target_url") or ""
        status = {
            "url": f"{deployment['url']}/statuses/{status_id}", "id": status_id,
            "node_id": _node_id("DeploymentStatus", status_id), "state": state, "creator": self._bot_user(),
            "description": body.get("description") or "", "environment": environment,
            "target_url": log_url, "log_url": log_url, "environment_url": body.get("environment_url") or "",
            "created_at": moment, "updated_at": moment, "deployment_url": deployment["url"],
            "repository_url": deployment["repository_url"], "performed_via_github_app": self._app(),
        }
        self.deployment_statuses[deployment["id"]].append(status)
        deployment.update(environment=environment, updated_at=moment)
        self._ensure_environment(repo, environment)
        return status

    def _retire_older_deployments(self, repo: Repo, current: dict[str, Any], environment: str) -> None:
        """Add `inactive` to earlier successful non-transient, non-production deployments there."""
        for deployment in self.deployments[repo.full_name]:
            statuses = self.deployment_statuses[deployment["id"]]
            if (deployment["id"] < current["id"] and deployment["environment"] == environment
                    and not deployment["transient_environment"] and not deployment["production_environment"]
                    and statuses and statuses[-1]["state"] == "success"):
                self._store_deployment_status(repo, deployment, "inactive", environment, {})

    @route("GET", r"{repo}/deployments/(?P<deployment_id>\d+)/statuses", permission=("deployments", "read"))
    def _list_deployment_statuses(self, request: Request) -> Answer:
        """GET a deployment's statuses, newest first."""
        deployment = self._deployment(request)
        page, headers = self._page(request, list(reversed(self.deployment_statuses[deployment["id"]])))
        return Answer(200, page, headers)

    @route("GET", r"{repo}/deployments/(?P<deployment_id>\d+)/statuses/(?P<status_id>\d+)",
           permission=("deployments", "read"))
    def _get_deployment_status(self, request: Request) -> Answer:
        """GET one deployment status."""
        deployment, status_id = self._deployment(request), request.int_param("status_id")
        for status in self.deployment_statuses[deployment["id"]]:
            if status["id"] == status_id:
                return Answer(200, status)
        raise _not_found()

    # ---- environments -------------------------------------------------------------------------

    def _ensure_environment(self, repo: Repo, name: str) -> dict[str, Any]:
        """Return an environment, creating it as GitHub does when a deployment targets it."""
        existing = self.environments[repo.full_name].get(name)
        if existing is not None:
            return existing
        env_id, moment = next(self._ids["environment"]), _iso(_now())
        environment = {
            "id": env_id, "node_id": _node_id("Environment", env_id), "name": name,
            "url": f"{self._api()}/repos/{repo.full_name}/environments/{name}",
            "html_url": f"{HTML}/{repo.full_name}/deployments/activity_log?environments_filter={name}",
            "created_at": moment, "updated_at": moment, "protection_rules": [],
            "deployment_branch_policy": None,
        }
        self.environments[repo.full_name][name] = environment
        return environment

    def _admin_allowed(self, repo: Repo, token: Token | None) -> None:
        """Answer 403 unless the App may administer the repository's environments."""
        if repo.full_name in self.admin_denied or token is None or token.permissions.get("administration") != "write":
            raise ApiError(403, "Resource not accessible by integration",
                           {"x-accepted-github-permissions": "administration=write"},
                           documentation_url=f"{DOCS}/deployments/environments")

    @route("GET", "{repo}/environments", permission=("metadata", "read"))
    def _list_environments(self, request: Request) -> Answer:
        """GET /repos/{o}/{r}/environments."""
        assert request.repo is not None
        items = sorted(self.environments[request.repo.full_name].values(), key=lambda e: e["name"])
        page, headers = self._page(request, items)
        return Answer(200, {"total_count": len(items), "environments": page}, headers)

    @route("GET", r"{repo}/environments/(?P<env>[^/]+)", permission=("metadata", "read"))
    def _get_environment(self, request: Request) -> Answer:
        """GET one environment."""
        assert request.repo is not None
        environment = self.environments[request.repo.full_name].get(request.params["env"])
        if environment is None:
            raise _not_found()
        return Answer(200, environment)

    @route("PUT", r"{repo}/environments/(?P<env>[^/]+)")
    def _put_environment(self, request: Request) -> Answer:
        """PUT an environment: create or update its protection rules (administration:write)."""
        assert request.repo is not None
        self._admin_allowed(request.repo, request.token)
        body = request.body()
        environment = self._ensure_environment(request.repo, request.params["env"])
        environment.update(protection_rules=self._protection_rules(body),
                           deployment_branch_policy=body.get("deployment_branch_policy"),
                           updated_at=_iso(_now()))
        return Answer(200, environment)

    def _protection_rules(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Build protection_rules from a PUT body as GitHub reports them."""
        rules: list[dict[str, Any]] = []

        def rule(kind: str, **extra: Any) -> None:
            rule_id = next(self._ids["rule"])
            rules.append({"id": rule_id, "node_id": _node_id("EnvironmentProtectionRule", rule_id),
                          "type": kind, **extra})

        if body.get("wait_timer"):
            rule("wait_timer", wait_timer=int(body["wait_timer"]))
        if body.get("reviewers"):
            rule("required_reviewers", prevent_self_review=bool(body.get("prevent_self_review", False)),
                 reviewers=[self._reviewer(r) for r in body["reviewers"]])
        if body.get("deployment_branch_policy"):
            rule("branch_policy")
        return rules

    def _reviewer(self, reviewer: dict[str, Any]) -> dict[str, Any]:
        """Build a required-reviewer entry for a {type, id} from a PUT body."""
        ident = int(reviewer.get("id", 0))
        if reviewer.get("type") == "Team":
            api = self._api()
            team = {"id": ident, "node_id": _node_id("Team", ident), "name": f"team-{ident}",
                    "slug": f"team-{ident}", "description": None, "privacy": "closed",
                    "notification_setting": "notifications_enabled", "permission": "pull",
                    "url": f"{api}/teams/{ident}", "html_url": f"{HTML}/orgs/{self.app_owner}/teams/team-{ident}",
                    "members_url": f"{api}/teams/{ident}/members{{/member}}",
                    "repositories_url": f"{api}/teams/{ident}/repos", "type": "organization", "parent": None}
            return {"type": "Team", "reviewer": team}
        return {"type": "User", "reviewer": self._user(f"user{ident}", ident)}

    @route("DELETE", r"{repo}/environments/(?P<env>[^/]+)")
    def _delete_environment(self, request: Request) -> Answer:
        """DELETE an environment (administration:write); 204."""
        assert request.repo is not None
        self._admin_allowed(request.repo, request.token)
        name = request.params["env"]
        if self.environments[request.repo.full_name].pop(name, None) is None:
            raise _not_found()
        self.deleted_environments.append({"repo": request.repo.full_name, "name": name})
        return Answer(204)

    # ---- commit statuses ----------------------------------------------------------------------

    def _store_commit_status(self, repo: Repo, sha: str, state: str, context: str | None,
                             description: str | None, target_url: str | None,
                             creator: dict[str, Any]) -> dict[str, Any]:
        """Create and keep a commit status (with its sha in the private `_sha` key)."""
        status_id, moment = next(self._ids["status"]), _iso(_now())
        status = {
            "url": f"{self._api()}/repos/{repo.full_name}/statuses/{sha}", "avatar_url": creator["avatar_url"],
            "id": status_id, "node_id": _node_id("StatusContext", status_id), "state": state,
            "description": description, "target_url": target_url, "context": context or "default",
            "created_at": moment, "updated_at": moment, "creator": creator, "_sha": sha,
        }
        self.commit_statuses[repo.full_name].append(status)
        return status

    @route("POST", r"{repo}/statuses/(?P<sha>[^/]+)", permission=("statuses", "write"))
    def _create_commit_status(self, request: Request) -> Answer:
        """POST /repos/{o}/{r}/statuses/{sha}."""
        assert request.repo is not None
        body, sha = request.body(), request.params["sha"]
        if not _HEX40.match(sha):
            raise ApiError(422, f"No commit found for SHA: {sha}",
                           documentation_url=f"{DOCS}/commits/statuses#create-a-commit-status")
        if body.get("state") not in STATUS_STATES:
            raise ApiError(422, "Validation Failed",
                           documentation_url=f"{DOCS}/commits/statuses#create-a-commit-status",
                           errors=[{"resource": "Status", "code": "custom", "field": "state",
                                    "message": "state is not included in the list"}])
        status = self._store_commit_status(request.repo, sha.lower(), body["state"], body.get("context"),
                                           body.get("description"), body.get("target_url"), self._bot_user())
        return Answer(201, self._public(status))

    def _ref_sha(self, request: Request) -> str:
        """Resolve the {ref} path parameter or answer 422 like GitHub."""
        assert request.repo is not None
        sha = self._resolve_ref(request.repo, request.params["ref"])
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {request.params['ref']}")
        return sha

    @route("GET", r"{repo}/commits/(?P<ref>.+)/status", permission=("statuses", "read"))
    def _combined_status(self, request: Request) -> Answer:
        """GET the combined status: latest per context, failure > pending > success."""
        assert request.repo is not None
        sha, latest = self._ref_sha(request), {}
        for status in self.commit_statuses[request.repo.full_name]:
            if status["_sha"] == sha:
                latest[status["context"].lower()] = status
        states = {s["state"] for s in latest.values()}
        state = ("failure" if states & {"error", "failure"} else
                 "pending" if not states or "pending" in states else "success")
        simple = [{k: v for k, v in self._public(s).items() if k != "creator"} for s in latest.values()]
        base = f"{self._api()}/repos/{request.repo.full_name}"
        return Answer(200, {
            "state": state, "statuses": simple, "sha": sha, "total_count": len(simple),
            "repository": self._repository(request.repo), "commit_url": f"{base}/commits/{sha}",
            "url": f"{base}/commits/{sha}/status"})

    @route("GET", r"{repo}/commits/(?P<ref>.+)/statuses", permission=("statuses", "read"))
    def _list_commit_statuses(self, request: Request) -> Answer:
        """GET every status of a commit, newest first."""
        assert request.repo is not None
        sha = self._ref_sha(request)
        items = [self._public(s) for s in reversed(self.commit_statuses[request.repo.full_name]) if s["_sha"] == sha]
        page, headers = self._page(request, items)
        return Answer(200, page, headers)

    # ---- checks -------------------------------------------------------------------------------

    def _latest_check_runs(self, repo: Repo, sha: str) -> list[dict[str, Any]]:
        """Return the most recent check run per (app, name) on a commit, as filter=latest does."""
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for run in self.check_runs[repo.full_name]:
            if run["sha"] == sha:
                latest[(run["app_slug"], run["name"])] = run
        return list(latest.values())

    def _check_run(self, repo: Repo, run: dict[str, Any]) -> dict[str, Any]:
        """Build a full check-run object."""
        base = f"{self._api()}/repos/{repo.full_name}"
        return {
            "id": run["id"], "head_sha": run["sha"], "node_id": _node_id("CheckRun", run["id"]),
            "external_id": run["external_id"], "url": f"{base}/check-runs/{run['id']}",
            "html_url": f"{HTML}/{repo.full_name}/runs/{run['id']}", "details_url": run["details_url"],
            "status": run["status"], "conclusion": run["conclusion"],
            "started_at": _iso(run["started_at"]),
            "completed_at": _iso(run["completed_at"]) if run["completed_at"] else None,
            "output": {"title": None, "summary": None, "text": None, "annotations_count": 0,
                       "annotations_url": f"{base}/check-runs/{run['id']}/annotations"},
            "name": run["name"], "check_suite": {"id": run["suite_id"]}, "app": self._app(run["app_slug"]),
            "pull_requests": [],
        }

    @route("GET", r"{repo}/commits/(?P<ref>.+)/check-runs", permission=("checks", "read"))
    def _list_check_runs(self, request: Request) -> Answer:
        """GET check runs for a ref; filters check_name, status, app_id, filter=latest|all."""
        assert request.repo is not None
        repo, sha = request.repo, self._ref_sha(request)
        runs = (self._latest_check_runs(repo, sha) if request.query.get("filter", "latest") == "latest"
                else [r for r in self.check_runs[repo.full_name] if r["sha"] == sha])
        objects = [self._check_run(repo, r) for r in sorted(runs, key=lambda r: r["id"], reverse=True)]
        for name in ("check_name", "status"):
            if request.query.get(name):
                objects = [o for o in objects if o["name" if name == "check_name" else name] == request.query[name]]
        if request.query.get("app_id"):
            objects = [o for o in objects if str(o["app"]["id"]) == request.query["app_id"]]
        page, headers = self._page(request, objects)
        return Answer(200, {"total_count": len(objects), "check_runs": page}, headers)

    @route("GET", r"{repo}/commits/(?P<ref>.+)/check-suites", permission=("checks", "read"))
    def _list_check_suites(self, request: Request) -> Answer:
        """GET check suites for a ref: one per app that reported check runs."""
        assert request.repo is not None
        repo, sha = request.repo, self._ref_sha(request)
        suites = [self._check_suite(repo, sha, slug, suite_id)
                  for (name, suite_sha, slug), suite_id in sorted(self._suites.items(), key=lambda kv: kv[1])
                  if name == repo.full_name and suite_sha == sha]
        if request.query.get("check_name"):
            names = {r["suite_id"] for r in self.check_runs[repo.full_name] if r["name"] == request.query["check_name"]}
            suites = [s for s in suites if s["id"] in names]
        if request.query.get("app_id"):
            suites = [s for s in suites if str(s["app"]["id"]) == request.query["app_id"]]
        page, headers = self._page(request, suites)
        return Answer(200, {"total_count": len(suites), "check_suites": page}, headers)

    def _check_suite(self, repo: Repo, sha: str, slug: str, suite_id: int) -> dict[str, Any]:
        """Build a full check-suite object summarising its latest runs."""
        runs = [r for r in self._latest_check_runs(repo, sha) if r["suite_id"] == suite_id]
        status, conclusion = self._suite_outcome(runs)
        base = f"{self._api()}/repos/{repo.full_name}"
        started = min(r["started_at"] for r in runs)
        return {
            "id": suite_id, "node_id": _node_id("CheckSuite", suite_id), "head_branch": self._branch_of(repo, sha),
            "head_sha": sha, "status": status, "conclusion": conclusion, "url": f"{base}/check-suites/{suite_id}",
            "before": None, "after": sha, "pull_requests": [], "app": self._app(slug),
            "repository": self._repository(repo), "created_at": _iso(started), "updated_at": _iso(_now()),
            "head_commit": self._commit(sha), "latest_check_runs_count": len(runs),
            "check_runs_url": f"{base}/check-suites/{suite_id}/check-runs", "rerequestable": True,
            "runs_rerequestable": True,
        }

    @staticmethod
    def _suite_outcome(runs: list[dict[str, Any]]) -> tuple[str, str | None]:
        """Summarise runs into a suite status and conclusion (the worst conclusion wins)."""
        if any(r["status"] != "completed" for r in runs):
            return ("queued" if all(r["status"] == "queued" for r in runs) else "in_progress"), None
        conclusions = {r["conclusion"] for r in runs}
        for worst in ("action_required", "cancelled", "timed_out", "failure", "startup_failure", "stale"):
            if worst in conclusions:
                return "completed", worst
        if conclusions <= {"skipped"}:
            return "completed", "skipped"
        if conclusions <= {"neutral", "skipped"}:
            return "completed", "neutral"
        return "completed", "success"

    # ---- actions ------------------------------------------------------------------------------

    def _store_workflow_run(self, repo: Repo, sha: str, name: str, status: str, conclusion: str | None,
                            event: str, path: str, head_branch: str | None) -> int:
        """Create and keep a workflow run; workflows get a stable id per path."""
        workflow_id = self._workflow_ids.setdefault((repo.full_name, path), next(self._ids["workflow"]))
        self._run_numbers[(repo.full_name, workflow_id)] += 1
        run_id, moment = next(self._ids["workflow_run"]), _now()
        self.workflow_runs[repo.full_name].append({
            "id": run_id, "name": name, "head_sha": sha, "status": status,
            "conclusion": conclusion if status == "completed" else None, "event": event, "path": path,
            "workflow_id": workflow_id, "run_number": self._run_numbers[(repo.full_name, workflow_id)],
            "head_branch": head_branch or self._branch_of(repo, sha), "created_at": moment, "updated_at": moment,
            "check_suite_id": next(self._ids["check_suite"])})
        return run_id

    def _workflow_run_object(self, repo: Repo, run: dict[str, Any]) -> dict[str, Any]:
        """Build a full workflow-run object."""
        base = f"{self._api()}/repos/{repo.full_name}"
        run_url, commit, actor = f"{base}/actions/runs/{run['id']}", self._commit(run["head_sha"]), self._user(
            "octocat", 583231)
        return {
            "id": run["id"], "name": run["name"], "node_id": _node_id("WorkflowRun", run["id"]),
            "check_suite_id": run["check_suite_id"], "check_suite_node_id": _node_id("CheckSuite", run["check_suite_id"]),
            "head_branch": run["head_branch"], "head_sha": run["head_sha"], "path": run["path"],
            "display_title": commit["message"], "run_number": run["run_number"], "run_attempt": 1,
            "referenced_workflows": [], "event": run["event"], "status": run["status"],
            "conclusion": run["conclusion"], "workflow_id": run["workflow_id"], "url": run_url,
            "html_url": f"{HTML}/{repo.full_name}/actions/runs/{run['id']}", "pull_requests": [],
            "created_at": _iso(run["created_at"]), "updated_at": _iso(run["updated_at"]),
            "actor": actor, "triggering_actor": actor, "run_started_at": _iso(run["created_at"]),
            "jobs_url": f"{run_url}/jobs", "logs_url": f"{run_url}/logs",
            "check_suite_url": f"{base}/check-suites/{run['check_suite_id']}", "artifacts_url": f"{run_url}/artifacts",
            "cancel_url": f"{run_url}/cancel", "rerun_url": f"{run_url}/rerun", "previous_attempt_url": None,
            "workflow_url": f"{base}/actions/workflows/{run['workflow_id']}", "head_commit": commit,
            "repository": self._repository(repo), "head_repository": self._repository(repo),
        }

    @route("GET", "{repo}/actions/runs", permission=("actions", "read"))
    def _list_workflow_runs(self, request: Request) -> Answer:
        """GET workflow runs; filters head_sha, branch, event, status (status or conclusion)."""
        assert request.repo is not None
        runs = sorted(self.workflow_runs[request.repo.full_name], key=lambda r: r["id"], reverse=True)
        query = request.query
        if query.get("head_sha"):
            runs = [r for r in runs if r["head_sha"] == query["head_sha"].lower()]
        if query.get("branch"):
            runs = [r for r in runs if r["head_branch"] == query["branch"]]
        if query.get("event"):
            runs = [r for r in runs if r["event"] == query["event"]]
        if query.get("status"):
            runs = [r for r in runs if query["status"] in (r["status"], r["conclusion"])]
        page, headers = self._page(request, runs)
        return Answer(200, {"total_count": len(runs),
                            "workflow_runs": [self._workflow_run_object(request.repo, r) for r in page]}, headers)

    @route("GET", r"{repo}/actions/runs/(?P<run_id>\d+)", permission=("actions", "read"))
    def _get_workflow_run(self, request: Request) -> Answer:
        """GET one workflow run."""
        assert request.repo is not None
        run = self._workflow_run(request.repo, request.int_param("run_id"))
        return Answer(200, self._workflow_run_object(request.repo, run))

    @route("POST", r"{repo}/actions/workflows/(?P<workflow>[^/]+)/dispatches", permission=("actions", "write"))
    def _dispatch_workflow(self, request: Request) -> Answer:
        """POST a workflow_dispatch: the ref must exist; 204 and recorded."""
        assert request.repo is not None
        body = request.body()
        ref = body.get("ref")
        if not isinstance(ref, str) or not ref:
            raise ApiError(422, "Invalid request.\n\n\"ref\" wasn't supplied.")
        if self._resolve_ref(request.repo, ref) is None:
            raise ApiError(422, f"No ref found for: {ref}")
        inputs = body.get("inputs") or {}
        if not isinstance(inputs, dict) or len(inputs) > 25:
            raise ApiError(422, "Invalid request.\n\nFor 'properties/inputs', inputs must be an object "
                                "with at most 25 properties.")
        self.dispatches.append({"repo": request.repo.full_name, "workflow": request.params["workflow"],
                                "ref": ref, "inputs": inputs})
        return Answer(204)

    @route("POST", r"{repo}/actions/runs/(?P<run_id>\d+)/deployment_protection_rule",
           permission=("deployments", "write"))
    def _review_gate(self, request: Request) -> Answer:
        """POST a custom deployment protection rule review: 204 and recorded."""
        assert request.repo is not None
        body = request.body()
        state, comment = body.get("state"), body.get("comment")
        if not isinstance(body.get("environment_name"), str) or (
                state is None and not comment) or state not in (None, "approved", "rejected"):
            raise ApiError(422, "Invalid request.\n\nNo subschema in \"anyOf\" matched.",
                           documentation_url=f"{DOCS}/actions/workflow-runs"
                                             "#review-custom-deployment-protection-rules-for-a-workflow-run")
        self.gate_reviews.append({"repo": request.repo.full_name, "run_id": request.int_param("run_id"),
                                  "environment_name": body["environment_name"], "state": state,
                                  "comment": comment})
        return Answer(204)

    # ---- contents -----------------------------------------------------------------------------

    @route("GET", r"{repo}/pulls/(?P<number>\d+)", permission=("pull_requests", "read"))
    def _get_pull(self, request: Request) -> Answer:
        """GET /repos/{o}/{r}/pulls/{number}: what set_pull() stored (the fake keeps no PR state of its own)."""
        assert request.repo is not None
        found = self.pulls.get((request.repo.full_name.lower(), request.int_param("number")))
        if found is None:
            raise _not_found()
        return Answer(200, found)

    @route("GET", r"{repo}/commits/(?P<ref>[^/]+)", permission=("contents", "read"))
    def _get_commit(self, request: Request) -> Answer:
        """GET /repos/{o}/{r}/commits/{ref}: the commit a branch, tag or sha names."""
        assert request.repo is not None
        sha = self._resolve_ref(request.repo, request.params["ref"])
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {request.params['ref']}")
        return Answer(200, {"sha": sha, "node_id": _node_id("Commit", sha), "url": f"{self.url}/repos/"
                            f"{request.repo.full_name}/commits/{sha}", "commit": {"message": "commit"}})

    @route("GET", r"{repo}/contents/(?P<path>.+)", permission=("contents", "read"))
    def _get_contents(self, request: Request) -> Answer:
        """GET a file through the contents API (base64, 60-column lines, git blob sha)."""
        repo = request.repo
        assert repo is not None
        path, ref = request.params["path"].strip("/"), request.query.get("ref") or repo.default_branch
        data = self._file(repo, path, ref)
        if data is None:
            raise ApiError(404, "Not Found", documentation_url=f"{DOCS}/repos/contents#get-repository-content")
        sha, base = _blob_sha(data), f"{self._api()}/repos/{repo.full_name}"
        self_url = f"{base}/contents/{path}?{urlencode({'ref': ref})}"
        html_url = f"{HTML}/{repo.full_name}/blob/{ref}/{path}"
        git_url = f"{base}/git/blobs/{sha}"
        return Answer(200, {
            "type": "file", "encoding": "base64", "size": len(data), "name": path.rsplit("/", 1)[-1],
            "path": path, "content": _wrapped_base64(data), "sha": sha, "url": self_url, "git_url": git_url,
            "html_url": html_url, "download_url": f"https://raw.githubusercontent.com/{repo.full_name}/{ref}/{path}",
            "_links": {"self": self_url, "git": git_url, "html": html_url}})

    def _file(self, repo: Repo, path: str, ref: str) -> bytes | None:
        """Find a file at a ref: by the ref's name, or by the branch whose head sha it is."""
        name = self._short_ref(ref)
        if (name, path) in repo.files:
            return repo.files[(name, path)]
        if _HEX40.match(ref):
            branch = self._branch_of(repo, ref.lower())
            if branch is not None:
                return repo.files.get((branch, path))
        return None
