"""workers/github.py against the fake GitHub: tokens, error classes, idempotent deployments and statuses."""

from __future__ import annotations

import threading
import time

import pytest

from tests import factories
from tests.conftest import APP_ID
from workers.deploy import Planned, ensure_deployment, post_status
from workers.github import GitHubRefused, GitHubUnavailable, InstallationGone, RateLimited, Token

SHA = "a" * 40


def repo(rt):  # noqa: ANN001, ANN201
    """The Repo client for the test repository."""
    return rt.github().repo(factories.INSTALLATION_ID, factories.REPO)


def planned(key: str = "k-1", **kw) -> Planned:  # noqa: ANN003
    """A planned staging deployment."""
    values = {"key": key, "repository": factories.REPO, "environment": "staging", "kind": "static", "ref": "main",
              "sha": SHA, "description": "Slipway: deploy to staging"}
    values.update(kw)
    return Planned(**values)


def test_token_is_minted_once_and_shared_by_concurrent_workers(gh_rt, fake_github) -> None:
    """Twenty concurrent calls need exactly one token; the JWT and the token are what GitHub expects."""
    barrier = threading.Barrier(20)

    def call() -> None:
        barrier.wait()
        repo(gh_rt).list_deployments()

    threads = [threading.Thread(target=call) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake_github.token_mints[factories.INSTALLATION_ID] == 1
    (mint,) = fake_github.calls_to("POST", r"/app/installations/\d+/access_tokens$")
    assert mint.headers["authorization"].startswith("Bearer ey")
    listing = fake_github.calls_to("GET", r"/deployments$")
    assert len(listing) == 20 and all(c.headers["authorization"].startswith("token ghs_") for c in listing)


def test_token_is_shared_across_processes_in_production(gh_rt, fake_github, mode: str) -> None:
    """A second GitHubApp (another worker process) reuses the token through Redis; embedded mode has one process."""
    from workers.github import GitHubApp, RedisTokens

    repo(gh_rt).list_deployments()
    if mode == "production":
        other = GitHubApp(gh_rt.settings, RedisTokens(gh_rt.redis, APP_ID))
        other.repo(factories.INSTALLATION_ID, factories.REPO).list_deployments()
    assert fake_github.token_mints[factories.INSTALLATION_ID] == 1


def test_token_is_refreshed_before_it_expires(gh_rt, fake_github) -> None:
    """A cached token with less than five minutes left is replaced before use."""
    repo(gh_rt).list_deployments()
    app = gh_rt.github()
    cached = app.tokens.get(factories.INSTALLATION_ID)
    ageing = Token(cached.value, time.time() + 200)
    app.tokens.put(factories.INSTALLATION_ID, ageing)
    app._memo[factories.INSTALLATION_ID] = ageing  # the process's own copy ages too
    repo(gh_rt).list_deployments()
    assert fake_github.token_mints[factories.INSTALLATION_ID] == 2


def test_token_is_read_from_the_shared_cache_once_per_process(gh_rt, fake_github) -> None:
    """Calls reuse this process's copy of the token and its kept-alive client; a minted one is shared."""
    repo(gh_rt).list_deployments()
    app = gh_rt.github()
    shared = app.tokens
    app.tokens = None  # any read of the shared cache would fail now
    repo(gh_rt).list_deployments()
    repo(gh_rt).list_deployments()
    app.tokens = shared
    assert fake_github.token_mints[factories.INSTALLATION_ID] == 1
    assert shared.get(factories.INSTALLATION_ID).value == app.token(factories.INSTALLATION_ID)


def test_token_revoked_early_is_replaced_once_without_failing_the_call(gh_rt, fake_github) -> None:
    """GitHub refuses a token before its expiry time: one fresh token, the call succeeds."""
    repo(gh_rt).list_deployments()
    fake_github.expire_tokens()
    assert repo(gh_rt).list_deployments() == []
    assert fake_github.token_mints[factories.INSTALLATION_ID] == 2


def test_suspended_installation_is_gone(gh_rt, fake_github) -> None:
    """Minting for a suspended installation is a permanent failure, not a retry."""
    fake_github.suspend_installation(factories.INSTALLATION_ID)
    with pytest.raises(InstallationGone, match="suspended or removed"):
        repo(gh_rt).list_deployments()


@pytest.mark.parametrize("inject,error,after", [
    (lambda f: f.fail("GET", r"/deployments$", 500), GitHubUnavailable, None),
    (lambda f: f.fail("GET", r"/deployments$", 502), GitHubUnavailable, None),
    (lambda f: f.fail_secondary_rate_limit("GET", r"/deployments$", retry_after=30), RateLimited, 30),
    (lambda f: f.fail_secondary_rate_limit("GET", r"/deployments$", retry_after=45, status=429), RateLimited, 45),
    (lambda f: f.fail_primary_rate_limit("GET", r"/deployments$", reset_in=120), RateLimited, 120),
    (lambda f: f.fail("GET", r"/deployments$", 404, body={"message": "Not Found"}), GitHubRefused, None),
    (lambda f: f.fail("GET", r"/deployments$", 422, body={"message": "Validation Failed"}), GitHubRefused, None),
    (lambda f: f.fail("GET", r"/deployments$", delay=3.0), GitHubUnavailable, None),
], ids=["500", "502", "secondary-403", "secondary-429", "primary-403", "404", "422", "timeout"])
def test_errors_are_classified_without_sleeping(gh_rt, fake_github, inject, error, after) -> None:  # noqa: ANN001
    """Each failure becomes the right class at once: no in-process retry, no sleep."""
    repo(gh_rt).list_deployments()  # token first, so only the injected call fails
    inject(fake_github)
    started = time.monotonic()
    with pytest.raises(error) as caught:
        repo(gh_rt).list_deployments()
    assert time.monotonic() - started < 2.9  # the timeout case ends at the 2 s client timeout
    if after is not None:
        assert abs(caught.value.after - after) <= 2
    assert len(fake_github.calls_to("GET", r"/deployments$")) == 2  # exactly one attempt


def test_deployment_is_created_once_with_explicit_gating_fields(gh_rt, fake_github) -> None:
    """auto_merge off, required_contexts empty, Slipway's key in the payload; a second call creates nothing."""
    first = ensure_deployment(gh_rt.engine, repo(gh_rt), planned(production=False))
    second = ensure_deployment(gh_rt.engine, repo(gh_rt), planned(production=False))
    assert (first.id, first.github_id, first.created) == (second.id, second.github_id, True)
    assert not second.created
    (create,) = fake_github.calls_to("POST", r"/deployments$")
    assert create.json == {"ref": SHA, "task": "deploy", "auto_merge": False, "required_contexts": [],
                           "payload": {"slipway": {"key": "k-1", "delivery": None, "version": None}},
                           "environment": "staging", "description": "Slipway: deploy to staging",
                           "transient_environment": False, "production_environment": False}


def test_preview_deployment_is_transient_and_production_is_marked(gh_rt, fake_github) -> None:
    """The environment kind decides transient_environment and production_environment."""
    ensure_deployment(gh_rt.engine, repo(gh_rt), planned("k-pr", environment="pr-7", kind="preview"))
    ensure_deployment(gh_rt.engine, repo(gh_rt), planned("k-prod", environment="production", production=True))
    bodies = {c.json["environment"]: c.json for c in fake_github.calls_to("POST", r"/deployments$")}
    assert (bodies["pr-7"]["transient_environment"], bodies["pr-7"]["production_environment"]) == (True, False)
    assert (bodies["production"]["transient_environment"], bodies["production"]["production_environment"]) == (False, True)


def test_created_then_connection_dropped_makes_exactly_one_deployment(gh_rt, fake_github) -> None:
    """GitHub created it but the answer was lost: the retry finds it by its key instead of creating another."""
    fake_github.fail("POST", r"/deployments$", drop=True)
    with pytest.raises(GitHubUnavailable):
        ensure_deployment(gh_rt.engine, repo(gh_rt), planned())
    local_id, gh_id, created = ensure_deployment(gh_rt.engine, repo(gh_rt), planned())
    assert not created  # found by its key
    assert len(fake_github.deployments[factories.REPO]) == 1
    assert fake_github.deployments[factories.REPO][0]["id"] == gh_id
    assert len(fake_github.calls_to("POST", r"/deployments$")) == 1


def test_status_is_posted_once_even_after_a_dropped_answer(gh_rt, fake_github) -> None:
    """A status whose answer was lost is found on retry; posting again later is a no-op."""
    dep_id, gh_id, _ = ensure_deployment(gh_rt.engine, repo(gh_rt), planned())
    fake_github.fail("POST", r"/statuses$", drop=True)
    with pytest.raises(GitHubUnavailable):
        post_status(gh_rt.engine, repo(gh_rt), dep_id, gh_id, "queued", description="queued by Slipway")
    assert post_status(gh_rt.engine, repo(gh_rt), dep_id, gh_id, "queued", description="queued by Slipway") is False
    assert post_status(gh_rt.engine, repo(gh_rt), dep_id, gh_id, "queued", description="queued by Slipway") is False
    assert post_status(gh_rt.engine, repo(gh_rt), dep_id, gh_id, "success", description="deployed",
                       environment_url="https://staging.example.com", log_url="https://ci.example.com/1")
    states = [s["state"] for s in fake_github.deployment_statuses[gh_id]]
    assert sorted(states) == ["queued", "success"]
    (success,) = fake_github.calls_to("POST", r"/statuses$")[-1:]
    assert success.json == {"state": "success", "description": "deployed",
                            "environment_url": "https://staging.example.com", "log_url": "https://ci.example.com/1"}


def test_github_enterprise_server_base_path_is_honoured(make_runtime, fake_github) -> None:
    """GITHUB_API_URL with a path (https://HOST/api/v3) prefixes every call."""
    from tests.fakegithub import FakeGitHub

    ghes = FakeGitHub(app_id=APP_ID, private_key_pem=fake_github.private_key_pem, path_prefix="/api/v3")
    ghes.add_installation(factories.INSTALLATION_ID)
    ghes.add_repo(factories.REPO, factories.INSTALLATION_ID)
    with ghes:
        rt = make_runtime("embedded", app_id=APP_ID, private_key=fake_github.private_key_pem.decode(),
                          github_api_url=ghes.url)
        assert repo(rt).list_deployments() == []
    # The fake answers 404 to any path without the /api/v3 prefix, so these succeeding proves the prefix.
    assert [(c.path, c.status) for c in ghes.calls] == [
        (f"/app/installations/{factories.INSTALLATION_ID}/access_tokens", 201),
        (f"/repos/{factories.REPO}/deployments", 200)]
