"""Layering: repository file over server defaults over built-in defaults."""

from datetime import timedelta

import pytest

from workers.policy.config import BUILTIN_DEFAULTS, merge_config, parse_config

SERVER = parse_config(
    """\
previews:
  url: "https://pr-{number}.{repo}.previews.example.com"
  ttl: 3d
environments:
  live:
    on: release
provisioner:
  kind: http
  url: https://deployer.example.com/hook
"""
)


@pytest.mark.parametrize(
    ("server", "repo_text", "check"),
    [
        pytest.param(None, None, lambda c: c == BUILTIN_DEFAULTS, id="nothing-is-builtin"),
        pytest.param(SERVER, None, lambda c: set(c.environments) == {"live"}, id="server-replaces-environments"),
        pytest.param(None, "", lambda c: c == BUILTIN_DEFAULTS, id="empty-repo-file-is-builtin"),
        pytest.param(SERVER, "", lambda c: c.previews.ttl == timedelta(days=3), id="empty-repo-file-keeps-server"),
        pytest.param(
            SERVER,
            "previews:\n  labels: [preview]\n",
            lambda c: c.previews.labels == ("preview",) and c.previews.url.startswith("https://pr-{number}.{repo}"),
            id="previews-merge-key-by-key",
        ),
        pytest.param(
            SERVER,
            "previews:\n  ttl: 1d\n",
            lambda c: c.previews.ttl == timedelta(days=1) and c.previews.environment == "pr-{number}",
            id="repo-key-beats-server-key",
        ),
        pytest.param(
            SERVER,
            "environments:\n  staging:\n    on: push\n",
            lambda c: set(c.environments) == {"staging"},
            id="repo-environments-replace-server-ones",
        ),
        pytest.param(SERVER, "environments: {}\n", lambda c: c.environments == {}, id="repo-turns-environments-off"),
        pytest.param(
            SERVER,
            "provisioner:\n  kind: workflow_dispatch\n  workflow: deploy.yml\n",
            lambda c: c.provisioner.url is None and c.provisioner.kind == "workflow_dispatch",
            id="provisioner-replaced-whole",
        ),
        pytest.param(SERVER, "previews:\n  enabled: false\n", lambda c: c.provisioner.kind == "http", id="unset-sections-from-server"),
        pytest.param(
            None,
            "branches:\n  - pattern: 'feature/*'\n",
            lambda c: c.branches[0].environment == "branch-{branch}" and "staging" in c.environments,
            id="repo-over-builtin",
        ),
    ],
)
def test_merge_precedence(server, repo_text, check):
    """Each layer replaces what it sets; previews merge key by key, other sections whole."""
    repo = parse_config(repo_text) if repo_text is not None else None
    assert check(merge_config(server, repo))


def test_same_named_environment_is_not_merged_with_the_lower_one():
    """A repository's `production` does not inherit the server's freeze for `production`."""
    server = parse_config("environments:\n  production:\n    on: release\n    freeze: ['Fri 16:00 - Mon 08:00 UTC']\n")
    repo = parse_config("environments:\n  production:\n    on: release\n")
    assert merge_config(server, repo).environments["production"].freeze == ()


def test_merge_does_not_change_its_inputs():
    """Merging builds a new configuration; the layers and the built-in defaults stay as they were."""
    before = BUILTIN_DEFAULTS.model_dump()
    merge_config(SERVER, parse_config("previews:\n  drafts: true\n"))
    assert BUILTIN_DEFAULTS.model_dump() == before
    assert SERVER.previews.drafts is False
