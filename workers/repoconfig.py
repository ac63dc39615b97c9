"""Each repository's `.github/slipway.yml`: fetched from the default branch, cached, validated, reported."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select

from models import RepoConfig as ConfigRow
from models.base import utcnow
from models.db import Prepared, autocommit, run, upsert
from slipway.runtime import Runtime
from workers.github import Repo
from workers.policy import CONFIG_PATH, RepoConfig, config_status, merge_config, parse_config
from workers.policy.errors import ConfigError

log = logging.getLogger(__name__)


def server_defaults(rt: Runtime) -> RepoConfig | None:
    """SLIPWAY_CONFIG, parsed once per process (an invalid file is an operator error: it fails loudly)."""
    if "server_config" not in rt.extras:
        path: Path | None = rt.settings.slipway_config
        rt.extras["server_config"] = parse_config(path.read_text()) if path else None
    return rt.extras["server_config"]


_UNREAD = object()


def load(rt: Runtime, repo: Repo, default_branch: str, *, refresh: bool = False,
         status_sha: str | None = None, cached: Any = _UNREAD) -> RepoConfig:
    """The repository's effective configuration; the last good file stays in force while the new one is invalid.

    `cached`: the cached row (good_text, error) or None, when the caller has just read it."""
    row = cached
    if row is _UNREAD:
        with autocommit(rt.engine) as conn:
            row = run(conn, _config_statement(), {"b_repository": repo.full_name}).first()
    if row is None or refresh:
        row = _fetch(rt, repo, default_branch, status_sha, previous=row)
    return effective(rt, row.good_text)


@functools.cache
def _config_statement() -> Prepared:
    """The cached file's good text and error (what load and _fetch use), built once: every push reads it."""
    t = ConfigRow.__table__.c
    return Prepared(select(t.good_text, t.error).where(t.repository == bindparam("b_repository")))


def effective(rt: Runtime, good_text: str | None) -> RepoConfig:
    """The configuration a file's text gives over the server defaults, parsed once per text in this process
    (parsing YAML and validating it cost more than the rest of a push's own work; the models are frozen)."""
    cache: dict[str | None, RepoConfig] = rt.extras.setdefault("effective_configs", {})
    cfg = cache.get(good_text)
    if cfg is None:
        if len(cache) >= 1024:  # many repositories: start over rather than grow without bound
            cache.clear()
        cfg = cache[good_text] = merge_config(server_defaults(rt), parse_config(good_text) if good_text else None)
    return cfg


def _fetch(rt: Runtime, repo: Repo, default_branch: str, status_sha: str | None, previous: object) -> ConfigRow:
    """Read the file now, keep it, and tell the author on the commit when it is invalid (or fixed)."""
    text = repo.file_text(CONFIG_PATH, ref=default_branch)
    error: ConfigError | None = None
    try:
        if text is not None:
            parse_config(text)
    except ConfigError as exc:
        error = exc
    good = (previous.good_text if previous is not None else None) if error else text  # type: ignore[attr-defined]
    values = {"repository": repo.full_name, "text": text, "good_text": good,
              "error": str(error) if error else None, "fetched_at": utcnow()}
    with rt.engine.begin() as conn:
        upsert(conn, ConfigRow, values, keys=["repository"], update=["text", "good_text", "error", "fetched_at"])
    if status_sha and (error or (previous is not None and previous.error)):  # type: ignore[attr-defined]
        state, description = config_status(error)
        repo.create_commit_status(status_sha, state=state, context="slipway/config", description=description)
    if error:
        log.warning("invalid repository configuration", extra={"repository": repo.full_name, "error": str(error)})
    return ConfigRow(**values)
