"""The fake GitHub answers githubkit 0.16.1 the way GitHub does: auth, objects, paging, faults."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import (
    PrimaryRateLimitExceeded,
    RequestError,
    RequestFailed,
    RequestTimeout,
    SecondaryRateLimitExceeded,
)
from pydantic import ValidationError

from tests.fakegithub import FakeGitHub, generate_private_key_pem, new_private_key_pem

APP_ID = 12345
INSTALLATION = 77
OWNER, REPO = "octo-org", "hello"
FULL = f"{OWNER}/{REPO}"
SHA_A = "a" * 40
SHA_B = "b" * 40


@pytest.fixture(scope="module")
def pem() -> bytes:
    """The App's private key (generated once per process)."""
    return generate_private_key_pem()


@pytest.fixture
def fake(pem: bytes) -> Iterator[FakeGitHub]:
    """A started fake with one installation owning octo-org/hello; it must not have crashed."""
    server = FakeGitHub(app_id=APP_ID, private_key_pem=pem)
    server.add_installation(INSTALLATION)
    server.add_repo(FULL, INSTALLATION)
    with server:
        yield server
    assert server.errors == []


def client(fake: FakeGitHub, pem: bytes, installation: int = INSTALLATION, timeout: float = 5,
           http_cache: bool = True, **auth) -> GitHub:
    """An installation client configured exactly as the app configures its own."""
    return GitHub(AppInstallationAuthStrategy(APP_ID, pem.decode(), installation, **auth),
                  base_url=fake.url + "/", timeout=timeout, auto_retry=False, cache_strategy=MemCacheStrategy(),
                  http_cache=http_cache)


def app_client(fake: FakeGitHub, key: bytes) -> GitHub:
    """A JWT-only App client."""
    return GitHub(AppAuthStrategy(APP_ID, key.decode()), base_url=fake.url + "/", timeout=5, auto_retry=False,
                  cache_strategy=MemCacheStrategy())


@pytest.fixture
def gh(fake: FakeGitHub, pem: bytes) -> GitHub:
    """The installation client for octo-org/hello."""
    return client(fake, pem)


def deploy(gh: GitHub, **fields) -> dict:
    """Create a deployment the GitOps way (no auto-merge, no status checks) and return its JSON."""
    fields = {"ref": "main", "auto_merge": False, "required_contexts": [], **fields}
    response = gh.rest.repos.create_deployment(OWNER, REPO, **fields)
    assert response.status_code == 201
    return response.json()


def failure(call) -> RequestFailed:
    """Run a call that must fail with an HTTP status, and return the exception."""
    with pytest.raises(RequestFailed) as caught:
        call()
    return caught.value


def signed_jwt(key: bytes, **claims) -> str:
    """Sign a JWT for the App with custom claims (defaults are githubkit's)."""
    now = int(time.time())
    return jwt.encode({"iss": str(APP_ID), "iat": now - 60, "exp": now + 540, **claims}, key, algorithm="RS256")


# ---- App authentication ---------------------------------------------------------------------

def test_token_is_minted_once_and_reused(fake: FakeGitHub, gh: GitHub) -> None:
    """Two repo calls cost one mint, and both carry the same `token ghs_` credential."""
    assert gh.rest.repos.get(OWNER, REPO).parsed_data.full_name == FULL
    assert gh.rest.repos.get_combined_status_for_ref(OWNER, REPO, "main").status_code == 200
    assert fake.token_mints[INSTALLATION] == 1
    mint = fake.calls_to("POST", r"/access_tokens$")[0]
    assert mint.status == 201 and mint.headers["authorization"].startswith("Bearer ey")
    used = {c.headers["authorization"] for c in fake.calls_to("GET", rf"^/repos/{FULL}")}
    assert len(used) == 1 and used.pop().startswith("token ghs_")


def test_short_lived_tokens_are_minted_again(fake: FakeGitHub, gh: GitHub) -> None:
    """A token that lives under githubkit's one-minute margin is not cached."""
    fake.token_ttl = 30
    gh.rest.repos.get(OWNER, REPO)
    gh.rest.repos.get(OWNER, REPO)
    assert fake.token_mints[INSTALLATION] == 2


def test_jwt_routes_answer_app_and_installation(fake: FakeGitHub, pem: bytes) -> None:
    """GET /app and GET /repos/{o}/{r}/installation validate as githubkit models."""
    app = app_client(fake, pem)
    me = app.rest.apps.get_authenticated().parsed_data
    assert (me.id, me.slug) == (APP_ID, "slipway")
    installation = app.rest.apps.get_repo_installation(OWNER, REPO).parsed_data
    assert installation.id == INSTALLATION and installation.suspended_at is None
    assert installation.account.login == OWNER


def test_jwt_signed_by_another_key_is_rejected(fake: FakeGitHub) -> None:
    """A JWT that the App's public key cannot verify gets GitHub's 401."""
    impostor = app_client(fake, new_private_key_pem())  # keep a reference: githubkit holds clients weakly
    error = failure(lambda: impostor.rest.apps.get_authenticated())
    assert error.response.status_code == 401
    assert error.response.json()["message"] == "A JSON web token could not be decoded"


@pytest.mark.parametrize(("claims", "message"), [
    (lambda now: {"iss": "999"}, "A JSON web token could not be decoded"),
    (lambda now: {"exp": now + 1200}, "'Expiration time' claim ('exp') is too far in the future"),
    (lambda now: {"iat": now - 700, "exp": now - 100}, "'Expiration time' claim ('exp') must be"),
])
def test_bad_jwt_claims_are_rejected(fake: FakeGitHub, pem: bytes, claims, message: str) -> None:
    """Wrong issuer, a too-long lifetime and an expired JWT each answer 401."""
    token = signed_jwt(pem, **claims(int(time.time())))
    answer = httpx.get(f"{fake.url}/app", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.json()["message"].startswith(message)


def test_expired_token_is_rejected(fake: FakeGitHub, gh: GitHub) -> None:
    """A cached token that has expired on GitHub's side gets 401 Bad credentials."""
    gh.rest.repos.get(OWNER, REPO)
    fake.expire_tokens()
    error = failure(lambda: gh.rest.repos.list_deployments(OWNER, REPO))
    assert error.response.status_code == 401
    assert error.response.json()["message"] == "Bad credentials"


def test_suspended_installation_cannot_mint_or_use_tokens(fake: FakeGitHub, pem: bytes, gh: GitHub) -> None:
    """Suspension refuses new tokens (403) and tokens already minted."""
    gh.rest.repos.get(OWNER, REPO)
    fake.suspend_installation(INSTALLATION)
    assert failure(lambda: gh.rest.repos.list_deployments(OWNER, REPO)).response.status_code == 403
    fresh = client(fake, pem)
    with pytest.raises(RequestError) as caught:
        fresh.rest.repos.get(OWNER, REPO)
    minted = caught.value.exc  # githubkit wraps the mint failure raised inside its auth flow
    assert isinstance(minted, RequestFailed) and minted.response.status_code == 403
    assert minted.response.json()["message"] == "This installation has been suspended"


def test_tokens_only_see_their_installation_and_scope(fake: FakeGitHub, pem: bytes) -> None:
    """Other installations' repos and repos outside a narrowed token answer 404."""
    fake.add_installation(2, account="other-org")
    fake.add_repo("other-org/secret", 2)
    fake.add_repo(f"{OWNER}/second", INSTALLATION)
    gh = client(fake, pem)
    assert failure(lambda: gh.rest.repos.get("other-org", "secret")).response.status_code == 404
    narrow = client(fake, pem, repositories=[REPO])
    assert narrow.rest.repos.get(OWNER, REPO).status_code == 200
    assert failure(lambda: narrow.rest.repos.get(OWNER, "second")).response.status_code == 404


def test_missing_permission_answers_403(fake: FakeGitHub, pem: bytes) -> None:
    """An installation without deployments:write cannot create deployments."""
    fake.add_installation(3, permissions={"metadata": "read", "deployments": "read"})
    fake.add_repo("octo-org/readonly", 3)
    gh = client(fake, pem, installation=3)
    error = failure(lambda: gh.rest.repos.create_deployment(OWNER, "readonly", ref="main"))
    assert error.response.status_code == 403
    assert error.response.headers["x-accepted-github-permissions"] == "deployments=write"
    assert fake.deployments["octo-org/readonly"] == []


# ---- deployments ----------------------------------------------------------------------------

def test_create_deployment_returns_complete_object(fake: FakeGitHub, gh: GitHub) -> None:
    """201 validates as Deployment; payload, sha resolution and defaults match GitHub's."""
    fake.set_branch(FULL, "topic", SHA_A)
    response = gh.rest.repos.create_deployment(
        OWNER, REPO, ref="topic", environment="staging", auto_merge=False, required_contexts=[],
        payload={"slipway": {"key": "k-1"}, "n": [1, 2]}, description="ship it")
    deployment = response.parsed_data
    assert response.status_code == 201
    assert (deployment.sha, deployment.ref, deployment.task) == (SHA_A, "topic", "deploy")
    assert deployment.payload.model_dump() == {"slipway": {"key": "k-1"}, "n": [1, 2]}
    assert deployment.production_environment is False and deployment.transient_environment is False
    assert deployment.creator.login == "slipway[bot]" and deployment.creator.type == "Bot"
    assert deployment.performed_via_github_app.id == APP_ID
    assert fake.deployments[FULL][0]["payload"] == {"slipway": {"key": "k-1"}, "n": [1, 2]}


def test_deployment_defaults_and_string_payload(fake: FakeGitHub, gh: GitHub) -> None:
    """Environment defaults to production (a production one); a string payload comes back as is."""
    deployment = gh.rest.repos.create_deployment(OWNER, REPO, ref=SHA_B, payload="raw text",
                                                 required_contexts=[]).parsed_data
    assert (deployment.environment, deployment.production_environment) == ("production", True)
    assert deployment.payload == "raw text" and deployment.sha == SHA_B
    assert [e["name"] for e in fake.environments[FULL].values()] == ["production"]


def test_unknown_ref_answers_422(gh: GitHub) -> None:
    """A ref that is neither a sha nor a known branch is refused."""
    error = failure(lambda: deploy(gh, ref="no-such-branch"))
    assert error.response.status_code == 422
    assert error.response.json()["message"] == "No ref found for: no-such-branch"


def test_auto_merge_answers_202_then_deploys_the_merge(fake: FakeGitHub, gh: GitHub) -> None:
    """auto_merge (default) on a behind branch merges (202, no deployment); a retry deploys."""
    fake.set_branch(FULL, "topic", SHA_A)
    fake.merge_needed.add(FULL)
    response = gh.rest.repos.create_deployment(OWNER, REPO, ref="topic", required_contexts=[])
    assert response.status_code == 202
    assert response.json() == {"message": "Auto-merged main into topic on deployment."}
    with pytest.raises(ValidationError):  # githubkit types this call as 201-only
        _ = response.parsed_data
    assert fake.deployments[FULL] == []
    retried = gh.rest.repos.create_deployment(OWNER, REPO, ref="topic", required_contexts=[])
    assert retried.status_code == 201 and retried.parsed_data.sha == fake.branch_sha(FULL, "topic") != SHA_A


def test_failed_status_checks_answer_409(fake: FakeGitHub, gh: GitHub) -> None:
    """Omitted required_contexts checks every context (statuses and check runs); [] skips."""
    fake.add_commit_status(FULL, SHA_A, "ci/jenkins", "success")
    fake.add_check_run(FULL, SHA_A, "test", status="in_progress", conclusion=None)
    error = failure(lambda: gh.rest.repos.create_deployment(OWNER, REPO, ref=SHA_A, auto_merge=False))
    assert error.response.status_code == 409
    assert error.response.json()["message"] == f"Conflict: Commit status checks failed for {SHA_A}."
    named = gh.rest.repos.create_deployment(OWNER, REPO, ref=SHA_A, required_contexts=["ci/jenkins"])
    assert named.status_code == 201
    assert deploy(gh, ref=SHA_A)["sha"] == SHA_A
    missing = failure(lambda: gh.rest.repos.create_deployment(OWNER, REPO, ref=SHA_A, required_contexts=["lint"]))
    assert missing.response.status_code == 409


def test_list_deployments_filters_and_pages(fake: FakeGitHub, gh: GitHub) -> None:
    """Filters sha/ref/task/environment apply; pages are newest first and linked."""
    fake.set_branch(FULL, "topic", SHA_A)
    first = deploy(gh, environment="staging")
    deploy(gh, ref="topic", environment="staging", task="deploy:migrations")
    last = deploy(gh)
    listing = gh.rest.repos.list_deployments
    assert [d.id for d in listing(OWNER, REPO, environment="staging").parsed_data][1] == first["id"]
    assert [d.ref for d in listing(OWNER, REPO, sha=SHA_A).parsed_data] == ["topic"]
    assert [d.task for d in listing(OWNER, REPO, task="deploy:migrations").parsed_data] == ["deploy:migrations"]
    assert len(listing(OWNER, REPO, ref="main").parsed_data) == 2
    paged = [d.id for d in gh.rest.paginate(listing, owner=OWNER, repo=REPO, per_page=1)]
    assert paged[0] == last["id"] and paged[-1] == first["id"] and len(paged) == 3
    assert [c.query.get("page") for c in fake.calls_to("GET", "/deployments$")][-3:] == [None, "2", "3"]


def test_get_and_delete_deployment(fake: FakeGitHub, gh: GitHub) -> None:
    """Only inactive deployments can be deleted once a repo has several; deleted ones 404."""
    old, new = deploy(gh, environment="qa"), deploy(gh, environment="qa")
    assert gh.rest.repos.get_deployment(OWNER, REPO, old["id"]).parsed_data.id == old["id"]
    refused = failure(lambda: gh.rest.repos.delete_deployment(OWNER, REPO, old["id"]))
    assert refused.response.status_code == 422
    gh.rest.repos.create_deployment_status(OWNER, REPO, old["id"], state="inactive")
    assert gh.rest.repos.delete_deployment(OWNER, REPO, old["id"]).status_code == 204
    assert [d["id"] for d in fake.deployments[FULL]] == [new["id"]]
    assert failure(lambda: gh.rest.repos.get_deployment(OWNER, REPO, old["id"])).response.status_code == 404


# ---- deployment statuses --------------------------------------------------------------------

def test_deployment_statuses_validate_and_list_newest_first(fake: FakeGitHub, gh: GitHub) -> None:
    """Statuses carry log/environment URLs; the list is newest first."""
    deployment = deploy(gh, environment="staging")
    create = gh.rest.repos.create_deployment_status
    create(OWNER, REPO, deployment["id"], state="in_progress", log_url="https://ci/run/1")
    done = create(OWNER, REPO, deployment["id"], state="success", environment_url="https://staging.example")
    assert done.status_code == 201 and done.parsed_data.environment == "staging"
    listed = gh.rest.repos.list_deployment_statuses(OWNER, REPO, deployment["id"]).parsed_data
    assert [s.state for s in listed] == ["success", "in_progress"]
    assert listed[1].log_url == listed[1].target_url == "https://ci/run/1"
    assert listed[0].environment_url == "https://staging.example"
    assert [s["state"] for s in fake.deployment_statuses[deployment["id"]]] == ["in_progress", "success"]


def test_auto_inactive_retires_only_earlier_non_production_non_transient(gh: GitHub, fake: FakeGitHub) -> None:
    """A new success makes earlier successful staging deployments inactive, nothing else."""
    create = gh.rest.repos.create_deployment_status
    staging_old, staging_new = deploy(gh, environment="staging"), deploy(gh, environment="staging")
    prod_old, prod_new = deploy(gh), deploy(gh)
    preview_old = deploy(gh, environment="pr-1", transient_environment=True, production_environment=False)
    preview_new = deploy(gh, environment="pr-1", transient_environment=True, production_environment=False)
    for deployment in (staging_old, staging_new, prod_old, prod_new, preview_old, preview_new):
        create(OWNER, REPO, deployment["id"], state="success")

    def latest(deployment: dict) -> str:
        return fake.deployment_statuses[deployment["id"]][-1]["state"]

    assert latest(staging_old) == "inactive" and latest(staging_new) == "success"
    assert latest(prod_old) == "success" and latest(preview_old) == "success"
    kept = deploy(gh, environment="staging")
    create(OWNER, REPO, kept["id"], state="success", auto_inactive=False)
    assert latest(staging_new) == "success"


def test_invalid_deployment_state_answers_422(gh: GitHub) -> None:
    """A state outside GitHub's list is a validation error (sent raw, past githubkit's own check)."""
    deployment = deploy(gh)
    error = failure(lambda: gh.request("POST", f"/repos/{FULL}/deployments/{deployment['id']}/statuses",
                                       json={"state": "done"}))
    assert error.response.status_code == 422
    assert error.response.json()["errors"][0]["field"] == "state"


# ---- commit statuses and checks -------------------------------------------------------------

def test_combined_status_validates_and_summarises(fake: FakeGitHub, gh: GitHub) -> None:
    """Latest status per context wins; any failure fails; objects validate strictly."""
    sha = fake.branch_sha(FULL, "main")
    assert gh.rest.repos.get_combined_status_for_ref(OWNER, REPO, "main").parsed_data.state == "pending"
    fake.add_commit_status(FULL, sha, "ci", "pending")
    created = gh.rest.repos.create_commit_status(OWNER, REPO, sha, state="success", context="ci",
                                                 description="green", target_url="https://ci/1")
    assert created.status_code == 201 and created.parsed_data.creator.login == "slipway[bot]"
    combined = gh.rest.repos.get_combined_status_for_ref(OWNER, REPO, "main").parsed_data
    assert (combined.state, combined.total_count, combined.sha) == ("success", 1, sha)
    assert (combined.statuses[0].description, combined.statuses[0].target_url) == ("green", "https://ci/1")
    fake.add_commit_status(FULL, sha, "lint", "failure")
    assert gh.rest.repos.get_combined_status_for_ref(OWNER, REPO, sha).parsed_data.state == "failure"
    every = gh.rest.repos.list_commit_statuses_for_ref(OWNER, REPO, "main").parsed_data
    assert [(s.context, s.state) for s in every] == [("lint", "failure"), ("ci", "success"), ("ci", "pending")]


def test_check_runs_and_suites_validate(fake: FakeGitHub, gh: GitHub) -> None:
    """Check runs (latest per name by default) and per-app suites validate strictly."""
    fake.add_check_run(FULL, SHA_A, "test", conclusion="failure")
    rerun = fake.add_check_run(FULL, SHA_A, "test")
    fake.add_check_run(FULL, SHA_A, "deploy-gate", status="in_progress", conclusion=None, app_slug="slipway")
    runs = gh.rest.checks.list_for_ref(OWNER, REPO, SHA_A).parsed_data
    assert runs.total_count == 2 and runs.check_runs[1].id == rerun
    assert {(r.name, r.conclusion, r.app.slug) for r in runs.check_runs} == {
        ("test", "success", "github-actions"), ("deploy-gate", None, "slipway")}
    assert gh.rest.checks.list_for_ref(OWNER, REPO, SHA_A, filter_="all").parsed_data.total_count == 3
    assert gh.rest.checks.list_for_ref(OWNER, REPO, SHA_A, check_name="test").parsed_data.total_count == 1
    suites = gh.rest.checks.list_suites_for_ref(OWNER, REPO, SHA_A).parsed_data.check_suites
    assert [(s.app.slug, s.status, s.conclusion) for s in suites] == [
        ("github-actions", "completed", "success"), ("slipway", "in_progress", None)]


def test_workflow_runs_validate_and_filter(fake: FakeGitHub, gh: GitHub) -> None:
    """Workflow runs filter by head_sha and validate strictly."""
    wanted = fake.add_workflow_run(FULL, SHA_A, "CI", "completed", "failure", path=".github/workflows/ci.yml")
    fake.add_workflow_run(FULL, SHA_B, "CI", "in_progress", None)
    runs = gh.rest.actions.list_workflow_runs_for_repo(OWNER, REPO, head_sha=SHA_A).parsed_data
    assert runs.total_count == 1
    run = runs.workflow_runs[0]
    assert (run.id, run.name, run.conclusion, run.path) == (wanted, "CI", "failure", ".github/workflows/ci.yml")
    assert gh.rest.actions.get_workflow_run(OWNER, REPO, wanted).parsed_data.head_sha == SHA_A


# ---- actions, environments, contents --------------------------------------------------------

def test_workflow_dispatch_and_gate_review_are_recorded(fake: FakeGitHub, gh: GitHub) -> None:
    """Dispatches and protection-rule reviews answer 204 and are recorded; a bad ref is 422."""
    inputs = {"environment": "staging", "sha": SHA_A}
    assert gh.rest.actions.create_workflow_dispatch(OWNER, REPO, "deploy.yml", ref="main",
                                                    inputs=inputs).status_code == 204
    assert fake.dispatches == [{"repo": FULL, "workflow": "deploy.yml", "ref": "main", "inputs": inputs}]
    bad = failure(lambda: gh.rest.actions.create_workflow_dispatch(OWNER, REPO, "deploy.yml", ref="gone"))
    assert bad.response.status_code == 422
    review = gh.rest.actions.review_custom_gates_for_run(OWNER, REPO, 42, environment_name="production",
                                                         state="rejected", comment="frozen")
    assert review.status_code == 204
    assert fake.gate_reviews == [{"repo": FULL, "run_id": 42, "environment_name": "production",
                                  "state": "rejected", "comment": "frozen"}]


def test_environments_appear_update_and_delete(fake: FakeGitHub, gh: GitHub) -> None:
    """Deploying creates the environment; PUT and DELETE need administration, else 403."""
    deploy(gh, environment="pr-7", transient_environment=True)
    listed = gh.rest.repos.get_all_environments(OWNER, REPO).parsed_data
    assert [e.name for e in listed.environments] == ["pr-7"]
    updated = gh.rest.repos.create_or_update_environment(OWNER, REPO, "pr-7", wait_timer=5).parsed_data
    assert updated.protection_rules[0].type == "wait_timer"
    assert gh.rest.repos.delete_an_environment(OWNER, REPO, "pr-7").status_code == 204
    assert fake.deleted_environments == [{"repo": FULL, "name": "pr-7"}]
    deploy(gh, environment="pr-8")
    fake.admin_denied.add(FULL)
    denied = failure(lambda: gh.rest.repos.delete_an_environment(OWNER, REPO, "pr-8"))
    assert denied.response.status_code == 403
    assert denied.response.json()["message"] == "Resource not accessible by integration"


def test_contents_return_base64_files(fake: FakeGitHub, gh: GitHub) -> None:
    """Files come back base64-encoded with git's blob sha; refs select versions; absent is 404."""
    fake.set_file(FULL, ".github/slipway.yml", "previews:\n  enabled: true\n")
    fake.set_branch(FULL, "topic", SHA_A)
    fake.set_file(FULL, ".github/slipway.yml", "previews: {enabled: false}\n", ref="topic")
    file = gh.rest.repos.get_content(OWNER, REPO, ".github/slipway.yml").parsed_data
    assert (file.type, file.encoding, file.name) == ("file", "base64", "slipway.yml")
    assert base64.b64decode(file.content) == b"previews:\n  enabled: true\n"
    on_topic = gh.rest.repos.get_content(OWNER, REPO, ".github/slipway.yml", ref=SHA_A).parsed_data
    assert base64.b64decode(on_topic.content) == b"previews: {enabled: false}\n"
    missing = failure(lambda: gh.rest.repos.get_content(OWNER, REPO, "nope.yml"))
    assert missing.response.status_code == 404 and missing.response.json()["message"] == "Not Found"


def test_contents_sha_is_the_git_blob_sha(fake: FakeGitHub, gh: GitHub) -> None:
    """The sha is what `git hash-object` prints for the same bytes."""
    fake.set_file(FULL, "README.md", "hello\n")
    # `printf 'hello\n' | git hash-object --stdin`
    assert gh.rest.repos.get_content(OWNER, REPO, "README.md").parsed_data.sha == \
        "ce013625030ba8dba906f756967f9e9ca394464a"


# ---- App deliveries and manifest ------------------------------------------------------------

def test_deliveries_paginate_by_cursor_newest_first(fake: FakeGitHub, pem: bytes) -> None:
    """paginate() follows the Link cursor; the status filter keeps failures only."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(5):
        fake.add_hook_delivery(f"guid-{n}", "push", status_code=200 if n % 2 else 503,
                               delivered_at=start + timedelta(minutes=n), installation_id=INSTALLATION)
    app = app_client(fake, pem)
    items = list(app.rest.paginate(app.rest.apps.list_webhook_deliveries, per_page=2))
    assert [d.guid for d in items] == ["guid-4", "guid-3", "guid-2", "guid-1", "guid-0"]
    assert items[0].status == "Invalid HTTP Response: 503" and items[1].status == "OK"
    cursors = [c.query.get("cursor") for c in fake.calls_to("GET", "/app/hook/deliveries$")]
    assert cursors[0] is None and all(c and c.startswith("v1_") for c in cursors[1:]) and len(cursors) == 3
    failed = app.rest.apps.list_webhook_deliveries(status="failure").parsed_data
    assert [d.guid for d in failed] == ["guid-4", "guid-2", "guid-0"]


def test_redelivery_answers_202_and_is_logged(fake: FakeGitHub, pem: bytes) -> None:
    """A redelivery is recorded and shows up as a new delivery with the same guid."""
    delivery_id = fake.add_hook_delivery("guid-x", "deployment", "created", status_code=500)
    app = app_client(fake, pem)
    assert app.rest.apps.redeliver_webhook_delivery(delivery_id).status_code == 202
    assert fake.redeliveries == [delivery_id]
    newest = app.rest.apps.list_webhook_deliveries().parsed_data[0]
    assert (newest.guid, newest.redelivery, newest.status) == ("guid-x", True, "OK")
    assert failure(lambda: app.rest.apps.redeliver_webhook_delivery(1)).response.status_code == 404


def test_manifest_code_converts_once(fake: FakeGitHub) -> None:
    """The conversion returns this App's credentials (so the app can then talk to the fake); once."""
    fake.add_manifest_code("c0de", overrides={"name": "Slipway Dev"})
    anonymous = GitHub(base_url=fake.url + "/", timeout=5, auto_retry=False)
    created = anonymous.rest.apps.create_from_manifest("c0de")
    app = created.parsed_data
    assert created.status_code == 201 and "authorization" not in fake.calls[-1].headers
    assert (app.id, app.name, app.pem) == (APP_ID, "Slipway Dev", fake.private_key_pem.decode())
    assert app.webhook_secret == fake.webhook_secret and app.client_secret
    assert failure(lambda: anonymous.rest.apps.create_from_manifest("c0de")).response.status_code == 404


# ---- faults ---------------------------------------------------------------------------------

def test_server_error_fault_is_consumed(fake: FakeGitHub, gh: GitHub) -> None:
    """A 500 fault answers once, then normal service resumes."""
    fake.fail("GET", rf"^/repos/{FULL}$", 500)
    assert failure(lambda: gh.rest.repos.get(OWNER, REPO)).response.status_code == 500
    assert gh.rest.repos.get(OWNER, REPO).status_code == 200


def test_secondary_rate_limit_raises_with_retry_after(fake: FakeGitHub, gh: GitHub) -> None:
    """403 + retry-after becomes SecondaryRateLimitExceeded(retry_after=30s); nothing is created."""
    fake.fail("POST", r"/deployments$", 403, headers={"retry-after": "30"},
              body={"message": "You have exceeded a secondary rate limit. Please wait a few minutes."})
    with pytest.raises(SecondaryRateLimitExceeded) as caught:
        deploy(gh)
    assert caught.value.retry_after == timedelta(seconds=30)
    assert fake.deployments[FULL] == []
    fake.fail_secondary_rate_limit("POST", r"/deployments$", retry_after=7, status=429)
    with pytest.raises(SecondaryRateLimitExceeded) as again:
        deploy(gh)
    assert again.value.retry_after == timedelta(seconds=7)


def test_primary_rate_limit_raises_until_reset(fake: FakeGitHub, gh: GitHub) -> None:
    """403 with x-ratelimit-remaining 0 becomes PrimaryRateLimitExceeded waiting for the reset."""
    fake.fail_primary_rate_limit("GET", r"/deployments$", reset_in=120)
    with pytest.raises(PrimaryRateLimitExceeded) as caught:
        gh.rest.repos.list_deployments(OWNER, REPO)
    assert timedelta(seconds=100) < caught.value.retry_after <= timedelta(seconds=120)


def test_rate_limit_budget_is_enforced(fake: FakeGitHub, gh: GitHub) -> None:
    """Headers count down per installation, and an exhausted budget answers the primary limit."""
    fake.rate_limit = 3
    sha = fake.branch_sha(FULL, "main")
    first = gh.rest.repos.create_commit_status(OWNER, REPO, sha, state="pending")
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == ("3", "2")
    gh.rest.repos.create_commit_status(OWNER, REPO, sha, state="pending")
    gh.rest.repos.create_commit_status(OWNER, REPO, sha, state="pending")
    with pytest.raises(PrimaryRateLimitExceeded):
        gh.rest.repos.create_commit_status(OWNER, REPO, sha, state="success")
    assert len(fake.commit_statuses[FULL]) == 3


def test_delay_makes_slow_answers_and_timeouts(fake: FakeGitHub, pem: bytes) -> None:
    """A delay alone slows a normal answer; longer than the client timeout, it times out."""
    fake.fail("GET", rf"^/repos/{FULL}$", delay=0.3)
    # http_cache=False: githubkit's HTTP cache (hishel 1.4) drops the timeout; see the next test.
    patient, hasty = client(fake, pem), client(fake, pem, timeout=0.3, http_cache=False)
    started = time.monotonic()
    assert patient.rest.repos.get(OWNER, REPO).status_code == 200
    assert time.monotonic() - started >= 0.3
    hasty.rest.repos.get(OWNER, REPO)  # mint the token first, so the timeout hits the slow call
    fake.fail("GET", rf"^/repos/{FULL}$", delay=1.0)
    with pytest.raises(RequestTimeout):
        hasty.rest.repos.get(OWNER, REPO)


def test_githubkit_http_cache_ignores_timeout(fake: FakeGitHub, pem: bytes) -> None:
    """Pitfall guard: with http_cache on (the default), hishel rebuilds each request without
    httpx's timeout extension, so `timeout=` is silently ignored and a stalled GitHub hangs the
    caller. Production clients must pass http_cache=False; this fails once hishel is fixed."""
    cached = client(fake, pem, timeout=0.2)
    cached.rest.repos.get(OWNER, REPO)
    fake.fail("GET", rf"^/repos/{FULL}$", delay=0.6)
    started = time.monotonic()
    assert cached.rest.repos.get(OWNER, REPO).status_code == 200
    assert time.monotonic() - started >= 0.6


def test_latency_slows_every_answer(fake: FakeGitHub, gh: GitHub) -> None:
    """fake.latency is added to every request, the token mint included."""
    fake.latency = 0.15
    started = time.monotonic()
    gh.rest.repos.get(OWNER, REPO)
    assert time.monotonic() - started >= 0.3


def test_drop_creates_then_closes_the_connection(fake: FakeGitHub, gh: GitHub) -> None:
    """The deployment exists server-side while the client sees a transport error, not a status."""
    fake.fail("POST", r"/deployments$", drop=True)
    with pytest.raises(RequestError) as caught:
        deploy(gh, payload={"slipway": {"key": "k-9"}})
    assert not isinstance(caught.value, RequestFailed)
    assert isinstance(caught.value.exc, httpx.RemoteProtocolError)
    assert [d["payload"] for d in fake.deployments[FULL]] == [{"slipway": {"key": "k-9"}}]
    assert fake.calls_to("POST", r"/deployments$")[-1].status == 0
    listed = gh.rest.repos.list_deployments(OWNER, REPO).parsed_data  # the retry's lookup finds it
    assert listed[0].payload.model_dump() == {"slipway": {"key": "k-9"}}


# ---- protocol details -----------------------------------------------------------------------

def test_concurrent_requests_are_served_consistently(fake: FakeGitHub, gh: GitHub) -> None:
    """Parallel creations each get their own id; the state and the call log agree."""
    gh.rest.repos.get(OWNER, REPO)  # mint once, up front
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda n: deploy(gh, environment=f"env-{n % 3}")["id"], range(24)))
    assert len(set(ids)) == 24 == len(fake.deployments[FULL])
    assert [c.status for c in fake.calls_to("POST", r"/deployments$")] == [201] * 24


def test_unknown_routes_answer_github_404_with_standard_headers(fake: FakeGitHub) -> None:
    """Any unknown path is GitHub's JSON 404 with rate-limit and request-id headers."""
    answer = httpx.get(f"{fake.url}/no/such/route")
    assert answer.status_code == 404
    assert answer.json() == {"message": "Not Found", "documentation_url": "https://docs.github.com/rest",
                             "status": "404"}
    for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-used",
                   "x-ratelimit-resource", "x-github-request-id"):
        assert header in answer.headers


def test_calls_are_recorded_and_filterable(fake: FakeGitHub, gh: GitHub) -> None:
    """Each call keeps method, path, query, lower-case headers, JSON body and status."""
    deploy(gh, environment="staging")
    gh.rest.repos.list_deployments(OWNER, REPO, environment="staging")
    post = fake.calls_to("POST", r"/deployments$")[0]
    assert post.json["environment"] == "staging" and post.status == 201
    assert post.headers["x-github-api-version"] == "2026-03-10"
    assert fake.calls_to("GET", r"/deployments$")[0].query == {"environment": "staging"}
    fake.reset_calls()
    assert fake.calls == []


def test_conditional_requests_revalidate_with_etag(fake: FakeGitHub, gh: GitHub) -> None:
    """githubkit's cache revalidates: unchanged data is a 304, changed data a fresh 200."""
    deploy(gh)
    assert len(gh.rest.repos.list_deployments(OWNER, REPO).parsed_data) == 1
    assert len(gh.rest.repos.list_deployments(OWNER, REPO).parsed_data) == 1
    deploy(gh)
    assert len(gh.rest.repos.list_deployments(OWNER, REPO).parsed_data) == 2
    assert [c.status for c in fake.calls_to("GET", r"/deployments$")] == [200, 304, 200]


def test_path_prefix_serves_like_enterprise_server(pem: bytes) -> None:
    """With path_prefix="/api/v3" the fake answers under it, as GitHub Enterprise Server does."""
    with FakeGitHub(app_id=APP_ID, private_key_pem=pem, path_prefix="/api/v3") as fake:
        fake.add_installation(INSTALLATION)
        fake.add_repo(FULL, INSTALLATION)
        assert fake.url.endswith("/api/v3")
        enterprise = client(fake, pem)
        assert enterprise.rest.repos.get(OWNER, REPO).parsed_data.url.startswith(fake.url)


def test_stop_closes_the_port(pem: bytes) -> None:
    """After the context manager exits nothing listens any more."""
    with FakeGitHub(app_id=APP_ID, private_key_pem=pem) as fake:
        url = fake.url
        assert httpx.get(f"{url}/app").status_code == 401
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/app", timeout=1)
