"""Environment name and URL templates: placeholders {number} {branch} {sha} {short_sha} {repo}."""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Callable

from workers.policy.text import branch_name

PLACEHOLDERS = ("number", "branch", "sha", "short_sha", "repo")
ENVIRONMENT_NAME_MAX = 255


def render_template(
    template: str,
    *,
    number: int | None = None,
    branch: str | None = None,
    sha: str | None = None,
    repo: str | None = None,
) -> str:
    """Render an environment name; values are made safe ("feature/x" -> "feature-x").

    `{repo}` is the repository's name without the owner. Names longer than 255 characters are
    cut and given a hash suffix so that two long branch names still get distinct environments.
    """
    values = _values(number=number, branch=branch, sha=sha, repo=repo)
    name = _render(template, values, _name_safe).strip()
    if len(name) <= ENVIRONMENT_NAME_MAX:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[: ENVIRONMENT_NAME_MAX - 9]}-{digest}"


def render_url(
    template: str,
    *,
    number: int | None = None,
    branch: str | None = None,
    sha: str | None = None,
    repo: str | None = None,
) -> str:
    """Render an `environment_url`; values become lower-case DNS labels ("Feature/X" -> "feature-x")."""
    return _render(template, _values(number=number, branch=branch, sha=sha, repo=repo), _dns_safe)


def check_template(template: str, allowed: tuple[str, ...], where: str) -> str:
    """Return the template if it uses only bare placeholders from `allowed`, else raise ValueError."""
    try:
        parsed = [item for item in string.Formatter().parse(template) if item[1] is not None]
    except ValueError as exc:
        raise ValueError(f"bad template: {exc} (write a literal brace as {{{{ or }}}})") from None
    known = ", ".join("{" + name + "}" for name in allowed)
    for _literal, field, spec, conversion in parsed:
        if field not in allowed:
            if field in PLACEHOLDERS:
                raise ValueError(f"{{{field}}} is not available {where} (use {known})")
            raise ValueError(f"unknown placeholder {{{field}}} (use {known})")
        if spec or conversion:
            raise ValueError(f"placeholder {{{field}}} takes no format or conversion")
    return template


def _values(*, number: int | None, branch: str | None, sha: str | None, repo: str | None) -> dict[str, str | None]:
    """Return the raw placeholder values."""
    return {
        "number": str(number) if number is not None else None,
        "branch": branch_name(branch) if branch is not None else None,
        "sha": sha,
        "short_sha": sha[:7] if sha else None,
        "repo": repo.rsplit("/", 1)[-1] if repo else None,
    }


def _render(template: str, values: dict[str, str | None], make_safe: Callable[[str], str]) -> str:
    """Fill the placeholders with safe values; a placeholder without a value is a programming error."""
    parts = []
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        parts.append(literal)
        if field is None:
            continue
        if field not in values:
            raise ValueError(f"unknown placeholder {{{field}}} in {template!r}")
        value = values[field]
        if value is None:
            raise ValueError(f"template {template!r} needs a value for {{{field}}}")
        parts.append(make_safe(value))
    return "".join(parts)


def _name_safe(value: str) -> str:
    """Keep letters, digits, `.`, `_` and `-`; everything else becomes one `-`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-")


def _dns_safe(value: str) -> str:
    """Make a value usable as a DNS label (lower case, letters, digits and `-`, at most 63)."""
    return re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")[:63].rstrip("-")
