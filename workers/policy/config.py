"""The repository configuration file `.github/slipway.yml`: model, parser, defaults, merge.

Three layers make a repository's configuration (SPEC section 5): the built-in defaults, the
server-wide defaults file (`SLIPWAY_CONFIG`, same format) and the repository's own file.
`merge_config` lays them over each other; see its docstring for what "over" means per section.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from workers.policy.errors import ConfigError
from workers.policy.freeze import EXAMPLE as FREEZE_EXAMPLE
from workers.policy.freeze import FreezeWindow, parse_freeze_window
from workers.policy.templates import ENVIRONMENT_NAME_MAX, PLACEHOLDERS, check_template
from workers.policy.templates import render_template as render_template  # re-exported: config API
from workers.policy.templates import render_url as render_url  # re-exported: config API
from workers.policy.text import branch_name, shorten
from workers.policy.yamlfile import KeyPath, dotted, key_lines, line_of, load_yaml

CONFIG_PATH = ".github/slipway.yml"
MAX_CONFIG_BYTES = 256 * 1024
Trigger = Literal["push", "release", "workflow_run", "tag"]
ProvisionerKind = Literal["deployment", "workflow_dispatch", "http"]

# Keys of an environment that only mean something for some triggers; setting one elsewhere is
# almost always a mistake (e.g. `prereleases` on an environment that forgot `on: release`).
_ONLY_FOR: dict[str, tuple[str, ...]] = {
    "branch": ("push", "workflow_run"),
    "prereleases": ("release",),
    "workflow": ("workflow_run",),
    "tags": ("tag", "release"),
}
_DURATION = re.compile(r"(\d+)([smhdw])")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# ---- value types -----------------------------------------------------------------------------


def parse_duration(value: object) -> timedelta:
    """Parse a TTL such as "7d", "12h", "30m" or "1d12h" (units s, m, h, d, w)."""
    if isinstance(value, timedelta):
        return value
    text = value.strip() if isinstance(value, str) else ""
    if not text or _DURATION.sub("", text):
        raise ValueError("must be a duration such as 7d, 12h or 30m")
    total = sum((timedelta(**{_DURATION_UNITS[u]: int(n)}) for n, u in _DURATION.findall(text)), timedelta())
    if total <= timedelta(0):
        raise ValueError("must be longer than zero")
    return total


def format_duration(value: timedelta) -> str:
    """Write a duration back in the file's notation ("7d", "90m")."""
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _freeze_window(value: object) -> FreezeWindow:
    """Validate one freeze entry (a string) into a parsed window."""
    if isinstance(value, FreezeWindow):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a string such as {FREEZE_EXAMPLE}")
    return parse_freeze_window(value)


def _template_checker(allowed: tuple[str, ...], where: str) -> AfterValidator:
    """Build a validator that accepts only bare placeholders from `allowed`."""
    return AfterValidator(lambda template: check_template(template, allowed, where))


def _http_url(value: str) -> str:
    """Accept only http and https URLs."""
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http or https URL")
    return value


NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
EnvironmentName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=ENVIRONMENT_NAME_MAX)
]
Duration = Annotated[timedelta, PlainValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
FreezeEntry = Annotated[
    FreezeWindow, PlainValidator(_freeze_window), PlainSerializer(lambda w: w.text, return_type=str)
]
PreviewTemplate = Annotated[NonEmpty, _template_checker(PLACEHOLDERS, "for previews")]
# Branch environments are also torn down from `delete` events, which carry no sha: only names
# that the branch alone determines can be found again.
BranchTemplate = Annotated[NonEmpty, _template_checker(("branch", "repo"), "for branch environments")]
UrlTemplate = Annotated[NonEmpty, AfterValidator(_http_url), _template_checker(PLACEHOLDERS, "for previews")]


# ---- models ------------------------------------------------------------------------------------


class _Section(BaseModel):
    """Base of every section: unknown keys are errors, values are read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PreviewConfig(_Section):
    """`previews:` preview environments for pull requests."""

    enabled: bool = True
    environment: PreviewTemplate = "pr-{number}"
    url: UrlTemplate | None = None
    labels: tuple[NonEmpty, ...] = ()
    drafts: bool = False
    forks: bool = False
    required_checks: tuple[NonEmpty, ...] = ()
    ttl: Duration | None = timedelta(days=7)


class EnvironmentConfig(_Section):
    """One entry of `environments:`: what deploys there and under which gate."""

    on: Trigger = "push"
    branch: NonEmpty | None = None
    prereleases: bool = False
    required_checks: tuple[NonEmpty, ...] = ("*",)
    freeze: tuple[FreezeEntry, ...] = ()
    rollback_on_failure: bool = False
    workflow: NonEmpty | None = None
    tags: NonEmpty | None = None

    @field_validator(*_ONLY_FOR)
    @classmethod
    def _fits_trigger(cls, value: object, info: ValidationInfo) -> object:
        """Reject a key that the environment's `on:` ignores (its default value is harmless)."""
        name = info.field_name or ""
        allowed, trigger = _ONLY_FOR[name], info.data.get("on")
        if trigger is not None and trigger not in allowed and value != cls.model_fields[name].default:
            raise ValueError(f"applies only to on: {' or '.join(allowed)} (this environment has on: {trigger})")
        return value

    @model_validator(mode="after")
    def _workflow_named(self) -> EnvironmentConfig:
        """Require the workflow's name for `on: workflow_run`."""
        if self.on == "workflow_run" and self.workflow is None:
            raise ValueError("on: workflow_run needs `workflow:` (the workflow's name or file name)")
        return self


class BranchConfig(_Section):
    """One entry of `branches:`: branches matching `pattern` get their own environment."""

    pattern: NonEmpty
    environment: BranchTemplate = "branch-{branch}"
    required_checks: tuple[NonEmpty, ...] = ()


class ProvisionerConfig(_Section):
    """`provisioner:` who carries a deployment out."""

    kind: ProvisionerKind = "deployment"
    workflow: NonEmpty | None = None
    url: Annotated[NonEmpty, AfterValidator(_http_url)] | None = None

    @model_validator(mode="after")
    def _complete(self) -> ProvisionerConfig:
        """Require the workflow for workflow_dispatch and the URL for http."""
        if self.kind == "workflow_dispatch" and self.workflow is None:
            raise ValueError("kind workflow_dispatch needs `workflow:` (e.g. deploy.yml)")
        if self.kind == "http" and self.url is None:
            raise ValueError("kind http needs `url:`")
        return self


def _builtin_environments() -> dict[str, EnvironmentConfig]:
    """Return the built-in environments: staging on push, production on release."""
    return {"staging": EnvironmentConfig(on="push"), "production": EnvironmentConfig(on="release")}


class RepoConfig(_Section):
    """The whole `.github/slipway.yml`; field defaults are the built-in defaults."""

    previews: PreviewConfig = PreviewConfig()
    environments: dict[EnvironmentName, EnvironmentConfig] = Field(default_factory=_builtin_environments)
    branches: tuple[BranchConfig, ...] = ()
    provisioner: ProvisionerConfig = ProvisionerConfig()


BUILTIN_DEFAULTS = RepoConfig()


# ---- parsing -----------------------------------------------------------------------------------


def parse_config(text: str) -> RepoConfig:
    """Parse the file's text; raise ConfigError with the line and the reason.

    An empty file (or one with only comments) gives the defaults, with no key set.
    """
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise ConfigError(None, f"the file is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    node, data = load_yaml(text)
    if node is None or data is None:  # no document, only comments, or a bare `---`
        return RepoConfig()
    lines = key_lines(node)
    try:
        return RepoConfig.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, lines) from None


_TYPE_REASONS = {
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most 255 characters",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "missing": "is required",
}


def _first_error(exc: ValidationError, lines: dict[KeyPath, int]) -> ConfigError:
    """Turn the first (topmost) validation error into a ConfigError."""
    found = [(line_of(tuple(err["loc"]), lines), _reason(err)) for err in exc.errors()]
    line, reason = min(found, key=lambda item: item[0])
    return ConfigError(line, reason)


def _reason(err: Any) -> str:
    """Write one pydantic error as `path: reason` in the file's own words."""
    kind, loc = err["type"], tuple(err["loc"])
    if kind == "extra_forbidden":
        reason = "unknown key" + _suggestion(loc)
    elif kind == "literal_error":
        reason = "must be one of " + ", ".join(re.findall(r"'([^']*)'", err["ctx"]["expected"]))
    elif kind in ("value_error", "assertion_error"):
        reason = str(err["ctx"]["error"])
    elif not loc and kind in _TYPE_REASONS:
        return "the file must be a mapping with the keys " + ", ".join(RepoConfig.model_fields)
    else:
        reason = _TYPE_REASONS.get(kind, err["msg"])
    return f"{dotted(loc)}: {reason}" if loc else reason


def _suggestion(loc: KeyPath) -> str:
    """Suggest the known key closest to an unknown one."""
    model = _model_at(loc[:-1])
    known = list(model.model_fields) if model else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(known)})" if known else ""


def _model_at(path: KeyPath) -> type[BaseModel] | None:
    """Return the section model that holds the keys found at `path`."""
    node: Any = RepoConfig
    for part in path:
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            node = field.annotation if field else None
        else:  # a mapping value or a list item: step into the item type
            node = get_args(node)[-1] if get_args(node) else None
        while get_origin(node) is not None and type(None) in get_args(node):  # X | None
            node = next(arg for arg in get_args(node) if arg is not type(None))
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


# ---- merging -----------------------------------------------------------------------------------

# Sections merged key by key; every other top-level section is replaced as a whole.
_MERGED_BY_KEY = frozenset({"previews"})


def merge_config(server_defaults: RepoConfig | None, repo: RepoConfig | None) -> RepoConfig:
    """Lay the repository file over the server defaults over the built-in defaults.

    Only keys that a layer's file sets count ("over" = replaces), per section:
    - `previews`: key by key: a repository that sets only `labels` keeps the server's `url`.
    - `environments`: the whole mapping is replaced, so a repository that lists environments
      gets exactly those (the built-in staging/production do not linger and deploy twice);
      `environments: {}` turns all of them off. A listed environment's unset keys take the
      field defaults, not the lower layer's environment of the same name.
    - `branches`: the whole list is replaced.
    - `provisioner`: replaced as a whole, so a provisioner is never half server, half repository.
    """
    merged = BUILTIN_DEFAULTS
    for layer in (server_defaults, repo):
        if layer is not None:
            merged = _overlay(merged, layer)
    return merged


def _overlay(base: BaseModel, top: BaseModel) -> Any:
    """Return base with the keys that top set."""
    update = {}
    for name in top.model_fields_set:
        value = getattr(top, name)
        update[name] = _overlay(getattr(base, name), value) if name in _MERGED_BY_KEY else value
    return base.model_copy(update=update)


def touches_config(ref: str, default_branch: str, changed_paths: Iterable[str]) -> bool:
    """Tell whether a push changed the configuration file on the default branch."""
    return branch_name(ref) == default_branch and CONFIG_PATH in set(changed_paths)


def config_status(error: ConfigError | None) -> tuple[str, str]:
    """Return the (state, description) of the `slipway/config` commit status."""
    if error is None:
        return "success", f"{CONFIG_PATH} is valid"
    return "failure", shorten(f"{CONFIG_PATH} {error}", 140)
