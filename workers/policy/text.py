"""Small text helpers: glob matching, ref names and length limits."""

from __future__ import annotations

import re
from functools import lru_cache


def is_glob(pattern: str) -> bool:
    """Tell whether a pattern has a wildcard (`*` or `?`)."""
    return "*" in pattern or "?" in pattern


def glob_match(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    """Match text against a glob where only `*` and `?` are special (`*` also matches `/`).

    fnmatch is not used because it treats `[...]` as a character class, and check names such
    as "build [linux]" would then not match themselves.
    """
    return _compile(pattern, ignore_case).fullmatch(text) is not None


def branch_name(ref: str) -> str:
    """Return the short branch name of `refs/heads/x` (a short name is returned as it is)."""
    return ref.removeprefix("refs/heads/")


def shorten(text: str, limit: int) -> str:
    """Cut text to at most `limit` characters, ending with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@lru_cache(maxsize=512)
def _compile(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """Translate a glob into a regular expression."""
    body = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(body, (re.IGNORECASE if ignore_case else 0) | re.DOTALL)
