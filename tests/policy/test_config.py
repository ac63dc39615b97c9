"""Parsing `.github/slipway.yml`: values, defaults and errors with line numbers."""

from datetime import timedelta

import pytest

from workers.policy.config import (
    BUILTIN_DEFAULTS,
    RepoConfig,
    config_status,
    format_duration,
    parse_config,
    parse_duration,
    touches_config,
)
from workers.policy.errors import ConfigError
from workers.policy.freeze import WeeklyWindow

SPEC_EXAMPLE = """\
previews:
  enabled: true
  environment: "pr-{number}"
  url: "https://pr-{number}.preview.example.com"
  labels: []
  drafts: false
  forks: false
  required_checks: []
  ttl: 7d
environments:
  staging:
    on: push
    branch: main
    required_checks: [test, lint]
  production:
    on: release
    prereleases: false
    required_checks: ["*"]
    freeze: ["Fri 16:00 - Mon 08:00 Europe/Berlin"]
    rollback_on_failure: true
branches:
  - pattern: "feature/*"
    environment: "branch-{branch}"
provisioner:
  kind: deployment
  workflow: deploy.yml
  url: "https://deployer.internal.example.com/hooks/slipway"
"""


def test_spec_example_parses_with_every_value():
    """The example file of SPEC section 5 is valid and read as written."""
    cfg = parse_config(SPEC_EXAMPLE)
    assert cfg.previews.url == "https://pr-{number}.preview.example.com"
    assert cfg.previews.ttl == timedelta(days=7)
    assert cfg.environments["staging"].branch == "main"
    assert cfg.environments["staging"].required_checks == ("test", "lint")
    production = cfg.environments["production"]
    assert production.on == "release" and production.rollback_on_failure
    assert isinstance(production.freeze[0], WeeklyWindow)
    assert cfg.branches[0].pattern == "feature/*"
    assert cfg.provisioner.workflow == "deploy.yml"


@pytest.mark.parametrize(
    "text", ["", "\n", "# only a comment\n", "---\n"], ids=["empty", "newline", "comment", "document-marker"]
)
def test_empty_file_is_the_defaults_with_nothing_set(text):
    """An empty file means the defaults, and sets no key (so merging keeps lower layers)."""
    cfg = parse_config(text)
    assert cfg == BUILTIN_DEFAULTS
    assert cfg.model_fields_set == set()


def test_builtin_defaults_follow_the_spec():
    """Previews for non-draft non-fork PRs as pr-{number}; staging on push; production on release."""
    cfg = BUILTIN_DEFAULTS
    assert (cfg.previews.enabled, cfg.previews.environment, cfg.previews.drafts, cfg.previews.forks) == (
        True,
        "pr-{number}",
        False,
        False,
    )
    assert {name: env.on for name, env in cfg.environments.items()} == {"staging": "push", "production": "release"}
    assert cfg.environments["staging"].branch is None  # None = the repository's default branch
    assert all(env.required_checks == ("*",) for env in cfg.environments.values())
    assert cfg.provisioner.kind == "deployment"


def test_on_key_is_not_read_as_a_yaml_boolean():
    """YAML 1.1 reads a bare `on` as true; the loader keeps it the string "on"."""
    cfg = parse_config("environments:\n  web:\n    on: tag\n    tags: 'v*'\n")
    assert cfg.environments["web"].on == "tag"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("2w", timedelta(weeks=2)),
    ],
    ids=["days", "hours", "minutes", "combined", "weeks"],
)
def test_durations(text, expected):
    """TTLs are written as a number and a unit, and written back the same way."""
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


def test_ttl_null_means_never():
    """`ttl: null` turns expiry off."""
    assert parse_config("previews:\n  ttl: null\n").previews.ttl is None


# (file text, line, reason) for each kind of mistake a user makes.
ERRORS = [
    pytest.param("previews:\n  enabled: true\n labels: [x\n", 3, "invalid YAML", id="syntax-indentation"),
    pytest.param("previews:\n  labels: [a, b\n", 3, "invalid YAML", id="syntax-unclosed-list"),
    pytest.param("previews:\n\tenabled: true\n", 2, "invalid YAML", id="syntax-tab"),
    pytest.param("a: 1\n---\nb: 2\n", 2, "single document", id="two-documents"),
    pytest.param("previews: !!python/object:os.system {}\n", 1, "invalid YAML", id="python-tag"),
    pytest.param("enviroments: {}\n", 1, "enviroments: unknown key (did you mean environments?)", id="unknown-top-key"),
    pytest.param(
        "previews:\n  enabled: true\n  lables: [x]\n", 3, "previews.lables: unknown key (did you mean labels?)", id="unknown-preview-key"
    ),
    pytest.param(
        "environments:\n  staging:\n    on: push\n    rollback: true\n",
        4,
        "environments.staging.rollback: unknown key",
        id="unknown-environment-key",
    ),
    pytest.param(
        "# comment\n\nenvironments:\n  production:\n    on: release\n  staging:\n    on: pushh\n",
        7,
        "environments.staging.on: must be one of push, release, workflow_run, tag",
        id="wrong-trigger",
    ),
    pytest.param("provisioner:\n  kind: ftp\n", 2, "provisioner.kind: must be one of deployment, workflow_dispatch, http", id="wrong-kind"),
    pytest.param("previews:\n  ttl: 7 days\n", 2, "previews.ttl: must be a duration such as 7d, 12h or 30m", id="bad-ttl"),
    pytest.param("previews:\n  ttl: 0d\n", 2, "previews.ttl: must be longer than zero", id="zero-ttl"),
    pytest.param("previews:\n  ttl: 7\n", 2, "previews.ttl: must be a duration", id="ttl-number"),
    pytest.param(
        "environments:\n  production:\n    on: release\n    freeze:\n      - Fri 16:00 - Mon 08:00 UTC\n      - Fry 16:00 - Mon 08:00 UTC\n",
        6,
        "environments.production.freeze[1]: freeze window 'Fry 16:00 - Mon 08:00 UTC': unknown day 'Fry'",
        id="bad-freeze-day",
    ),
    pytest.param(
        "environments:\n  production:\n    on: release\n    freeze: ['Fri 16:00 - Mon 08:00']\n",
        4,
        "missing time zone",
        id="freeze-without-zone",
    ),
    pytest.param("previews:\n  drafts: maybe\n", 2, "previews.drafts: must be true or false", id="not-a-boolean"),
    pytest.param("previews:\n  drafts: true\n  drafts: false\n", 3, "previews.drafts: duplicate key", id="duplicate-key"),
    pytest.param("- a\n- b\n", 1, "the file must be a mapping", id="not-a-mapping"),
    pytest.param("previews:\n", 1, "previews: must be a mapping", id="empty-section"),
    pytest.param("environments:\n  staging:\n    required_checks: test\n", 3, "must be a list", id="checks-not-a-list"),
    pytest.param(
        "environments:\n  staging:\n    on: release\n    branch: main\n",
        4,
        "environments.staging.branch: applies only to on: push or workflow_run",
        id="branch-on-release",
    ),
    pytest.param(
        "environments:\n  staging:\n    prereleases: true\n", 3, "prereleases: applies only to on: release", id="prereleases-on-push"
    ),
    pytest.param("environments:\n  build:\n    on: workflow_run\n", 2, "needs `workflow:`", id="workflow-run-without-workflow"),
    pytest.param("provisioner:\n  kind: http\n", 1, "provisioner: kind http needs `url:`", id="http-without-url"),
    pytest.param("provisioner:\n  kind: workflow_dispatch\n", 1, "needs `workflow:`", id="dispatch-without-workflow"),
    pytest.param("provisioner:\n  kind: http\n  url: ftp://x\n", 3, "provisioner.url: must be an http or https URL", id="url-scheme"),
    pytest.param("previews:\n  environment: 'pr-{nuber}'\n", 2, "unknown placeholder {nuber}", id="unknown-placeholder"),
    pytest.param("previews:\n  environment: 'pr-{number'\n", 2, "bad template", id="unclosed-brace"),
    pytest.param("previews:\n  environment: 'pr-{number:03d}'\n", 2, "takes no format", id="placeholder-format"),
    pytest.param(
        "branches:\n  - pattern: 'feature/*'\n    environment: 'b-{number}'\n",
        3,
        "branches[0].environment: {number} is not available for branch environments",
        id="number-in-branch-template",
    ),
    pytest.param("branches:\n  - environment: 'b-{branch}'\n", 2, "branches[0].pattern: is required", id="branch-without-pattern"),
    pytest.param("environments:\n  '': {}\n", 2, "must not be empty", id="empty-environment-name"),
    pytest.param("previews:\n  labels: ['']\n", 2, "previews.labels[0]: must not be empty", id="empty-label"),
]


@pytest.mark.parametrize(("text", "line", "reason"), ERRORS)
def test_config_errors_name_the_line_and_the_reason(text, line, reason):
    """Every mistake is a ConfigError with the offending line and a precise reason."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.line == line
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"line {line}: ")


def test_first_error_by_line_is_reported():
    """With several mistakes, the topmost one is reported."""
    text = "previews:\n  drafts: maybe\nprovisioner:\n  kind: ftp\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.line == 2


@pytest.mark.timeout(10)
def test_alias_bomb_is_not_expanded():
    """Nested aliases (the "billion laughs") are walked once per node, not expanded."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]" for n in range(1, 12)]
    with pytest.raises(ConfigError) as caught:
        parse_config("\n".join(lines) + "\n")
    assert caught.value.line == 1 and "unknown key" in caught.value.reason


def test_oversized_file_is_refused():
    """A file over the size limit is an error without a line."""
    with pytest.raises(ConfigError) as caught:
        parse_config("# " + "x" * 300_000)
    assert caught.value.line is None and "larger than" in caught.value.reason


def test_config_error_is_a_value_error():
    """ConfigError subclasses ValueError so pydantic validators keep its reason."""
    assert isinstance(ConfigError(3, "x"), ValueError)
    assert str(ConfigError(None, "bad")) == "bad"


def test_config_is_read_only():
    """Parsed configuration cannot be changed by accident."""
    cfg = parse_config("previews:\n  drafts: true\n")
    with pytest.raises(ValueError, match="frozen"):
        cfg.previews.drafts = False  # type: ignore[misc]


@pytest.mark.parametrize("exclude_unset", [False, True], ids=["full", "set-keys-only"])
def test_round_trip_through_json(exclude_unset):
    """A dumped configuration parses back to the same value (for caching the last good one)."""
    cfg = parse_config(SPEC_EXAMPLE)
    again = RepoConfig.model_validate(cfg.model_dump(mode="json", exclude_unset=exclude_unset))
    assert again == cfg


@pytest.mark.parametrize(
    ("ref", "paths", "expected"),
    [
        ("refs/heads/main", [".github/slipway.yml", "README.md"], True),
        ("refs/heads/main", ["README.md"], False),
        ("refs/heads/dev", [".github/slipway.yml"], False),
    ],
    ids=["changed-on-default", "other-file", "other-branch"],
)
def test_touches_config(ref, paths, expected):
    """Only a push to the default branch that changes the file refreshes the cache."""
    assert touches_config(ref, "main", paths) is expected


@pytest.mark.parametrize(
    ("error", "state", "fragment"),
    [(None, "success", "is valid"), (ConfigError(7, "environments.staging.on: must be one of push"), "failure", "line 7: environments")],
    ids=["valid", "invalid"],
)
def test_config_status(error, state, fragment):
    """The slipway/config status names the line and the reason, in at most 140 characters."""
    got_state, description = config_status(error)
    assert got_state == state and fragment in description and len(description) <= 140


def test_nesting_deeper_than_the_limit_is_refused_quickly_with_its_line() -> None:
    """`[[[[...` 100 KB deep is an error at once, not seconds of PyYAML recursion; 64 levels still parse."""
    import time

    from workers.policy.yamlfile import MAX_DEPTH

    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"nested more than {MAX_DEPTH} levels") as info:
        parse_config("previews:\n  labels: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert info.value.line == 2 and time.monotonic() - started < 1.5
    with pytest.raises(ConfigError, match="labels"):  # deep but within the limit: an ordinary type error
        parse_config("previews:\n  labels: " + "[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3) + "\n")
