"""Rendering environment names and URLs from templates."""

import pytest

from workers.policy.config import render_template, render_url

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("template", "facts", "expected"),
    [
        ("pr-{number}", {"number": 42}, "pr-42"),
        ("branch-{branch}", {"branch": "feature/x"}, "branch-feature-x"),
        ("branch-{branch}", {"branch": "refs/heads/feature/x"}, "branch-feature-x"),
        ("b-{branch}", {"branch": "team//fix it!"}, "b-team-fix-it"),
        ("b-{branch}", {"branch": "release/1.2_rc"}, "b-release-1.2_rc"),
        ("{repo}-{short_sha}", {"repo": "octo/hello-world", "sha": SHA}, "hello-world-0123456"),
        ("sha-{sha}", {"sha": SHA}, f"sha-{SHA}"),
        ("static", {}, "static"),
        ("x{{y}}-{number}", {"number": 1}, "x{y}-1"),
    ],
    ids=["number", "slash", "full-ref", "odd-chars", "dots-kept", "repo-short-sha", "full-sha", "no-placeholder", "escaped-brace"],
)
def test_render_environment_names(template, facts, expected):
    """Placeholders are filled and values made safe for environment names."""
    assert render_template(template, **facts) == expected


def test_long_names_are_cut_to_255_with_a_distinguishing_suffix():
    """Two long branch names that share a prefix still get different environments."""
    a = render_template("branch-{branch}", branch="x" * 300 + "a")
    b = render_template("branch-{branch}", branch="x" * 300 + "b")
    assert len(a) == len(b) == 255
    assert a != b


@pytest.mark.parametrize(
    ("template", "facts", "expected"),
    [
        ("https://pr-{number}.example.com", {"number": 7}, "https://pr-7.example.com"),
        ("https://{branch}.{repo}.example.com", {"branch": "Feature/X_y", "repo": "o/My.Repo"}, "https://feature-x-y.my-repo.example.com"),
    ],
    ids=["number", "dns-safe"],
)
def test_render_urls(template, facts, expected):
    """URL values become lower-case DNS labels."""
    assert render_url(template, **facts) == expected


@pytest.mark.parametrize(
    ("template", "facts"),
    [("pr-{number}", {}), ("{bogus}", {"number": 1})],
    ids=["missing-value", "unknown-placeholder"],
)
def test_render_refuses_what_it_cannot_fill(template, facts):
    """A placeholder without a value is a programming error, not a silent empty string."""
    with pytest.raises(ValueError):
        render_template(template, **facts)
