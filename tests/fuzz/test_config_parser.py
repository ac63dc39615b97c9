"""Fuzzing `.github/slipway.yml` parsing (workers.policy.parse_config) with arbitrary and YAML-ish text.

Property: parse_config returns a RepoConfig or raises ConfigError (with a reason, and a line within the
file when it names one), whatever the text, and quickly: no other exception, no hang, no blow-up.
"""

from __future__ import annotations

import time
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from workers.policy import RepoConfig, parse_config
from workers.policy.errors import ConfigError

KEYS = ["previews", "environments", "branches", "provisioner", "enabled", "environment", "url", "labels", "drafts",
        "forks", "required_checks", "ttl", "on", "branch", "prereleases", "freeze", "rollback_on_failure",
        "workflow", "tags", "pattern", "kind", "staging", "production", "pr-{number}"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
    st.sampled_from(["push", "release", "workflow_run", "tag", "deployment", "workflow_dispatch", "http", "*",
                     "7d", "0s", "-1h", "99999999999d", "pr-{number}", "branch-{branch}", "{repo}-{nope}",
                     "https://pr-{number}.example.com", "http://127.0.0.1/", "Fri 16:00 - Mon 08:00 Europe/Berlin",
                     "Mon 25:00 - Tue 00:00 UTC", "2026-01-01 00:00 - 2025-01-01 00:00 Mars/Olympus", "yes", "on",
                     "~", "", " ", "\t", "feature/*", "[", "{{", "&a", "*a"]))
STRUCTURES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4) |
                          st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), kids, max_size=5),
                          max_leaves=20)
YAML_NOISE = ["\t", ":", "- ", "  ", "\n", "&x ", "*x", "!!python/object:os.system ", "!!binary ", "%YAML 1.1\n",
              "---\n", "...\n", "? ", "|\n", ">\n", "'", '"', "#", "{", "}", "[", "]", ",", "<<: *x\n", "\x00", "\ufeff"]


@st.composite
def yamlish(draw: Any) -> str:
    """A dumped structure (often a plausible config), then a few insertions of YAML syntax."""
    doc = draw(st.one_of(STRUCTURES, st.fixed_dictionaries({}, optional={k: STRUCTURES for k in KEYS[:4]})))
    text = yaml.safe_dump(doc, default_flow_style=draw(st.sampled_from([None, True, False])), allow_unicode=True)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(YAML_NOISE)) + text[at:]
    return text


def _check(text: str) -> None:
    started = time.monotonic()
    try:
        result = parse_config(text)
    except ConfigError as exc:
        assert exc.reason and isinstance(str(exc), str)
        if exc.line is not None:
            assert 1 <= exc.line <= text.count("\n") + 2, (exc.line, text.count("\n"))
    else:
        assert isinstance(result, RepoConfig)
    assert time.monotonic() - started < 3.0, "parse_config took more than 3 s"


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@example(text=LAUGHS)  # "billion laughs": 9^10 nodes if expanded
@example(text="environments:\n  staging: &s\n    on: push\n  production: *s\n  x:\n    <<: *s\n")
@example(text="[" * 50_000 + "]" * 50_000)
@example(text="a:\n" + "  " * 3000 + "b: 1\n")
@example(text="x" * (256 * 1024 + 1))
@example(text="environments: !!python/object/apply:os.system ['true']\n")
@example(text="environments:\n  staging:\n    on: push\n    on: release\n")
@example(text="\x00")
@given(text=st.one_of(st.text(max_size=400), yamlish()))
def test_parse_config_returns_a_config_or_raises_config_error(text: str) -> None:
    """Arbitrary text and mangled YAML: a RepoConfig or a ConfigError, within 3 s."""
    _check(text)
