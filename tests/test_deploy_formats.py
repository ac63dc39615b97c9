"""Table tests for app.deploy_formats: the four deploy request shapes and their answers."""

from __future__ import annotations

import ast
import json
import math
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import deploy_formats as df
from app.deploy_formats import (
    DeployReport,
    InvalidReport,
    parse_canonical,
    parse_opslevel,
    parse_pulse,
    parse_vibe,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
SHA = "38d02f1d7aab64678a7ad3eeb2ad2887ce7253f5"
DROP = object()  # marks a key to remove from a base body

BASE: dict[Any, dict[str, Any]] = {
    parse_canonical: {"environment": "production", "repository": "octo/app"},
    parse_pulse: {"environment": "production", "version": "v1", "commit": SHA, "build_date": "2025-01-15T10:30:00Z"},
    parse_vibe: {"environment": "production", "repository": "octo/app"},
    parse_opslevel: {"service": "cart", "description": "Deploy #1", "deployed_at": "2019-02-01 13:28:33"},
}
ALL = list(BASE)


def utc(*args: int) -> datetime:
    """Return an aware UTC datetime."""
    return datetime(*args, tzinfo=timezone.utc)


def body(parser: Any, **changes: Any) -> dict[str, Any]:
    """Return the parser's minimal valid body with ``changes`` applied (DROP removes a key)."""
    out = dict(BASE[parser])
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def errors_of(parser: Any, payload: Any) -> dict[str, str]:
    """Return the fields of the InvalidReport that parsing ``payload`` must raise."""
    with pytest.raises(InvalidReport) as caught:
        parser(payload, NOW)
    return caught.value.fields


def ids(parser: Any) -> str:
    """Name a parser in test ids."""
    return parser.__name__.removeprefix("parse_")


# --------------------------------------------------------------------------- seed examples


def test_pulse_documented_example():
    """Laravel Pulse's request example parses to the expected report."""
    report = parse_pulse(
        {"environment": "production", "version": "v1.2.3", "commit": "abc123def456",
         "build_date": "2025-01-15T10:30:00Z", "build_id": "12345"},
        NOW,
    )
    assert report == DeployReport(
        environment="production", repository=None, service=None, version="v1.2.3", sha="abc123def456",
        ref=None, status="success", source="webhook", deployed_at=utc(2025, 1, 15, 10, 30), build_id="12345",
        dedup_id=None, deployer=None, description=None, deploy_url=None, commit=None, extra_data=None,
        deploy_number=None, format="pulse",
    )


def test_pulse_github_actions_example():
    """The Pulse document's curl step (date -u +%Y-%m-%dT%H:%M:%SZ) parses."""
    report = parse_pulse(
        {"environment": "production", "version": "main", "commit": SHA,
         "build_date": "2025-03-04T05:06:07Z", "build_id": "9876543210"},
        NOW,
    )
    assert (report.sha, report.deployed_at, report.build_id) == (SHA, utc(2025, 3, 4, 5, 6, 7), "9876543210")


def test_vibe_documented_example():
    """Vibe Monitor's request example parses (its elided "abc123def456789..." replaced by a full SHA)."""
    report = parse_vibe(
        {"environment": "production", "repository": "owner/repo", "branch": "main", "commit_sha": SHA,
         "status": "success", "source": "github_actions", "deployed_at": "2024-01-15T10:30:00Z",
         "extra_data": {"workflow_run_id": "12345"}},
        NOW,
    )
    assert report == DeployReport(
        environment="production", repository="owner/repo", service=None, version=None, sha=SHA, ref="main",
        status="success", source="github_actions", deployed_at=utc(2024, 1, 15, 10, 30), build_id=None,
        dedup_id=None, deployer=None, description=None, deploy_url=None, commit=None,
        extra_data={"workflow_run_id": "12345"}, deploy_number=None, format="vibe",
    )


def test_vibe_elided_example_sha_is_refused_as_vibe_would():
    """The document's literal "abc123def456789..." is not a 40-hex SHA: Vibe's own 422 rule."""
    assert errors_of(parse_vibe, body(parse_vibe, commit_sha="abc123def456789...")) == {
        "commit_sha": "must be 40 hex characters"
    }


@pytest.mark.parametrize(
    "payload, expected",
    [
        pytest.param(  # ArgoCD PostSync hook: no commit_sha, no deployed_at
            {"environment": "production", "repository": "your-org/your-repo", "branch": "main",
             "status": "success", "source": "argocd"},
            {"sha": None, "ref": "main", "source": "argocd", "deployed_at": NOW},
            id="argocd",
        ),
        pytest.param(  # GitLab tag pipeline: CI_COMMIT_BRANCH is empty, CI_PROJECT_PATH nested
            {"environment": "production", "repository": "group/sub/project", "branch": "", "commit_sha": SHA,
             "status": "success", "source": "webhook", "extra_data": {"pipeline_id": "77"}},
            {"repository": "group/sub/project", "ref": None, "extra_data": {"pipeline_id": "77"}},
            id="gitlab",
        ),
        pytest.param(  # Jenkins: GIT_BRANCH carries the remote name
            {"environment": "production", "repository": "acme/shop", "branch": "origin/main", "commit_sha": SHA,
             "status": "success", "source": "jenkins",
             "extra_data": {"build_number": "42", "job_name": "shop/deploy"}},
            {"ref": "origin/main", "source": "jenkins", "extra_data": {"build_number": "42", "job_name": "shop/deploy"}},
            id="jenkins",
        ),
        pytest.param(  # the failure report of the "reporting progress" section
            {"environment": "staging", "repository": "acme/shop", "status": "failed"},
            {"status": "failure"},
            id="failed",
        ),
    ],
)
def test_vibe_documented_ci_examples(payload, expected):
    """Each CI example of the Vibe document parses, with the expected values."""
    report = parse_vibe(payload, NOW)
    assert {key: getattr(report, key) for key in expected} == expected


OPSLEVEL_EXAMPLE = {
    "dedup_id": "9ae54794-dfc5-4ac8-b1b5-78789f20f3f8",
    "service": "shopping_cart",
    "deployer": {"id": "1a9f841f-9a3d-4423-a05a-7e9c31a02b16", "email": "[email protected]", "name": "Michael Scott"},
    "deployed_at": "2019-02-01 13:28:33",
    "environment": "Production",
    "description": "Deployed by CI Pipeline: Deploy #234",
    "deploy_url": "https://heroku.deploys.com",
    "deploy_number": "234",
    "commit": {
        "sha": "38d02f1d7aab64678a7ad3eeb2ad2887ce7253f5",
        "message": "Merge branch 'fix-tax-rate' into 'master'",
        "branch": "master",
        "date": "2019-02-01 09:23:43",
        "committer_name": "Michael Scott",
        "committer_email": "[email protected]",
        "author_name": "Michael Scott",
        "author_email": "[email protected]",
        "authoring_date": "2019-02-01 09:23:43",
    },
}


def test_opslevel_documented_example():
    """OpsLevel's request example, verbatim (mangled emails included), parses to the expected report."""
    report = parse_opslevel(json.loads(json.dumps(OPSLEVEL_EXAMPLE)), NOW)
    assert report == DeployReport(
        environment="Production", repository=None, service="shopping_cart", version=None, sha=SHA, ref="master",
        status="success", source="webhook", deployed_at=utc(2019, 2, 1, 13, 28, 33), build_id=None,
        dedup_id="9ae54794-dfc5-4ac8-b1b5-78789f20f3f8",
        deployer={"name": "Michael Scott", "email": "[email protected]", "id": "1a9f841f-9a3d-4423-a05a-7e9c31a02b16"},
        description="Deployed by CI Pipeline: Deploy #234", deploy_url="https://heroku.deploys.com",
        commit={
            "sha": SHA, "message": "Merge branch 'fix-tax-rate' into 'master'", "branch": "master",
            "date": "2019-02-01T09:23:43Z", "author_name": "Michael Scott", "author_email": "[email protected]",
            "committer_name": "Michael Scott", "committer_email": "[email protected]",
        },
        extra_data=None, deploy_number=234, format="opslevel",
    )


def test_canonical_full_request():
    """Every canonical field parses into its place."""
    report = parse_canonical(
        {"environment": "staging", "repository": "octo/app", "service": "api", "version": "1.4.0",
         "commit_sha": SHA.upper(), "branch": "main", "status": "in_progress", "source": "jenkins",
         "deployed_at": "2025-01-15T10:30:00+02:00", "build_id": "77", "dedup_id": "run-77",
         "deployer": {"name": "Ann", "email": "ann@example.com", "id": "u1"}, "description": "Deploy\n#77",
         "deploy_url": "https://ci.example.com/job/77", "extra_data": {"a": [1, 2, {"b": None}]},
         "unknown_field": {"ignored": True}},
        NOW,
    )
    assert report == DeployReport(
        environment="staging", repository="octo/app", service="api", version="1.4.0", sha=SHA, ref="main",
        status="in_progress", source="jenkins", deployed_at=utc(2025, 1, 15, 8, 30), build_id="77",
        dedup_id="run-77", deployer={"name": "Ann", "email": "ann@example.com", "id": "u1"},
        description="Deploy\n#77", deploy_url="https://ci.example.com/job/77", commit=None,
        extra_data={"a": [1, 2, {"b": None}]}, deploy_number=None, format="canonical",
    )


def test_canonical_defaults():
    """A minimal canonical request gets status success, source webhook and deployed_at now."""
    report = parse_canonical({"environment": "production", "service": "cart"}, NOW)
    assert (report.status, report.source, report.deployed_at, report.repository, report.service) == (
        "success", "webhook", NOW, None, "cart")


def test_canonical_accepts_a_pulse_body():
    """Pulse's field names (commit string, build_date) work on the canonical endpoint too."""
    report = parse_canonical(
        {"environment": "production", "service": "web", "version": "v1", "commit": "ABC123DEF456",
         "build_date": "2025-01-15T10:30:00Z", "build_id": "1"},
        NOW,
    )
    assert (report.sha, report.deployed_at, report.build_id) == ("abc123def456", utc(2025, 1, 15, 10, 30), "1")


def test_canonical_accepts_an_opslevel_commit_object():
    """An OpsLevel commit object gives sha and branch when the flat fields are absent."""
    report = parse_canonical(
        {"environment": "production", "service": "cart", "commit": OPSLEVEL_EXAMPLE["commit"]}, NOW)
    assert (report.sha, report.ref, report.commit["date"]) == (SHA, "master", "2019-02-01T09:23:43Z")


# --------------------------------------------------------------------------- required fields

REQUIRED = [
    (parse_canonical, "environment"),
    (parse_pulse, "environment"),
    (parse_pulse, "version"),
    (parse_pulse, "commit"),
    (parse_pulse, "build_date"),
    (parse_vibe, "environment"),
    (parse_vibe, "repository"),
    (parse_opslevel, "service"),
    (parse_opslevel, "description"),
    (parse_opslevel, "deployed_at"),
]


@pytest.mark.parametrize("parser, field", REQUIRED, ids=lambda v: v if isinstance(v, str) else ids(v))
@pytest.mark.parametrize("absent", [DROP, None, "", "   \n"], ids=["missing", "null", "empty", "blank"])
def test_required_field(parser, field, absent):
    """Each documented required field is reported when missing, null, empty or blank."""
    assert errors_of(parser, body(parser, **{field: absent})) == {field: "is required"}


def test_canonical_needs_repository_or_service():
    """Neither repository nor service: the answer names repository and says service would do."""
    assert errors_of(parse_canonical, {"environment": "production"}) == {
        "repository": "is required unless service is given"}


def test_every_required_field_named_at_once():
    """An empty object names every required field of each shape."""
    assert errors_of(parse_pulse, {}) == {f: "is required" for f in ("environment", "version", "commit", "build_date")}
    assert errors_of(parse_vibe, {}) == {"environment": "is required", "repository": "is required"}
    assert errors_of(parse_opslevel, {}) == {f: "is required" for f in ("service", "description", "deployed_at")}


def test_every_invalid_field_is_named():
    """The brief's example: a bad SHA and a missing environment are both named."""
    assert errors_of(parse_canonical, {"repository": "octo/app", "commit_sha": "xyz"}) == {
        "environment": "is required", "commit_sha": "must be 7 to 40 hex characters"}


# --------------------------------------------------------------------------- lengths

LIMITS = [
    (parse_canonical, "environment", 50, ""),
    (parse_canonical, "repository", 140, "octo/"),
    (parse_canonical, "service", 100, ""),
    (parse_canonical, "version", 100, ""),
    (parse_canonical, "branch", 255, ""),
    (parse_canonical, "source", 50, ""),
    (parse_canonical, "build_id", 50, ""),
    (parse_canonical, "dedup_id", 100, ""),
    (parse_canonical, "description", 1000, ""),
    (parse_canonical, "deploy_url", 2048, "https://example.com/"),
    (parse_pulse, "environment", 50, ""),
    (parse_pulse, "version", 100, ""),
    (parse_pulse, "commit", 40, "v"),
    (parse_pulse, "build_id", 50, ""),
    (parse_vibe, "environment", 50, ""),
    (parse_vibe, "repository", 140, "octo/"),
    (parse_vibe, "branch", 255, ""),
    (parse_opslevel, "service", 100, ""),
    (parse_opslevel, "environment", 50, ""),
    (parse_opslevel, "dedup_id", 100, ""),
]


@pytest.mark.parametrize("parser, field, limit, prefix", LIMITS, ids=lambda v: v if isinstance(v, str) else None)
def test_max_length_at_limit_is_accepted(parser, field, limit, prefix):
    """A value exactly at the limit is accepted and stored whole."""
    value = prefix + "a" * (limit - len(prefix))
    report = parser(body(parser, **{field: value}), NOW)
    stored = {"branch": "ref", "commit": "commit"}.get(field, field)
    got = getattr(report, stored)
    assert (got["sha"] if field == "commit" else got) == value


@pytest.mark.parametrize("parser, field, limit, prefix", LIMITS, ids=lambda v: v if isinstance(v, str) else None)
def test_max_length_one_over_is_refused(parser, field, limit, prefix):
    """One character over the limit is refused with the limit in the message."""
    value = prefix + "a" * (limit + 1 - len(prefix))
    expected = f"must be at most {limit} characters"
    assert errors_of(parser, body(parser, **{field: value})) == {field: expected}


@pytest.mark.parametrize(
    "field, limit",
    [("name", 255), ("email", 254), ("id", 255)],
)
def test_deployer_field_limits(field, limit):
    """Deployer fields are limited and named with their path."""
    ok = parse_canonical(body(parse_canonical, deployer={field: "d" * limit}), NOW)
    assert ok.deployer[field] == "d" * limit
    assert errors_of(parse_canonical, body(parse_canonical, deployer={field: "d" * (limit + 1)})) == {
        f"deployer.{field}": f"must be at most {limit} characters"}


def test_opslevel_description_is_cut_not_refused():
    """OpsLevel sets no length on description: a long one is cut to 1,000 characters."""
    report = parse_opslevel(body(parse_opslevel, description="m" * 5000), NOW)
    assert report.description == "m" * 1000


def test_commit_message_is_cut_at_ten_thousand():
    """A commit message over 10,000 characters is cut, not refused."""
    report = parse_opslevel(body(parse_opslevel, commit={"message": "x" * 20_000}), NOW)
    assert report.commit["message"] == "x" * 10_000


@pytest.mark.parametrize("parser", ALL, ids=ids)
def test_huge_string_is_refused_quickly_without_echo(parser):
    """A 5 MB identifier is refused fast, and the message does not repeat it."""
    field = "service" if parser is parse_opslevel else "environment"
    started = time.perf_counter()
    fields = errors_of(parser, body(parser, **{field: "p" * 5_000_000}))
    assert time.perf_counter() - started < 1.0
    assert fields[field].startswith("must be at most") and len(fields[field]) < 60


def test_surrounding_whitespace_is_stripped():
    """A trailing newline from a CI template does not make a value invalid or different."""
    report = parse_canonical({"environment": " production\n", "repository": "octo/app\n", "version": "v1\n"}, NOW)
    assert (report.environment, report.repository, report.version) == ("production", "octo/app", "v1")


# --------------------------------------------------------------------------- SHAs


@pytest.mark.parametrize(
    "value, expected",
    [
        ("abc1234", "abc1234"),
        (SHA, SHA),
        (SHA.upper(), SHA),
        ("ABCDEF0", "abcdef0"),
        ("abc123", None),
        (SHA + "a", None),
        ("abc123g", None),
        ("abc 1234", None),
        ("0x1234567", None),
        ("abc1234\u0660", None),  # an Arabic-Indic digit is not hex
        ("a" * 64, None),
    ],
)
@pytest.mark.parametrize("field", ["commit_sha", "commit"])
def test_canonical_sha_rules(field, value, expected):
    """commit_sha and its string alias commit take 7 to 40 hex digits, stored lower-case."""
    payload = body(parse_canonical, **{field: value})
    if expected is None:
        assert errors_of(parse_canonical, payload) == {field: "must be 7 to 40 hex characters"}
    else:
        assert parse_canonical(payload, NOW).sha == expected


@pytest.mark.parametrize("value, ok", [(SHA, True), (SHA.upper(), True), (SHA[:39], False), ("abc1234", False),
                                       (SHA + "0", False), ("g" * 40, False)])
def test_vibe_sha_is_full_40_hex(value, ok):
    """Vibe takes only a full 40-character SHA, as its document says."""
    payload = body(parse_vibe, commit_sha=value)
    if ok:
        assert parse_vibe(payload, NOW).sha == SHA
    else:
        assert errors_of(parse_vibe, payload) == {"commit_sha": "must be 40 hex characters"}


def test_canonical_commit_conflicts_are_refused():
    """commit_sha and a differing commit (string or object sha) cannot both be right."""
    assert errors_of(parse_canonical, body(parse_canonical, commit_sha=SHA, commit="abc1234")) == {
        "commit": "does not match commit_sha"}
    assert errors_of(parse_canonical, body(parse_canonical, commit_sha=SHA, commit={"sha": "abc1234"})) == {
        "commit.sha": "does not match commit_sha"}
    same = parse_canonical(body(parse_canonical, commit_sha=SHA, commit=SHA.upper()), NOW)
    assert same.sha == SHA


def test_canonical_commit_object_sha_must_be_hex():
    """In the canonical shape the commit object's sha follows the same hex rule."""
    assert errors_of(parse_canonical, body(parse_canonical, commit={"sha": "not-a-sha"})) == {
        "commit.sha": "must be 7 to 40 hex characters"}


def test_pulse_commit_that_is_not_hex_is_kept():
    """Pulse only limits commit to 40 characters: a non-hex value is kept in commit, sha stays None."""
    report = parse_pulse(body(parse_pulse, commit="unknown"), NOW)
    assert report.sha is None
    assert report.commit == {"sha": "unknown", "message": None, "branch": None, "date": None, "author_name": None,
                             "author_email": None, "committer_name": None, "committer_email": None}


def test_opslevel_commit_sha_that_is_not_hex_is_kept():
    """OpsLevel's commit.sha has no documented format: kept in commit, sha stays None."""
    report = parse_opslevel(body(parse_opslevel, commit={"sha": "CL-12345"}), NOW)
    assert (report.sha, report.commit["sha"]) == (None, "CL-12345")


# --------------------------------------------------------------------------- enumerations


@pytest.mark.parametrize(
    "sent, stored",
    [("pending", "pending"), ("queued", "queued"), ("in_progress", "in_progress"), ("success", "success"),
     ("failed", "failure"), ("failure", "failure"), ("error", "error"), ("cancelled", "cancelled"),
     ("inactive", "inactive"), (DROP, "success"), (None, "success")],
)
def test_canonical_statuses(sent, stored):
    """Every documented canonical status is accepted and normalised; none means success."""
    assert parse_canonical(body(parse_canonical, status=sent), NOW).status == stored


@pytest.mark.parametrize("sent", ["SUCCESS", "done", "canceled", "failing", "in progress"])
def test_canonical_unknown_status(sent):
    """An undocumented status is refused with the accepted list."""
    assert errors_of(parse_canonical, body(parse_canonical, status=sent)) == {
        "status": "must be one of pending, queued, in_progress, success, failed, failure, error, cancelled, inactive"}


@pytest.mark.parametrize(
    "sent, stored",
    [("pending", "pending"), ("in_progress", "in_progress"), ("success", "success"), ("failed", "failure"),
     ("cancelled", "cancelled")],
)
def test_vibe_statuses(sent, stored):
    """Vibe's five statuses are accepted; failed is stored as failure."""
    assert parse_vibe(body(parse_vibe, status=sent), NOW).status == stored


@pytest.mark.parametrize("sent", ["queued", "error", "inactive", "failure"])
def test_vibe_refuses_statuses_it_does_not_list(sent):
    """Statuses outside Vibe's list are refused on the Vibe endpoint."""
    assert errors_of(parse_vibe, body(parse_vibe, status=sent)) == {
        "status": "must be one of pending, in_progress, success, failed, cancelled"}


@pytest.mark.parametrize("sent, ok", [("webhook", True), ("github_actions", True), ("argocd", True),
                                      ("jenkins", True), ("gitlab", False), ("Jenkins", False)])
def test_vibe_sources(sent, ok):
    """Vibe's sources are an enumeration."""
    payload = body(parse_vibe, source=sent)
    if ok:
        assert parse_vibe(payload, NOW).source == sent
    else:
        assert errors_of(parse_vibe, payload) == {"source": "must be one of webhook, github_actions, argocd, jenkins"}


def test_canonical_source_is_open():
    """The canonical source is any short identifier (gitlab, circleci, ...)."""
    assert parse_canonical(body(parse_canonical, source="circleci"), NOW).source == "circleci"


# --------------------------------------------------------------------------- dates

DATETIME_OK = [
    ("2025-01-15T10:30:00Z", utc(2025, 1, 15, 10, 30)),
    ("2025-01-15t10:30:00z", utc(2025, 1, 15, 10, 30)),
    ("2025-01-15T10:30:00+02:00", utc(2025, 1, 15, 8, 30)),
    ("2025-01-15T10:30:00-0530", utc(2025, 1, 15, 16, 0)),
    ("2025-01-15T10:30:00+01", utc(2025, 1, 15, 9, 30)),
    ("2025-01-15T10:30:00.123456789Z", utc(2025, 1, 15, 10, 30, 0, 123456)),
    ("2025-01-15T10:30:00,5Z", utc(2025, 1, 15, 10, 30, 0, 500000)),
    ("2025-01-15T10:30Z", utc(2025, 1, 15, 10, 30)),
    ("2025-01-15T10:30:00", utc(2025, 1, 15, 10, 30)),  # no offset: UTC
    ("2025-01-15 10:30:00", utc(2025, 1, 15, 10, 30)),
    ("2025-01-01T00:30:00+01:00", utc(2024, 12, 31, 23, 30)),
]
DATETIME_BAD = [
    "2025-01-15", "yesterday", "2025-13-01T00:00:00Z", "2025-02-30T00:00:00Z", "2025-01-15T24:00:00Z",
    "2025-01-15T23:59:60Z", "2025-01-15T10:30:00+24:00", "2025-01-15T10:30:00+05:60", "1705314600",
    "20250115T103000Z", "2025-1-5T10:30:00Z", "\uff12\uff10\uff12\uff15-01-15T10:30:00Z",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2025-01-15T10:30:00Z trailing",
    "2025-01-15T10:30:00.1234567890Z", "2025-01-15T10:30:00Z" + " " * 50 + "x",
]
DATETIME_FIELDS = [
    (parse_canonical, "deployed_at"),
    (parse_canonical, "build_date"),
    (parse_vibe, "deployed_at"),
    (parse_opslevel, "deployed_at"),
    (parse_pulse, "build_date"),
]


@pytest.mark.parametrize("parser, field", DATETIME_FIELDS, ids=lambda v: v if isinstance(v, str) else ids(v))
@pytest.mark.parametrize("text, expected", DATETIME_OK, ids=[t for t, _ in DATETIME_OK])
def test_datetimes_accepted(parser, field, text, expected):
    """ISO 8601 with Z, an offset or none (UTC), and OpsLevel's "YYYY-MM-DD HH:MM:SS", become aware UTC."""
    report = parser(body(parser, **{field: text}), NOW)
    assert report.deployed_at == expected and report.deployed_at.tzinfo is timezone.utc


@pytest.mark.parametrize(
    "parser, field, text",
    [
        (parser, field, text)
        for parser, field in DATETIME_FIELDS
        for text in DATETIME_BAD
        if not (parser is parse_pulse and text == "2025-01-15")  # Pulse asks for a date: see below
    ],
    ids=lambda v: v if isinstance(v, str) else ids(v),
)
def test_datetimes_refused(parser, field, text):
    """Garbage, impossible dates and out-of-range offsets are refused (date-only only where a date is asked)."""
    fields = errors_of(parser, body(parser, **{field: text}))
    assert list(fields) == [field] and fields[field].startswith("must be an ISO 8601 date")


def test_pulse_accepts_date_only():
    """Pulse's build_date is "ISO 8601 date": a bare date is midnight UTC."""
    assert parse_pulse(body(parse_pulse, build_date="2025-01-15"), NOW).deployed_at == utc(2025, 1, 15)


def test_opslevel_commit_date_accepts_date_only():
    """OpsLevel's commit date is a date: a bare date is accepted; authoring_date fills a missing date."""
    report = parse_opslevel(body(parse_opslevel, commit={"authoring_date": "2019-02-01"}), NOW)
    assert report.commit["date"] == "2019-02-01T00:00:00Z"


def test_datetime_type_is_checked():
    """A Unix timestamp number is not a date string."""
    assert errors_of(parse_canonical, body(parse_canonical, deployed_at=1705314600)) == {
        "deployed_at": "must be a string"}


def test_deployed_at_wins_over_build_date_and_now_is_default():
    """deployed_at is preferred to its alias; with neither, the given now (made UTC) is used."""
    both = parse_canonical(body(parse_canonical, deployed_at="2025-01-02T00:00:00Z",
                                build_date="2025-01-01T00:00:00Z"), NOW)
    assert both.deployed_at == utc(2025, 1, 2)
    berlin = timezone(timedelta(hours=2))
    report = parse_vibe(body(parse_vibe), datetime(2025, 6, 1, 14, 0, tzinfo=berlin))
    assert report.deployed_at == NOW and report.deployed_at.tzinfo is timezone.utc
    assert parse_canonical(body(parse_canonical), datetime(2025, 6, 1, 12, 0)).deployed_at == NOW


# --------------------------------------------------------------------------- URLs

URL_OK = ["https://heroku.deploys.com", "http://ci.example.com:8080/job/1?x=1#y", "HTTPS://EXAMPLE.COM/",
          "https://[2001:db8::1]/x", "https://bücher.example/"]
URL_BAD = [
    ("javascript:alert(1)", "must be an http or https URL"),
    ("file:///etc/passwd", "must be an http or https URL"),
    ("ftp://files.example.com/x", "must be an http or https URL"),
    ("data:text/html,<script>", "must be an http or https URL"),
    ("mailto:a@example.com", "must be an http or https URL"),
    ("//example.com/x", "must be an http or https URL"),
    ("https://", "must be an http or https URL"),
    ("example.com", "must be an http or https URL"),
    ("http://example.com:99999/", "must be an http or https URL"),
    ("http://[::1/", "must be an http or https URL"),
    ("https://exa mple.com/", "must be an http or https URL without spaces"),
    ("https://user:secret@example.com/", "must not contain a user name or password"),
]


@pytest.mark.parametrize("parser", [parse_canonical, parse_opslevel], ids=ids)
@pytest.mark.parametrize("url", URL_OK)
def test_deploy_url_accepted(parser, url):
    """http and https URLs with a host are accepted as sent."""
    assert parser(body(parser, deploy_url=url), NOW).deploy_url == url


@pytest.mark.parametrize("parser", [parse_canonical, parse_opslevel], ids=ids)
@pytest.mark.parametrize("url, message", URL_BAD, ids=[u for u, _ in URL_BAD])
def test_deploy_url_refused(parser, url, message):
    """Other schemes, hostless URLs, bad ports and credentials are refused."""
    assert errors_of(parser, body(parser, deploy_url=url)) == {"deploy_url": message}


# --------------------------------------------------------------------------- types


@pytest.mark.parametrize("parser", ALL, ids=ids)
@pytest.mark.parametrize("payload", [[], [{"environment": "production"}], "production", 42, 1.5, True, None],
                         ids=["empty-list", "list", "string", "int", "float", "bool", "null"])
def test_body_must_be_an_object(parser, payload):
    """A body that is not a JSON object is refused as a whole."""
    assert errors_of(parser, payload) == {"body": "must be a JSON object"}


WRONG_STRING_TYPES = [42, 4.2, True, False, [], ["production"], {}, {"name": "production"}]


@pytest.mark.parametrize(
    "parser, field",
    [(parse_canonical, f) for f in ("environment", "repository", "service", "version", "commit_sha", "branch",
                                    "status", "source", "deployed_at", "build_date", "build_id", "dedup_id",
                                    "description", "deploy_url")]
    + [(parse_pulse, f) for f in ("environment", "version", "commit", "build_date", "build_id")]
    + [(parse_vibe, f) for f in ("environment", "repository", "branch", "commit_sha", "status", "source",
                                 "deployed_at")]
    + [(parse_opslevel, f) for f in ("service", "description", "deployed_at", "environment", "dedup_id",
                                     "deploy_url")],
    ids=lambda v: v if isinstance(v, str) else ids(v),
)
@pytest.mark.parametrize("value", WRONG_STRING_TYPES, ids=lambda v: type(v).__name__ + str(bool(v)))
def test_strings_must_be_strings(parser, field, value):
    """Numbers, booleans, lists and objects where a string goes are named as type errors."""
    assert errors_of(parser, body(parser, **{field: value})) == {field: "must be a string"}


@pytest.mark.parametrize("value", [42, True, ["abc1234"]])
def test_canonical_commit_must_be_string_or_object(value):
    """commit is either a SHA string or a commit object."""
    assert errors_of(parse_canonical, body(parse_canonical, commit=value)) == {
        "commit": "must be a commit SHA string or a commit object"}


@pytest.mark.parametrize("parser", [parse_canonical, parse_opslevel], ids=ids)
@pytest.mark.parametrize("value", ["Michael Scott", 7, ["a"], True])
def test_deployer_must_be_an_object(parser, value):
    """deployer is an object, not a name."""
    assert errors_of(parser, body(parser, deployer=value)) == {"deployer": "must be an object with name, email or id"}


@pytest.mark.parametrize("parser", [parse_canonical, parse_vibe], ids=ids)
@pytest.mark.parametrize("value", [[1, 2], "x", 3, True])
def test_extra_data_must_be_an_object(parser, value):
    """extra_data is a JSON object."""
    assert errors_of(parser, body(parser, extra_data=value)) == {"extra_data": "must be an object"}


@pytest.mark.parametrize("value", [7, {"x": 1}, ["a"]])
def test_nested_fields_are_named_with_their_path(value):
    """A wrong type inside deployer or commit is named as deployer.name, commit.branch, ..."""
    fields = errors_of(parse_opslevel, body(parse_opslevel, deployer={"name": value, "email": "a@b"},
                                            commit={"branch": value, "date": value}))
    assert fields == {"deployer.name": "must be a string", "commit.branch": "must be a string",
                      "commit.date": "must be a string"}


def test_opslevel_commit_must_be_an_object():
    """OpsLevel's commit is an object (no SHA-string alias there)."""
    assert errors_of(parse_opslevel, body(parse_opslevel, commit=SHA)) == {"commit": "must be an object"}


# --------------------------------------------------------------------------- deployer / numbers


def test_deployer_shapes():
    """An empty deployer is no deployer; OpsLevel needs a name or an email when one is sent."""
    assert parse_canonical(body(parse_canonical, deployer={}), NOW).deployer is None
    assert parse_canonical(body(parse_canonical, deployer={"id": "u1"}), NOW).deployer == {
        "name": None, "email": None, "id": "u1"}
    assert errors_of(parse_opslevel, body(parse_opslevel, deployer={"id": "u1"})) == {
        "deployer": "needs a name or an email"}
    assert parse_opslevel(body(parse_opslevel, deployer={"email": "a@example.com"}), NOW).deployer == {
        "name": None, "email": "a@example.com", "id": None}
    assert parse_opslevel(body(parse_opslevel), NOW).deployer is None  # optional per SPEC section 6


@pytest.mark.parametrize("value, expected", [("234", 234), (234, 234), (0, 0), (" 7 ", 7), (None, None),
                                             ("", None), (DROP, None), (2**63 - 1, 2**63 - 1)])
def test_opslevel_deploy_number_accepted(value, expected):
    """deploy_number is a whole number sent as a string (as documented) or a number."""
    assert parse_opslevel(body(parse_opslevel, deploy_number=value), NOW).deploy_number == expected


@pytest.mark.parametrize("value", ["v234", "-1", -1, 2**63, "9" * 30, 1.5, 234.0, True, [], {}, "²", "1e3"])
def test_opslevel_deploy_number_refused(value):
    """Anything but a whole number from 0 to BIGINT's maximum is refused."""
    assert errors_of(parse_opslevel, body(parse_opslevel, deploy_number=value)) == {
        "deploy_number": "must be a whole number from 0 to 9223372036854775807"}


def test_opslevel_environment_defaults_to_production():
    """OpsLevel's document gives no default environment; Slipway records production."""
    assert parse_opslevel(body(parse_opslevel), NOW).environment == "production"


# --------------------------------------------------------------------------- repositories


@pytest.mark.parametrize("value", ["octo/app", "octo-org/app.js", "a/b", "group/sub/project", "o/r_1"])
def test_repository_accepted(value):
    """owner/name (and nested GitLab paths) are accepted."""
    assert parse_canonical(body(parse_canonical, repository=value), NOW).repository == value


@pytest.mark.parametrize("value", ["octo", "octo/", "/app", "octo//app", "https://github.com/octo/app",
                                   "octo/app name", "octo/..", "../app", "octo/app\u200b"])
@pytest.mark.parametrize("parser", [parse_canonical, parse_vibe], ids=ids)
def test_repository_refused(parser, value):
    """Anything that is not owner/name is refused."""
    fields = errors_of(parser, body(parser, repository=value))
    assert list(fields) == ["repository"]
    assert fields["repository"] in ("must be owner/name (e.g. octo-org/app)", "must not contain control characters")


# --------------------------------------------------------------------------- unicode and control characters

SURROGATE = "prod\ud800"


@pytest.mark.parametrize(
    "parser, changes, field",
    [
        (parse_canonical, {"environment": SURROGATE}, "environment"),
        (parse_canonical, {"description": "x\udfff"}, "description"),
        (parse_canonical, {"deployer": {"name": SURROGATE}}, "deployer.name"),
        (parse_canonical, {"extra_data": {"k": SURROGATE}}, "extra_data"),
        (parse_canonical, {"extra_data": {SURROGATE: 1}}, "extra_data"),
        (parse_canonical, {"extra_data": {"a": [{"b": [SURROGATE]}]}}, "extra_data"),
        (parse_pulse, {"version": SURROGATE}, "version"),
        (parse_vibe, {"branch": SURROGATE}, "branch"),
        (parse_opslevel, {"commit": {"message": "fix\ud83d"}}, "commit.message"),
        (parse_opslevel, {"description": SURROGATE}, "description"),
    ],
)
def test_lone_surrogates_are_refused(parser, changes, field):
    """A lone surrogate (valid in JSON's \\u escapes, invalid in UTF-8) is refused where it is stored."""
    fields = errors_of(parser, body(parser, **changes))
    assert list(fields) == [field] and "surrogate" in fields[field]


def test_paired_surrogates_from_json_are_fine():
    """json.loads joins an escaped surrogate pair into one character, which is accepted."""
    payload = json.loads('{"environment": "prod-\\ud83d\\ude80", "service": "x", "extra_data": {"e": "\\ud83d\\ude80"}}')
    assert parse_canonical(payload, NOW).environment == "prod-\U0001f680"


@pytest.mark.parametrize("value", ["prod\x00", "prod\nuction", "pro\tduction", "prod\x1b[31m", "prod\x7f",
                                   "prod\x85x", "prod\u200bx", "prod\u202ex", "prod\u2028x"])
def test_control_characters_in_identifiers_are_refused(value):
    """Identifiers refuse control, format and line-separator characters inside them."""
    assert errors_of(parse_canonical, body(parse_canonical, environment=value)) == {
        "environment": "must not contain control characters"}


def test_free_text_keeps_newlines_but_refuses_other_controls():
    """Descriptions and commit messages may hold newlines and tabs, never NUL or escapes."""
    ok = parse_canonical(body(parse_canonical, description="line 1\n\tline 2\r\nline 3"), NOW)
    assert ok.description == "line 1\n\tline 2\r\nline 3"
    for bad in ("nul\x00", "bell\x07", "esc\x1b[0m"):
        assert errors_of(parse_canonical, body(parse_canonical, description=bad)) == {
            "description": "must not contain control characters other than tab and newline"}


# --------------------------------------------------------------------------- extra_data


def nested(depth: int) -> dict[str, Any]:
    """Return extra_data whose objects nest ``depth`` levels (extra_data itself is level 1)."""
    node: dict[str, Any] = {}
    for _ in range(depth - 1):
        node = {"n": node}
    return node


def test_extra_data_depth():
    """32 levels are stored; 33 are refused; 100,000 are refused without a RecursionError."""
    assert parse_canonical(body(parse_canonical, extra_data=nested(32)), NOW).extra_data == nested(32)
    message = "must not nest deeper than 32 levels"
    assert errors_of(parse_canonical, body(parse_canonical, extra_data=nested(33))) == {"extra_data": message}
    assert errors_of(parse_vibe, body(parse_vibe, extra_data=nested(100_000))) == {"extra_data": message}


def test_extra_data_depth_through_lists():
    """Lists count as levels too."""
    node: Any = "leaf"
    for _ in range(40):
        node = [node]
    assert errors_of(parse_canonical, body(parse_canonical, extra_data={"l": node})) == {
        "extra_data": "must not nest deeper than 32 levels"}


@pytest.mark.parametrize("parser", [parse_canonical, parse_vibe], ids=ids)
def test_extra_data_size_limit(parser):
    """16,384 bytes of compact UTF-8 JSON are stored; one byte more is refused."""
    overhead = len('{"k":""}')
    at_limit = {"k": "x" * (16384 - overhead)}
    assert parser(body(parser, extra_data=at_limit), NOW).extra_data == at_limit
    over = {"k": "x" * (16385 - overhead)}
    assert errors_of(parser, body(parser, extra_data=over)) == {
        "extra_data": "must be at most 16384 bytes as JSON (16 KiB)"}


def test_extra_data_size_counts_utf8_bytes():
    """Multi-byte characters count as their UTF-8 bytes, not as one character."""
    overhead = len('{"k":""}')
    text = "é" * ((16384 - overhead) // 2 + 1)  # fewer than 16 KiB characters, more than 16 KiB bytes
    assert errors_of(parse_canonical, body(parse_canonical, extra_data={"k": text})) == {
        "extra_data": "must be at most 16384 bytes as JSON (16 KiB)"}


@pytest.mark.parametrize(
    "value, message",
    [({"x": math.nan}, "must not contain NaN or Infinity"), ({"x": [math.inf]}, "must not contain NaN or Infinity"),
     ({"x": "a\x00b"}, "must not contain NUL characters"), ({"x": {1, 2}}, "must be plain JSON"),
     ({"x": 10**5000}, "must be plain JSON")],
)
def test_extra_data_must_be_storable_json(value, message):
    """NaN, Infinity (json.loads lets them through), NUL and non-JSON values are refused."""
    assert errors_of(parse_canonical, body(parse_canonical, extra_data=value)) == {"extra_data": message}


def test_empty_extra_data_is_kept():
    """An empty object is stored as sent."""
    assert parse_canonical(body(parse_canonical, extra_data={}), NOW).extra_data == {}


# --------------------------------------------------------------------------- answers


def test_pulse_answers():
    """Pulse's 201, its middleware's 401, Laravel's 429 and 422 bodies."""
    assert df.pulse_created() == (201, {"status": "recorded"})
    assert df.pulse_error(401) == (401, {"error": "Unauthorized"})
    assert df.pulse_error(429) == (429, {"message": "Too Many Attempts."})
    with pytest.raises(InvalidReport) as caught:
        parse_pulse({"version": "v1", "commit": SHA}, NOW)
    assert df.pulse_error(422, caught.value) == (422, {
        "message": "The environment field is required. (and 1 more error)",
        "errors": {"environment": ["The environment field is required."],
                   "build_date": ["The build date field is required."]},
    })


def test_pulse_422_summary_counts():
    """Laravel's summary: one error alone; "(and N more errors)" for more."""
    assert df.pulse_error(422, {"version": "must be a string"})[1]["message"] == "The version field must be a string."
    three = {"a": "is required", "b": "is required", "c": "is required"}
    assert df.pulse_error(422, three)[1]["message"] == "The a field is required. (and 2 more errors)"


def test_vibe_created_body():
    """Vibe's 201 body has exactly its nine keys, ISO UTC times and its own "failed" spelling."""
    record = {
        "id": UUID("12345678-1234-5678-1234-567812345678"), "environment_id": "env-1", "repository": "owner/repo",
        "ref": "main", "sha": SHA, "status": "failure", "source": "github_actions",
        "deployed_at": datetime(2024, 1, 15, 11, 30, tzinfo=timezone(timedelta(hours=1))),
        "created_at": utc(2024, 1, 15, 10, 30, 5), "secret_column": "never shown",
    }
    assert df.vibe_created(record) == (201, {
        "id": "12345678-1234-5678-1234-567812345678", "environment_id": "env-1", "repo_full_name": "owner/repo",
        "branch": "main", "commit_sha": SHA, "status": "failed", "source": "github_actions",
        "deployed_at": "2024-01-15T10:30:00Z", "created_at": "2024-01-15T10:30:05Z",
    })


def test_vibe_errors():
    """401 is exactly {"detail": "Invalid API key"}; 422 uses FastAPI's loc/msg/type list."""
    assert df.vibe_error(401) == (401, {"detail": "Invalid API key"})
    assert df.vibe_error(401, "anything else") == (401, {"detail": "Invalid API key"})
    assert df.vibe_error(404, "Environment not found") == (404, {"detail": "Environment not found"})
    with pytest.raises(InvalidReport) as caught:
        parse_vibe({"repository": "o/r", "commit_sha": "abc", "extra_data": {"a": math.nan}}, NOW)
    assert df.vibe_error(422, caught.value) == (422, {"detail": [
        {"loc": ["body", "environment"], "msg": "Field required", "type": "missing"},
        {"loc": ["body", "commit_sha"], "msg": "Value must be 40 hex characters", "type": "string_pattern_mismatch"},
        {"loc": ["body", "extra_data"], "msg": "Value must not contain NaN or Infinity", "type": "value_error"},
    ]})


def test_vibe_error_for_a_non_object_body():
    """A non-object body is one error located at ["body"]."""
    with pytest.raises(InvalidReport) as caught:
        parse_vibe([], NOW)
    assert df.vibe_error(422, caught.value)[1]["detail"] == [
        {"loc": ["body"], "msg": "Value must be a JSON object", "type": "dict_type"}]


def test_vibe_error_nested_location():
    """A nested field becomes a nested loc."""
    detail = df.vibe_error(422, {"deployer.name": "must be a string"})[1]["detail"]
    assert detail[0]["loc"] == ["body", "deployer", "name"]


def test_opslevel_answers():
    """OpsLevel's 202 bodies use the document's exact words."""
    assert df.opslevel_ok() == (202, {"result": "ok"})
    assert df.opslevel_no_service("not_found_alias", None) == (202, {
        "result": "no_service_found",
        "message": "No service found matching alias 'not_found_alias'. Recording 'not_found_alias' as a suggestion.",
    })
    assert df.opslevel_no_service("shoping_cart", "shopping_cart")[1]["message"].endswith(
        "Recording 'shoping_cart' as a suggestion. Did you mean 'shopping_cart'?")
    assert df.opslevel_duplicate() == (202, {
        "result": "duplicate_deploy",
        "message": "Deploy not created due to existing deploy with identical dedup_id",
    })


def test_opslevel_error_bodies_match_the_document():
    """Missing description and deployed_at read exactly as the document's examples."""
    with pytest.raises(InvalidReport) as caught:
        parse_opslevel({"service": "cart", "deploy_url": "ftp://x"}, NOW)
    assert df.opslevel_invalid(caught.value) == (400, {"errors": [
        {"status": 400, "title": "Description Error", "detail": "param is missing or the value is empty: description"},
        {"status": 400, "title": "Deployed at Error", "detail": "param is missing or the value is empty: deployed_at"},
        {"status": 400, "title": "Deploy url Error", "detail": "deploy_url must be an http or https URL"},
    ]})
    assert df.opslevel_errors(404, [("Integration Error", "no such integration")]) == (404, {
        "errors": [{"status": 404, "title": "Integration Error", "detail": "no such integration"}]})


def test_canonical_errors():
    """Slipway's own error shape (as app.errors answers), fields only when there are some."""
    assert df.canonical_error(401, "unauthorized", "bad key") == (401, {
        "error": {"code": "unauthorized", "message": "bad key"}})
    with pytest.raises(InvalidReport) as caught:
        parse_canonical({"repository": "octo/app", "commit_sha": "xyz"}, NOW)
    assert df.canonical_invalid(caught.value) == (422, {"error": {
        "code": "invalid", "message": "invalid fields: environment, commit_sha",
        "fields": {"environment": "is required", "commit_sha": "must be 7 to 40 hex characters"}}})


# --------------------------------------------------------------------------- suggest


@pytest.mark.parametrize(
    "name, known, expected",
    [
        ("prodution", ["staging", "production"], "production"),
        ("Production", ["staging", "production"], "production"),
        ("octo/ap", ["octo/app", "octo/api-gateway"], "octo/app"),
        ("shoping_cart", ["shopping_cart", "billing"], "shopping_cart"),
        ("zzzz", ["production", "staging"], None),
        ("preview", ["production"], None),  # a weak likeness is no suggestion
        ("production", [], None),
        ("", ["production"], None),
        ("x" * 1000, ["x" * 1000], None),
    ],
)
def test_suggest(name, known, expected):
    """The closest known name, case-insensitively, or None."""
    assert df.suggest(name, known) == expected


# --------------------------------------------------------------------------- report object and purity


def test_report_is_frozen_and_serialisable():
    """The report cannot be changed in place, and to_dict is JSON-ready."""
    report = parse_opslevel(OPSLEVEL_EXAMPLE, NOW)
    with pytest.raises(AttributeError):
        report.environment = "x"  # type: ignore[misc]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["deployed_at"] == "2019-02-01T13:28:33Z" and data["ref"] == "master"
    assert report.branch == "master"


def test_module_is_pure():
    """The module imports only the standard library and never reads the clock."""
    source = Path(df.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "dataclasses", "difflib", "json", "math", "re", "unicodedata",
                        "collections", "datetime", "typing", "urllib", "uuid"}
    for clock in ("datetime.now", ".now(", "utcnow", "time.time", "date.today", "monotonic"):
        assert clock not in source


# --------------------------------------------------------------------------- property


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Arbitrary decoded JSON, including NaN and Infinity (json.loads accepts them)."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
    return st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4),
                        max_leaves=20)


ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=50)  # surrogates and controls included
PLAUSIBLE = st.sampled_from(["production", "octo/app", SHA, "abc1234", "2025-01-15T10:30:00Z", "2019-02-01 13:28:33",
                             "success", "failed", "https://x.example", "234", "", " ", "2025-01-15"])
TEXT = ANY_TEXT | PLAUSIBLE
VALUE = json_values(TEXT)
KNOWN = ["environment", "repository", "service", "version", "commit_sha", "commit", "branch", "status", "source",
         "deployed_at", "build_date", "build_id", "dedup_id", "deployer", "description", "deploy_url",
         "extra_data", "deploy_number"]
NESTED = st.fixed_dictionaries({}, optional={k: VALUE for k in ("sha", "message", "branch", "date", "name",
                                                                 "email", "id", "authoring_date", "author_name")})
SHAPED = st.fixed_dictionaries({}, optional={k: (VALUE | NESTED) if k in ("deployer", "commit") else VALUE | PLAUSIBLE
                                              for k in KNOWN})
NOWS = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.none() | st.just(timezone.utc) | st.just(timezone(timedelta(hours=-7))))


@st.composite
def cases(draw: st.DrawFn) -> tuple[Any, Any]:
    """Draw a parser and a body: arbitrary JSON, a body of known keys, or a valid body with a few fields changed."""
    parser = draw(st.sampled_from(ALL))
    overlay = st.dictionaries(st.sampled_from(KNOWN), VALUE | PLAUSIBLE | NESTED, max_size=3)
    payload = draw(st.one_of(VALUE, SHAPED, overlay.map(lambda extra: {**BASE[parser], **extra})))
    return parser, payload


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), now=NOWS)
def test_parsers_return_a_report_or_raise_invalid_report(case, now):
    """For any JSON value, a parser returns a sound DeployReport or raises InvalidReport, nothing else."""
    parser, payload = case
    try:
        report = parser(payload, now)
    except InvalidReport as error:
        assert error.fields and all(isinstance(k, str) and isinstance(v, str) and v for k, v in error.fields.items())
        assert set(error.codes) == set(error.fields)
        return
    assert isinstance(report, DeployReport)
    assert report.format == ids(parser)
    assert report.status in df.STATUSES
    assert report.deployed_at.tzinfo is timezone.utc
    assert report.environment and (report.repository or report.service or parser is parse_pulse)
    assert report.sha is None or (report.sha == report.sha.lower() and 7 <= len(report.sha) <= 40)
    json.dumps(report.to_dict(), allow_nan=False).encode("utf-8")  # storable: no NaN, no lone surrogates
