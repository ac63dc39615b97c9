"""The only module that talks to GitHub (through githubkit).

App JWT from APP_ID and the private key; installation tokens cached and shared by every worker process
(Redis in production, memory in embedded mode), refreshed five minutes before they expire, minted by one
process at a time. No call sleeps: rate limits and server errors become RetryLater so the delivery is
re-queued for later, and 4xx answers that cannot succeed become Permanent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from slipway.settings import Settings
from workers.events import Permanent, RetryLater

log = logging.getLogger(__name__)
T = TypeVar("T")

REFRESH_MARGIN = 300  # seconds before expiry at which a token is replaced


class RateLimited(RetryLater):
    """GitHub's primary or secondary rate limit: come back after `after` seconds."""


class GitHubUnavailable(RetryLater):
    """A server error, timeout or connection failure: retried with backoff."""


class GitHubRefused(Permanent):
    """A 4xx that another attempt cannot fix (404 deleted branch, 409, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"GitHub answered {status}: {message}")
        self.status = status


class InstallationGone(Permanent):
    """The installation is suspended or removed; nothing is retried for it."""


class NotConfigured(Permanent):
    """APP_ID or the private key is missing, so Slipway cannot act on GitHub."""


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Token:
    """An installation access token and when it expires (epoch seconds)."""

    value: str
    expires_at: float

    def fresh(self, now: float | None = None) -> bool:
        """True while the token has more than the refresh margin left."""
        return self.expires_at - (now or time.time()) > REFRESH_MARGIN


class TokenStore(Protocol):
    """Where installation tokens are cached and who may mint one."""

    def get(self, installation_id: int) -> Token | None: ...
    def put(self, installation_id: int, token: Token) -> None: ...
    def drop(self, installation_id: int, value: str | None = None) -> None: ...
    def minting(self, installation_id: int) -> Any: ...


class MemoryTokens:
    """Embedded mode: tokens in this process, one lock per installation."""

    def __init__(self) -> None:
        self._tokens: dict[int, Token] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, installation_id: int) -> Token | None:
        """The cached token, if any."""
        return self._tokens.get(installation_id)

    def put(self, installation_id: int, token: Token) -> None:
        """Cache a token."""
        self._tokens[installation_id] = token

    def drop(self, installation_id: int, value: str | None = None) -> None:
        """Forget a token GitHub refused (only that one, when its value is given)."""
        current = self._tokens.get(installation_id)
        if current is not None and (value is None or current.value == value):
            self._tokens.pop(installation_id, None)

    def minting(self, installation_id: int) -> threading.Lock:
        """The lock that makes minting one-at-a-time."""
        with self._guard:
            return self._locks.setdefault(installation_id, threading.Lock())


class RedisTokens:
    """Production: tokens in Redis, shared by all worker processes; a Redis lock serialises minting."""

    def __init__(self, redis: Any, app_id: int, prefix: str = "slipway:ghtoken") -> None:
        self.redis, self.prefix = redis, f"{prefix}:{app_id}"

    def get(self, installation_id: int) -> Token | None:
        """The shared token, if any."""
        raw = self.redis.get(f"{self.prefix}:{installation_id}")
        if not raw:
            return None
        value, _, expires = raw.decode().rpartition("|")
        return Token(value, float(expires))

    def put(self, installation_id: int, token: Token) -> None:
        """Share a token until it expires."""
        ttl = max(1, int(token.expires_at - time.time()))
        self.redis.set(f"{self.prefix}:{installation_id}", f"{token.value}|{token.expires_at}", ex=ttl)

    # Delete only the token that was refused: another worker may have cached a fresh one meanwhile.
    _DROP_IF_SAME = ("local v = redis.call('get', KEYS[1]) "
                     "if v and string.sub(v, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '|' then "
                     "return redis.call('del', KEYS[1]) end return 0")

    def drop(self, installation_id: int, value: str | None = None) -> None:
        """Forget a token GitHub refused (only that one, when its value is given)."""
        key = f"{self.prefix}:{installation_id}"
        if value is None:
            self.redis.delete(key)
        else:
            self.redis.eval(self._DROP_IF_SAME, 1, key, value)

    def minting(self, installation_id: int) -> Any:
        """A Redis lock: other processes wait (up to 10 s) for the one that mints."""
        return self.redis.lock(f"{self.prefix}:{installation_id}:lock", timeout=15, blocking_timeout=10)


# ---------------------------------------------------------------- errors


def classify(exc: Exception) -> Exception:
    """Turn a githubkit/httpx exception into RateLimited, GitHubUnavailable, GitHubRefused or itself."""
    from githubkit.exception import RateLimitExceeded, RequestError, RequestFailed, RequestTimeout

    if isinstance(exc, RateLimitExceeded):
        after = exc.retry_after.total_seconds()
        return RateLimited(f"GitHub rate limit ({exc.response.status_code}); retry in {after:.0f} s", after=after)
    if isinstance(exc, RequestFailed):
        status = exc.response.status_code
        message = _message(exc.response)
        if status >= 500:
            return GitHubUnavailable(f"GitHub answered {status}: {message}")
        if status in (403, 429) and ("rate limit" in message.lower() or status == 429):
            return RateLimited(f"GitHub rate limit ({status}): {message}", after=60)
        return GitHubRefused(status, message)
    if isinstance(exc, RequestTimeout):
        return GitHubUnavailable(f"GitHub timed out: {exc}")
    if isinstance(exc, RequestError):
        return GitHubUnavailable(f"GitHub unreachable: {getattr(exc, 'exc', exc)}")
    return exc


def _message(response: Any) -> str:
    """GitHub's error message from a response body, shortened."""
    try:
        return str(response.json().get("message", ""))[:300] or response.reason_phrase
    except Exception:
        return response.reason_phrase


# ---------------------------------------------------------------- clients


class GitHubApp:
    """The App: its JWT client, installation tokens and per-repository clients."""

    def __init__(self, settings: Settings, tokens: TokenStore, on_response: Callable[[Any], None] | None = None) -> None:
        if not settings.github_enabled:
            raise NotConfigured("APP_ID and PRIVATE_KEY (or PRIVATE_KEY_PATH) are not set; GitHub actions are off")
        self.app_id = int(settings.app_id or 0)
        self.private_key = settings.private_key_pem or ""
        self.base_url = settings.github_api_url.rstrip("/") + "/"
        self.timeout = settings.github_timeout
        self.tokens = tokens
        self._on_response = on_response
        self._app_client: Any = None
        self._ssl: Any = None
        self._transport: Any = None
        self._memo: dict[int, Token] = {}          # this process's copy of each installation's token
        self._clients: dict[int, tuple[str, Any]] = {}  # installation -> (token, its githubkit client)

    def _client(self, auth: Any) -> Any:
        """A githubkit client: our timeout, no in-process retries or sleeps, no HTTP cache, pooled connections."""
        from githubkit import GitHub

        hooks = {"response": [self._on_response]} if self._on_response else None
        return GitHub(auth, base_url=self.base_url, timeout=self.timeout, auto_retry=False, http_cache=False,
                      user_agent="Slipway", event_hooks=hooks, ssl_verify=self._ssl_context(),
                      transport=self._shared_transport(), trust_env=False)

    def _shared_transport(self) -> Any:
        """One connection pool per process: githubkit builds an httpx client per call, and without a shared
        transport each call opened (and TLS-handshook) a new connection. Proxies from the environment are
        read once here, since the per-call clients no longer look at the environment."""
        if self._transport is None:
            import urllib.request

            import httpx

            scheme = self.base_url.split("://", 1)[0]
            host = self.base_url.split("://", 1)[-1].split("/", 1)[0]
            proxy = None if urllib.request.proxy_bypass(host) else urllib.request.getproxies().get(scheme)
            self._transport = _KeptOpen(httpx.HTTPTransport(verify=self._ssl_context(), proxy=proxy or None))
        return self._transport

    def _ssl_context(self) -> Any:
        """One TLS context per process: building one loads the whole CA bundle (~30 ms of CPU per client)."""
        if self._ssl is None:
            import ssl

            import certifi

            self._ssl = ssl.create_default_context(cafile=certifi.where())
        return self._ssl

    def app_client(self) -> Any:
        """The JWT-authenticated client for /app endpoints."""
        from githubkit import AppAuthStrategy

        if self._app_client is None:
            self._app_client = self._client(AppAuthStrategy(str(self.app_id), self.private_key))
        return self._app_client

    def token(self, installation_id: int) -> str:
        """A fresh installation token: this process's copy, the shared cache, else minted by one process."""
        memo = self._memo.get(installation_id)
        if memo and memo.fresh():
            return memo.value
        cached = self.tokens.get(installation_id)
        if cached and cached.fresh():
            self._memo[installation_id] = cached
            return cached.value
        with self.tokens.minting(installation_id):
            cached = self.tokens.get(installation_id)  # another process may have minted meanwhile
            if cached and cached.fresh():
                return cached.value
            token = self._mint(installation_id)
            self.tokens.put(installation_id, token)
            self._memo[installation_id] = token
            return token.value

    def forget(self, installation_id: int, value: str) -> None:
        """GitHub refused this token: drop it here and in the shared cache (only if it is still that one)."""
        memo = self._memo.get(installation_id)
        if memo is not None and memo.value == value:
            self._memo.pop(installation_id, None)
        self.tokens.drop(installation_id, value)

    def installation_client(self, installation_id: int, token: str) -> Any:
        """The githubkit client for this token, kept while the token is (clients are stateless: shareable)."""
        from githubkit import TokenAuthStrategy

        kept = self._clients.get(installation_id)
        if kept is not None and kept[0] == token:
            return kept[1]
        if kept is not None:
            kept[1].__exit__(None, None, None)  # the old token's httpx.Client (in this thread; a no-op elsewhere)
        client = self._client(TokenAuthStrategy(token))
        # githubkit builds (and closes) an httpx.Client per call unless it is used as a context manager; entering
        # it here keeps one httpx.Client for this thread's calls (building one costs about as much as parsing the
        # answer). The context is per thread: other threads' calls fall back to a client per call.
        client.__enter__()
        self._clients[installation_id] = (token, client)  # one dict store: atomic, threads need no lock
        return client

    def _mint(self, installation_id: int) -> Token:
        """POST /app/installations/{id}/access_tokens."""
        try:
            resp = self.app_client().rest.apps.create_installation_access_token(installation_id)
        except Exception as exc:  # noqa: BLE001 (classified below)
            err = classify(exc)
            if isinstance(err, GitHubRefused) and err.status in (401, 403, 404):
                raise InstallationGone(f"installation {installation_id} is suspended or removed ({err})") from None
            raise err from None
        data = resp.json()
        expires = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00")).timestamp()
        log.info("minted installation token", extra={"installation": installation_id})
        return Token(data["token"], expires)

    def call(self, installation_id: int, fn: Callable[[Any], T]) -> T:
        """Run fn(client) with an installation client; a 401 (token revoked early) gets one fresh token."""
        from githubkit.exception import RequestFailed

        for attempt in (1, 2):
            token = self.token(installation_id)
            client = self.installation_client(installation_id, token)
            try:
                return fn(client)
            except RequestFailed as exc:
                if exc.response.status_code == 401 and attempt == 1:
                    self.forget(installation_id, token)
                    continue
                raise classify(exc) from None
            except Exception as exc:  # noqa: BLE001
                raise classify(exc) from None
        raise AssertionError("unreachable")

    def call_app(self, fn: Callable[[Any], T]) -> T:
        """Run fn(client) with the App's JWT client."""
        try:
            return fn(self.app_client())
        except Exception as exc:  # noqa: BLE001
            raise classify(exc) from None

    def repo(self, installation_id: int, full_name: str) -> Repo:
        """Calls on one repository through one installation."""
        owner, _, name = full_name.partition("/")
        return Repo(self, installation_id, owner, name)


class _KeptOpen:
    """An httpx transport that the per-call clients share: closing a client must not close the pool."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def handle_request(self, request: Any) -> Any:
        """Send through the shared pool."""
        return self.inner.handle_request(request)

    def close(self) -> None:
        """Kept open: the pool lives as long as the process."""

    def __enter__(self) -> _KeptOpen:
        return self

    def __exit__(self, *exc: object) -> None:
        """Kept open (see close)."""


@dataclass
class Repo:
    """GitHub calls on one repository; each returns plain JSON data."""

    app: GitHubApp
    installation_id: int
    owner: str
    name: str

    @property
    def full_name(self) -> str:
        """owner/name."""
        return f"{self.owner}/{self.name}"

    def _run(self, fn: Callable[[Any], Any]) -> Any:
        """Call with this repository's installation."""
        return self.app.call(self.installation_id, fn)

    def create_deployment(self, *, ref: str, environment: str, payload: dict[str, Any], description: str,
                          transient: bool, production: bool, task: str = "deploy") -> dict[str, Any]:
        """POST a deployment; Slipway gates itself, so no auto-merge and no required contexts."""
        resp = self._run(lambda gh: gh.rest.repos.create_deployment(
            self.owner, self.name, ref=ref, task=task, auto_merge=False, required_contexts=[], payload=payload,
            environment=environment, description=description[:140], transient_environment=transient,
            production_environment=production))
        if resp.status_code == 202:
            # "merged branch": GitHub did not create a deployment; with auto_merge off this should not happen.
            raise GitHubUnavailable(f"GitHub did not create the deployment: {resp.json().get('message')}")
        return resp.json()

    def list_deployments(self, *, sha: str | None = None, environment: str | None = None,
                         per_page: int = 100) -> list[dict[str, Any]]:
        """Deployments newest first, filtered by sha and environment."""
        kw = {k: v for k, v in {"sha": sha, "environment": environment}.items() if v}
        return self._run(lambda gh: gh.rest.repos.list_deployments(self.owner, self.name, per_page=per_page, **kw)).json()

    def create_deployment_status(self, deployment_id: int, *, state: str, description: str = "",
                                 environment_url: str | None = None, log_url: str | None = None,
                                 auto_inactive: bool | None = None) -> dict[str, Any]:
        """POST a status on a deployment."""
        kw: dict[str, Any] = {"state": state, "description": description[:140]}
        if environment_url:
            kw["environment_url"] = environment_url
        if log_url:
            kw["log_url"] = log_url
        if auto_inactive is not None:
            kw["auto_inactive"] = auto_inactive
        return self._run(lambda gh: gh.rest.repos.create_deployment_status(
            self.owner, self.name, deployment_id, **kw)).json()

    def list_deployment_statuses(self, deployment_id: int) -> list[dict[str, Any]]:
        """A deployment's statuses, newest first."""
        return self._run(lambda gh: gh.rest.repos.list_deployment_statuses(
            self.owner, self.name, deployment_id, per_page=100)).json()

    def create_commit_status(self, sha: str, *, state: str, context: str, description: str,
                             target_url: str | None = None) -> dict[str, Any]:
        """POST a commit status (Slipway's own `slipway/<environment>` and `slipway/config`)."""
        kw = {"target_url": target_url} if target_url else {}
        return self._run(lambda gh: gh.rest.repos.create_commit_status(
            self.owner, self.name, sha, state=state, context=context, description=description[:140], **kw)).json()

    def combined_status(self, ref: str) -> dict[str, Any]:
        """The combined commit status of a ref."""
        return self._run(lambda gh: gh.rest.repos.get_combined_status_for_ref(
            self.owner, self.name, ref, per_page=100)).json()

    def check_runs(self, ref: str) -> list[dict[str, Any]]:
        """Check runs on a commit."""
        return self._run(lambda gh: gh.rest.checks.list_for_ref(
            self.owner, self.name, ref, per_page=100)).json().get("check_runs", [])

    def workflow_runs(self, head_sha: str) -> list[dict[str, Any]]:
        """Workflow runs for a commit."""
        return self._run(lambda gh: gh.rest.actions.list_workflow_runs_for_repo(
            self.owner, self.name, head_sha=head_sha, per_page=100)).json().get("workflow_runs", [])

    def file_text(self, path: str, ref: str | None = None) -> str | None:
        """A file's text through the contents API, or None when it does not exist."""
        import base64

        kw = {"ref": ref} if ref else {}
        try:
            data = self._run(lambda gh: gh.rest.repos.get_content(self.owner, self.name, path, **kw)).json()
        except GitHubRefused as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(data, dict) or data.get("type") != "file":
            return None
        return base64.b64decode(data.get("content", "")).decode("utf-8", "replace")

    def commit_sha(self, ref: str) -> str:
        """The commit a branch, tag or sha points at."""
        return self._run(lambda gh: gh.rest.repos.get_commit(self.owner, self.name, ref)).json()["sha"]

    def default_branch(self) -> str:
        """The repository's default branch."""
        return self._run(lambda gh: gh.rest.repos.get(self.owner, self.name)).json().get("default_branch") or "main"

    def dispatch_workflow(self, workflow: str, ref: str, inputs: dict[str, str]) -> None:
        """Run a workflow_dispatch workflow."""
        self._run(lambda gh: gh.rest.actions.create_workflow_dispatch(
            self.owner, self.name, workflow, ref=ref, inputs=inputs))

    def delete_environment(self, name: str) -> bool:
        """Delete a GitHub environment; False when the App may not (no Administration permission)."""
        try:
            self._run(lambda gh: gh.rest.repos.delete_an_environment(self.owner, self.name, name))
        except GitHubRefused as exc:
            if exc.status in (403, 404):
                return False
            raise
        return True

    def review_protection_rule(self, callback_url: str, *, environment: str, state: str, comment: str) -> None:
        """Approve or reject a custom deployment protection rule through its callback URL."""
        path = callback_url.split("/repos/", 1)[-1]
        self._run(lambda gh: gh.request("POST", f"/repos/{path}", json={
            "environment_name": environment, "state": state, "comment": comment[:1024]}))


def pull(repo: Repo, number: int) -> dict[str, Any] | None:
    """The pull request as GitHub has it now (None when it is gone)."""
    try:
        return repo._run(lambda gh: gh.rest.pulls.get(repo.owner, repo.name, number)).json()
    except GitHubRefused as exc:
        if exc.status == 404:
            return None
        raise
