"""Parse the generic deploy webhook's four request shapes and build their answers.

PURE: no Flask, no database, no clock. The caller decodes the JSON body, passes
the current time as ``now`` and stores the returned :class:`DeployReport`.

Shapes (SPEC section 6 and the documents in ``seeds/``):

- ``canonical``  ``POST /api/v1/deployments``          SPEC section 6's table
- ``pulse``      ``POST /api/deployments``             Laravel Pulse deployment tracking
- ``vibe``       ``POST /api/v1/deployments/webhook``  Vibe Monitor deployment webhooks
- ``opslevel``   ``POST /integrations/deploy/<key>``   OpsLevel deploy integration

Each shape validates by its own document's rules. Where a document is silent,
Slipway's storage limits (the canonical table) apply; the comment at each such
choice says so. Every parser either returns a ``DeployReport`` or raises
``InvalidReport`` naming every invalid field by the name the client sent.
Rules Slipway adds to every shape, because the record is stored and shown:
surrounding whitespace is stripped (Laravel trims all input, and CI templates
often leave a trailing newline); ``null`` and ``""`` mean "not sent"; control
characters are refused in identifiers, NUL and other C0/C1 controls in free text
(PostgreSQL text cannot hold NUL), and lone surrogates everywhere (not UTF-8).
Error messages never echo the rejected value.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

Format = Literal["canonical", "pulse", "vibe", "opslevel"]

STATUSES = ("pending", "queued", "in_progress", "success", "failure", "error", "cancelled", "inactive")
CANONICAL_STATUSES = (*STATUSES[:4], "failed", *STATUSES[4:])
VIBE_STATUSES = ("pending", "in_progress", "success", "failed", "cancelled")
# Vibe lists its sources exactly like its statuses, and its own GitLab example
# sends "webhook" rather than "gitlab", so the list is read as an enumeration.
VIBE_SOURCES = ("webhook", "github_actions", "argocd", "jenkins")
DEFAULT_STATUS = "success"
DEFAULT_SOURCE = "webhook"
# OpsLevel's document names no default environment; a deploy reported without
# one is most often a production deploy, and DORA figures count production.
OPSLEVEL_DEFAULT_ENVIRONMENT = "production"

# Limits from SPEC section 6; the ones marked "chosen" are Slipway's where no document speaks.
MAX_ENVIRONMENT = 50
MAX_REPOSITORY = 140
MAX_SERVICE = 100
MAX_VERSION = 100
MAX_BRANCH = 255
MAX_SOURCE = 50
MAX_BUILD_ID = 50
MAX_DEDUP_ID = 100
MAX_DESCRIPTION = 1000
MAX_EXTRA_DATA_BYTES = 16 * 1024
MAX_EXTRA_DATA_DEPTH = 32  # chosen: deep enough for CI metadata, shallow enough to walk safely
MAX_NAME = 255  # chosen: deployer/committer names and ids
MAX_EMAIL = 254  # chosen: RFC 5321's longest usable address
MAX_URL = 2048  # chosen: what browsers and proxies reliably carry
MAX_COMMIT_MESSAGE = 10_000  # chosen: longer messages are cut, not refused (display text)
MAX_COMMIT_SHA_TEXT = 255  # chosen: OpsLevel's commit.sha has no documented format
MAX_DEPLOY_NUMBER = 2**63 - 1  # BIGINT

_MISSING: Any = object()
_HEX_SHA = re.compile(r"[0-9a-fA-F]{7,40}")
_FULL_SHA = re.compile(r"[0-9a-fA-F]{40}")
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+")
_DIGITS = re.compile(r"[0-9]{1,19}")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_IDENT_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_DATETIME = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"(?:[Tt ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?)?"
    r"(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?)?",
    re.ASCII,
)
_MAX_DATETIME_TEXT = 40  # longest accepted form is 35 characters


class InvalidReport(ValueError):
    """A deploy report that breaks its shape's rules; ``fields`` maps each sent field name to why."""

    def __init__(self, fields: Mapping[str, str], codes: Mapping[str, str] | None = None) -> None:
        self.fields: dict[str, str] = dict(fields)
        # Machine codes (pydantic's error type names) so each shape can answer in its own words.
        self.codes: dict[str, str] = {f: (codes or {}).get(f, "value_error") for f in self.fields}
        super().__init__("; ".join(f"{name}: {why}" for name, why in self.fields.items()))


@dataclasses.dataclass(frozen=True, slots=True)
class DeployReport:
    """One reported deployment, normalised from any of the four request shapes."""

    environment: str
    repository: str | None
    service: str | None
    version: str | None
    sha: str | None
    ref: str | None
    status: str
    source: str
    deployed_at: datetime
    build_id: str | None
    dedup_id: str | None
    deployer: dict[str, str | None] | None
    description: str | None
    deploy_url: str | None
    commit: dict[str, str | None] | None
    extra_data: dict[str, Any] | None
    deploy_number: int | None
    format: Format

    @property
    def branch(self) -> str | None:
        """Return the deployed branch (the same value as ``ref``)."""
        return self.ref

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values (``deployed_at`` as ISO 8601 UTC)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["deployed_at"] = _iso(self.deployed_at)
        return out


# --------------------------------------------------------------------------- checking


class _Checker:
    """Collect every field error of one request body, first error per field."""

    def __init__(self, body: Any) -> None:
        if not isinstance(body, dict):
            # One error for the whole body: no field can be read from a list or a scalar.
            raise InvalidReport({"body": "must be a JSON object"}, {"body": "dict_type"})
        self.body: dict[str, Any] = body
        self.errors: dict[str, str] = {}
        self.codes: dict[str, str] = {}

    def get(self, key: str) -> Any:
        """Return the body's value for ``key``, or the missing marker."""
        return self.body.get(key, _MISSING)

    def fail(self, name: str, code: str, message: str) -> None:
        """Record ``message`` for ``name`` unless that field already has an error."""
        if name not in self.errors:
            self.errors[name] = message
            self.codes[name] = code

    def done(self) -> None:
        """Raise ``InvalidReport`` if any field was invalid."""
        if self.errors:
            raise InvalidReport(self.errors, self.codes)

    def absent(self, name: str, required: bool) -> None:
        """Report a required field that was not sent; return None for an optional one."""
        if required:
            self.fail(name, "missing", "is required")
        return None

    def string(self, name: str, value: Any, *, required: bool = False) -> str | None:
        """Return the stripped string, None when not sent, or record a type error."""
        if value is _MISSING or value is None:
            return self.absent(name, required)
        if not isinstance(value, str):
            self.fail(name, "string_type", "must be a string")
            return None
        value = value.strip()
        return value if value else self.absent(name, required)

    def ident(self, name: str, value: Any, max_len: int, *, required: bool = False) -> str | None:
        """Return an identifier-like string (no control or format characters)."""
        text = self.string(name, value, required=required)
        if text is None:
            return None
        if len(text) > max_len:
            self.fail(name, "string_too_long", f"must be at most {max_len} characters")
            return None
        if _SURROGATE.search(text):
            self.fail(name, "value_error", "must not contain unpaired surrogates (invalid Unicode)")
            return None
        if any(unicodedata.category(ch) in _IDENT_BAD_CATEGORIES for ch in text):
            self.fail(name, "value_error", "must not contain control characters")
            return None
        return text

    def free_text(self, name: str, value: Any, max_len: int, *, truncate: bool = False) -> str | None:
        """Return display text (newlines and tabs allowed); cut or refuse it when too long."""
        text = self.string(name, value)
        if text is None:
            return None
        if len(text) > max_len:
            if not truncate:
                self.fail(name, "string_too_long", f"must be at most {max_len} characters")
                return None
            text = text[:max_len].rstrip()
        if _SURROGATE.search(text):
            self.fail(name, "value_error", "must not contain unpaired surrogates (invalid Unicode)")
            return None
        if _TEXT_CONTROL.search(text):
            self.fail(name, "value_error", "must not contain control characters other than tab and newline")
            return None
        return text

    def sha(self, name: str, value: Any, *, full: bool = False, required: bool = False) -> str | None:
        """Return a lower-case hex commit SHA (7 to 40 digits, or exactly 40 when ``full``)."""
        text = self.string(name, value, required=required)
        if text is None:
            return None
        pattern, rule = (_FULL_SHA, "40") if full else (_HEX_SHA, "7 to 40")
        if not pattern.fullmatch(text):
            self.fail(name, "string_pattern_mismatch", f"must be {rule} hex characters")
            return None
        return text.lower()

    def choice(self, name: str, value: Any, allowed: tuple[str, ...], default: str) -> str | None:
        """Return one of ``allowed`` (``default`` when not sent)."""
        text = self.string(name, value)
        if text is None:
            return None if name in self.errors else default
        if text not in allowed:
            self.fail(name, "enum", "must be one of " + ", ".join(allowed))
            return None
        return text

    def repository(self, name: str, value: Any, *, required: bool = False) -> str | None:
        """Return an ``owner/name`` repository (GitLab's ``group/subgroup/name`` too)."""
        text = self.ident(name, value, MAX_REPOSITORY, required=required)
        if text is None:
            return None
        # Nested GitLab paths are allowed: Vibe's own GitLab example sends CI_PROJECT_PATH.
        segments = text.split("/")
        if not _REPOSITORY.fullmatch(text) or any(s in (".", "..") for s in segments):
            self.fail(name, "string_pattern_mismatch", "must be owner/name (e.g. octo-org/app)")
            return None
        return text

    def when(
        self, name: str, value: Any, *, required: bool = False, default: datetime | None = None,
        date_only: bool = False,
    ) -> datetime | None:
        """Return an aware UTC datetime, or ``default`` when not sent."""
        text = self.string(name, value, required=required)
        if text is None:
            return None if name in self.errors else default
        parsed = _parse_datetime(text, date_only=date_only)
        if parsed is None:
            example = "2025-01-15 or 2025-01-15T10:30:00Z" if date_only else "2025-01-15T10:30:00Z"
            kind = "an ISO 8601 date" if date_only else "an ISO 8601 date and time"
            self.fail(name, "datetime_parsing", f"must be {kind} (e.g. {example})")
        return parsed

    def url(self, name: str, value: Any) -> str | None:
        """Return an http or https URL with a host and no credentials."""
        text = self.ident(name, value, MAX_URL)
        if text is None:
            return None
        problem = _url_problem(text)
        if problem:
            self.fail(name, "url_parsing", problem)
            return None
        return text

    def mapping(self, name: str, value: Any, what: str = "an object") -> dict[str, Any] | None:
        """Return a JSON object, None when not sent, or record a type error."""
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, dict):
            self.fail(name, "dict_type", f"must be {what}")
            return None
        return value

    def deploy_number(self, name: str, value: Any) -> int | None:
        """Return a whole deploy number sent as a JSON number or a string of digits."""
        if value is _MISSING or value is None or value == "":
            return None
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
            number = int(value.strip())
        if number is None or not 0 <= number <= MAX_DEPLOY_NUMBER:
            self.fail(name, "int_parsing", f"must be a whole number from 0 to {MAX_DEPLOY_NUMBER}")
            return None
        return number

    def extra_data(self, name: str, value: Any) -> dict[str, Any] | None:
        """Return an object of plain JSON, at most 16 KiB serialised and 32 levels deep."""
        data = self.mapping(name, value)
        if data is None:
            return None
        problem = _json_tree_problem(data) or _json_size_problem(data)
        if problem:
            self.fail(name, "value_error", problem)
            return None
        return data


def _parse_datetime(text: str, *, date_only: bool) -> datetime | None:
    """Parse ISO 8601 (extended format) to aware UTC; no offset means UTC."""
    match = _DATETIME.fullmatch(text) if len(text) <= _MAX_DATETIME_TEXT else None
    if match is None or (match["h"] is None and not date_only):
        return None
    g = match.groupdict()
    try:
        tz = _parse_offset(g["tz"])
        parsed = datetime(
            int(g["y"]), int(g["mo"]), int(g["d"]),
            int(g["h"] or 0), int(g["mi"] or 0), int(g["s"] or 0),
            int((g["f"] or "0").ljust(6, "0")[:6]), tzinfo=tz,
        )
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # 2025-02-30, 24:00, or year 1 shifted before year 1
        return None


def _parse_offset(text: str | None) -> timezone:
    """Return the UTC offset of ``Z``, ``+HH``, ``+HHMM`` or ``+HH:MM`` (none = UTC)."""
    if text is None or text in ("Z", "z"):
        return timezone.utc
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError("offset out of range")
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _url_problem(text: str) -> str | None:
    """Say what is wrong with a deploy URL, or None when it is a usable http(s) URL."""
    if any(ch.isspace() for ch in text):
        return "must be an http or https URL without spaces"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        return "must be an http or https URL"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "must be an http or https URL"
    if parts.username is not None or parts.password is not None:
        # The URL is shown on the dashboard and in GitHub: never store credentials.
        return "must not contain a user name or password"
    return None


def _json_tree_problem(data: Any) -> str | None:
    """Walk a JSON tree without recursion; say what cannot be stored, or None."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_EXTRA_DATA_DEPTH:
            return f"must not nest deeper than {MAX_EXTRA_DATA_DEPTH} levels"
        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    return "must be plain JSON"
                if _SURROGATE.search(key):
                    return "must not contain unpaired surrogates (invalid Unicode)"
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, str):
            if _SURROGATE.search(node):
                return "must not contain unpaired surrogates (invalid Unicode)"
            if "\x00" in node:  # PostgreSQL's JSONB cannot hold \u0000
                return "must not contain NUL characters"
        elif isinstance(node, float) and not math.isfinite(node):
            # json.loads accepts NaN and Infinity by default; JSON and JSONB do not.
            return "must not contain NaN or Infinity"
        elif node is not None and not isinstance(node, (bool, int, float)):
            return "must be plain JSON"
    return None


def _json_size_problem(data: dict[str, Any]) -> str | None:
    """Refuse extra_data over 16 KiB as compact UTF-8 JSON (how it is stored)."""
    try:
        size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode())
    except ValueError:  # an int too long to print (sys.get_int_max_str_digits)
        return "must be plain JSON"
    if size > MAX_EXTRA_DATA_BYTES:
        return f"must be at most {MAX_EXTRA_DATA_BYTES} bytes as JSON (16 KiB)"
    return None


def _utc(now: datetime) -> datetime:
    """Return ``now`` as aware UTC (a naive ``now`` is taken to be UTC already)."""
    return now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)


def _iso(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with a ``Z``."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- shared objects


def _deployer(c: _Checker, value: Any, *, need_name_or_email: bool) -> dict[str, str | None] | None:
    """Read the deployer object (``name``, ``email``, ``id``)."""
    obj = c.mapping("deployer", value, "an object with name, email or id")
    if obj is None:
        return None
    deployer = {
        "name": c.ident("deployer.name", obj.get("name", _MISSING), MAX_NAME),
        "email": c.ident("deployer.email", obj.get("email", _MISSING), MAX_EMAIL),
        "id": c.ident("deployer.id", obj.get("id", _MISSING), MAX_NAME),
    }
    if any(k in c.errors for k in ("deployer.name", "deployer.email")):
        return None
    if need_name_or_email and not (deployer["name"] or deployer["email"]):
        c.fail("deployer", "missing", "needs a name or an email")
        return None
    # Emails are not checked for shape: neither document states a rule, and
    # OpsLevel's own example carries a mangled "[email protected]".
    return deployer if any(deployer.values()) else None


def _commit_object(c: _Checker, value: dict[str, Any], *, hex_sha: bool) -> dict[str, str | None] | None:
    """Read OpsLevel's commit object; ``hex_sha`` applies the canonical 7-40 hex rule to ``sha``."""

    def field(key: str) -> Any:
        """Return the commit object's value for ``key``, or the missing marker."""
        return value.get(key, _MISSING)

    if hex_sha:
        sha = c.sha("commit.sha", field("sha"))
    else:
        sha = c.ident("commit.sha", field("sha"), MAX_COMMIT_SHA_TEXT)
        sha = sha.lower() if sha and _HEX_SHA.fullmatch(sha) else sha
    # OpsLevel calls these dates, so a date without a time is accepted (midnight UTC).
    date = c.when("commit.date", field("date"), date_only=True)
    authored = c.when("commit.authoring_date", field("authoring_date"), date_only=True)
    # The stored dict has one date: the commit date, else the authoring date.
    moment = date or authored
    commit = {
        "sha": sha,
        "message": c.free_text("commit.message", field("message"), MAX_COMMIT_MESSAGE, truncate=True),
        "branch": c.ident("commit.branch", field("branch"), MAX_BRANCH),
        "date": _iso(moment) if moment else None,
        "author_name": c.ident("commit.author_name", field("author_name"), MAX_NAME),
        "author_email": c.ident("commit.author_email", field("author_email"), MAX_EMAIL),
        "committer_name": c.ident("commit.committer_name", field("committer_name"), MAX_NAME),
        "committer_email": c.ident("commit.committer_email", field("committer_email"), MAX_EMAIL),
    }
    return commit if any(commit.values()) else None


def _commit_dict(**values: str | None) -> dict[str, str | None]:
    """Return a commit dict with every key present."""
    keys = ("sha", "message", "branch", "date", "author_name", "author_email", "committer_name", "committer_email")
    return {key: values.get(key) for key in keys}


def _loose_sha(text: str | None) -> tuple[str | None, dict[str, str | None] | None]:
    """Split a foreign commit value into a hex SHA, or keep it verbatim in a commit dict."""
    if text is None:
        return None, None
    if _HEX_SHA.fullmatch(text):
        return text.lower(), None
    # Pulse only says "max 40 chars": a value that is not a hex SHA is kept, not refused.
    return None, _commit_dict(sha=text)


# --------------------------------------------------------------------------- parsers


def parse_canonical(body: Any, now: datetime) -> DeployReport:
    """Parse the canonical request of ``POST /api/v1/deployments`` (SPEC section 6)."""
    c = _Checker(body)
    environment = c.ident("environment", c.get("environment"), MAX_ENVIRONMENT, required=True)
    repository = c.repository("repository", c.get("repository"))
    service = c.ident("service", c.get("service"), MAX_SERVICE)
    if repository is None and service is None and not {"repository", "service"} & c.errors.keys():
        c.fail("repository", "missing", "is required unless service is given")
    sha, commit = _canonical_commit(c)
    branch = c.ident("branch", c.get("branch"), MAX_BRANCH)
    report = dict(
        environment=environment, repository=repository, service=service,
        version=c.ident("version", c.get("version"), MAX_VERSION),
        sha=sha, ref=branch or (commit or {}).get("branch"),
        status=_normal_status(c.choice("status", c.get("status"), CANONICAL_STATUSES, DEFAULT_STATUS)),
        source=c.ident("source", c.get("source"), MAX_SOURCE) or DEFAULT_SOURCE,
        deployed_at=_canonical_deployed_at(c, now),
        build_id=c.ident("build_id", c.get("build_id"), MAX_BUILD_ID),
        dedup_id=c.ident("dedup_id", c.get("dedup_id"), MAX_DEDUP_ID),
        deployer=_deployer(c, c.get("deployer"), need_name_or_email=False),
        description=c.free_text("description", c.get("description"), MAX_DESCRIPTION),
        deploy_url=c.url("deploy_url", c.get("deploy_url")),
        commit=commit,
        extra_data=c.extra_data("extra_data", c.get("extra_data")),
        deploy_number=None, format="canonical",
    )
    c.done()
    return DeployReport(**report)


def _canonical_commit(c: _Checker) -> tuple[str | None, dict[str, str | None] | None]:
    """Read ``commit_sha`` and ``commit`` (a SHA string alias, or OpsLevel's commit object)."""
    sha = c.sha("commit_sha", c.get("commit_sha"))
    raw = c.get("commit")
    if isinstance(raw, str):
        alias = c.sha("commit", raw)
        if sha and alias and alias != sha:
            c.fail("commit", "value_error", "does not match commit_sha")
        return sha or alias, None
    obj = c.mapping("commit", raw, "a commit SHA string or a commit object")
    commit = _commit_object(c, obj, hex_sha=True) if obj is not None else None
    inner = commit["sha"] if commit else None
    if sha and inner and inner != sha:
        c.fail("commit.sha", "value_error", "does not match commit_sha")
    return sha or inner, commit


def _canonical_deployed_at(c: _Checker, now: datetime) -> datetime:
    """Read ``deployed_at`` or its alias ``build_date`` (deployed_at wins); default ``now``."""
    deployed = c.when("deployed_at", c.get("deployed_at"))
    built = c.when("build_date", c.get("build_date"))
    return deployed or built or _utc(now)


def _normal_status(status: str | None) -> str:
    """Map the accepted spellings onto Slipway's statuses (``failed`` is ``failure``)."""
    if status == "failed":
        return "failure"
    return status or DEFAULT_STATUS


def parse_pulse(body: Any, now: datetime) -> DeployReport:
    """Parse Laravel Pulse's ``POST /api/deployments`` body by its documented rules."""
    c = _Checker(body)
    environment = c.ident("environment", c.get("environment"), MAX_ENVIRONMENT, required=True)
    version = c.ident("version", c.get("version"), MAX_VERSION, required=True)
    raw_commit = c.ident("commit", c.get("commit"), 40, required=True)
    # The document says "ISO 8601 date", so a date without a time is accepted (midnight UTC).
    deployed_at = c.when("build_date", c.get("build_date"), required=True, date_only=True)
    build_id = c.ident("build_id", c.get("build_id"), MAX_BUILD_ID)
    c.done()
    sha, commit = _loose_sha(raw_commit)
    return DeployReport(
        environment=environment, repository=None, service=None, version=version, sha=sha, ref=None,
        # Pulse reports only finished deploys and names no CI system.
        status=DEFAULT_STATUS, source=DEFAULT_SOURCE, deployed_at=deployed_at or _utc(now),
        build_id=build_id, dedup_id=None, deployer=None, description=None, deploy_url=None,
        commit=commit, extra_data=None, deploy_number=None, format="pulse",
    )


def parse_vibe(body: Any, now: datetime) -> DeployReport:
    """Parse Vibe Monitor's ``POST /api/v1/deployments/webhook`` body by its documented rules."""
    c = _Checker(body)
    # Vibe states no lengths; Slipway's storage limits (the canonical table) apply.
    environment = c.ident("environment", c.get("environment"), MAX_ENVIRONMENT, required=True)
    repository = c.repository("repository", c.get("repository"), required=True)
    report = dict(
        environment=environment, repository=repository, service=None, version=None,
        # "Full commit SHA (40 characters)": abbreviated SHAs are refused, as Vibe says.
        sha=c.sha("commit_sha", c.get("commit_sha"), full=True),
        ref=c.ident("branch", c.get("branch"), MAX_BRANCH),
        status=_normal_status(c.choice("status", c.get("status"), VIBE_STATUSES, DEFAULT_STATUS)),
        source=c.choice("source", c.get("source"), VIBE_SOURCES, DEFAULT_SOURCE) or DEFAULT_SOURCE,
        deployed_at=c.when("deployed_at", c.get("deployed_at"), default=_utc(now)),
        build_id=None, dedup_id=None, deployer=None, description=None, deploy_url=None, commit=None,
        extra_data=c.extra_data("extra_data", c.get("extra_data")),
        deploy_number=None, format="vibe",
    )
    c.done()
    return DeployReport(**report)


def parse_opslevel(body: Any, now: datetime) -> DeployReport:
    """Parse OpsLevel's ``POST /integrations/deploy/<key>`` body by its documented rules."""
    c = _Checker(body)
    service = c.ident("service", c.get("service"), MAX_SERVICE, required=True)
    # OpsLevel sets no length: a long merge message is cut to the stored limit, not refused.
    description = c.free_text("description", c.get("description"), MAX_DESCRIPTION, truncate=True)
    if description is None:
        c.absent("description", required=True)
    # "YYYY-MM-DD HH:MM:SS" is the documented form and is read as UTC; ISO 8601 works too.
    deployed_at = c.when("deployed_at", c.get("deployed_at"), required=True)
    obj = c.mapping("commit", c.get("commit"))
    commit = _commit_object(c, obj, hex_sha=False) if obj is not None else None
    sha = commit["sha"] if commit and commit["sha"] and _HEX_SHA.fullmatch(commit["sha"]) else None
    report = dict(
        environment=c.ident("environment", c.get("environment"), MAX_ENVIRONMENT) or OPSLEVEL_DEFAULT_ENVIRONMENT,
        repository=None, service=service, version=None, sha=sha, ref=commit["branch"] if commit else None,
        status=DEFAULT_STATUS, source=DEFAULT_SOURCE, deployed_at=deployed_at or _utc(now),
        build_id=None, dedup_id=c.ident("dedup_id", c.get("dedup_id"), MAX_DEDUP_ID),
        # SPEC section 6 lists deployer as optional; when sent, OpsLevel's rule applies.
        deployer=_deployer(c, c.get("deployer"), need_name_or_email=True),
        description=description, deploy_url=c.url("deploy_url", c.get("deploy_url")), commit=commit,
        extra_data=None, deploy_number=c.deploy_number("deploy_number", c.get("deploy_number")),
        format="opslevel",
    )
    c.done()
    return DeployReport(**report)


PARSERS = {
    "canonical": parse_canonical,
    "pulse": parse_pulse,
    "vibe": parse_vibe,
    "opslevel": parse_opslevel,
}


# --------------------------------------------------------------------------- answers

Answer = tuple[int, dict[str, Any]]


def _field_errors(errors: InvalidReport | Mapping[str, str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """Return (messages, codes) from an InvalidReport or a plain field->message mapping."""
    if isinstance(errors, InvalidReport):
        return errors.fields, errors.codes
    messages = dict(errors or {})
    return messages, {name: "value_error" for name in messages}


def canonical_error(status: int, code: str, message: str, fields: Mapping[str, str] | None = None) -> Answer:
    """Return Slipway's error answer ``{"error": {"code", "message", "fields"}}``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:  # as app.errors.json_error does: "fields" only when there are some
        error["fields"] = dict(fields)
    return status, {"error": error}


def canonical_invalid(error: InvalidReport) -> Answer:
    """Return the canonical 422 answer naming every invalid field."""
    names = ", ".join(error.fields)
    return canonical_error(422, "invalid", f"invalid fields: {names}", error.fields)  # app.errors' 422 code


def pulse_created() -> Answer:
    """Return Pulse's 201 answer."""
    return 201, {"status": "recorded"}


def pulse_error(status: int, errors: InvalidReport | Mapping[str, str] | None = None) -> Answer:
    """Return a Pulse (Laravel) error answer: 401 as its middleware, 422 and 429 as Laravel."""
    if status == 401:
        return 401, {"error": "Unauthorized"}  # the document's ValidateDeploymentToken body
    if status == 429:
        return 429, {"message": "Too Many Attempts."}  # Laravel's ThrottleRequestsException
    if status != 422:
        # The document names no other bodies; Laravel's JSON handler answers {"message": ...}.
        return status, {"message": _REASONS.get(status, "Error")}
    messages, _ = _field_errors(errors)
    sentences = {name: [_laravel_sentence(name, why)] for name, why in messages.items()}
    return 422, {"message": _laravel_summary(sentences), "errors": sentences}


def _laravel_sentence(name: str, why: str) -> str:
    """Phrase a field error as Laravel does: "The build date field is required."."""
    return f"The {name.replace('_', ' ')} field {why}."


def _laravel_summary(sentences: Mapping[str, list[str]]) -> str:
    """Return Laravel's top-level message: the first error and how many more."""
    if not sentences:
        return "The given data was invalid."
    first = next(iter(sentences.values()))[0]
    more = len(sentences) - 1
    if more == 0:
        return first
    return f"{first} (and {more} more error{'s' if more > 1 else ''})"


def vibe_created(record: Mapping[str, Any]) -> Answer:
    """Return Vibe Monitor's 201 answer from a stored deployment record."""

    def pick(key: str, fallback: str | None = None) -> Any:
        """Return ``record[key]``, else ``record[fallback]``."""
        value = record.get(key)
        return record.get(fallback) if value is None and fallback else value

    status = pick("status")
    body = {
        "id": pick("id"),
        "environment_id": pick("environment_id"),
        # A record built from a DeployReport uses Slipway's names; accept those too.
        "repo_full_name": pick("repo_full_name", "repository"),
        "branch": pick("branch", "ref"),
        "commit_sha": pick("commit_sha", "sha"),
        "status": "failed" if status == "failure" else status,  # Vibe's own spelling
        "source": pick("source"),
        "deployed_at": pick("deployed_at"),
        "created_at": pick("created_at"),
    }
    return 201, {key: _json_scalar(value) for key, value in body.items()}


def _json_scalar(value: Any) -> Any:
    """Render datetimes as ISO 8601 UTC and UUIDs as strings; leave the rest."""
    if isinstance(value, datetime):
        return _iso(_utc(value))
    if isinstance(value, UUID):
        return str(value)
    return value


def vibe_error(status: int, detail: str | InvalidReport | Mapping[str, str] | None = None) -> Answer:
    """Return a Vibe Monitor (FastAPI) error answer ``{"detail": ...}``."""
    if status == 401:
        return 401, {"detail": "Invalid API key"}  # exactly the document's body
    if detail is None or isinstance(detail, str):
        return status, {"detail": detail or _REASONS.get(status, "Error")}
    messages, codes = _field_errors(detail)
    return status, {"detail": [_fastapi_item(name, why, codes[name]) for name, why in messages.items()]}


def _fastapi_item(name: str, why: str, code: str) -> dict[str, Any]:
    """Return one FastAPI validation error item: ``loc``, ``msg``, ``type``."""
    loc = ["body"] if name == "body" else ["body", *name.split(".")]
    msg = "Field required" if code == "missing" else f"Value {why}"  # pydantic's wording for missing
    return {"loc": loc, "msg": msg, "type": code}


def opslevel_ok() -> Answer:
    """Return OpsLevel's 202 answer for a deploy of a known service."""
    return 202, {"result": "ok"}


def opslevel_no_service(alias: str, suggestion: str | None = None) -> Answer:
    """Return OpsLevel's 202 answer for an unknown service, with Slipway's "did you mean"."""
    message = f"No service found matching alias '{alias}'. Recording '{alias}' as a suggestion."
    if suggestion:
        # OpsLevel's document has no such sentence; it is added after its own words.
        message += f" Did you mean '{suggestion}'?"
    return 202, {"result": "no_service_found", "message": message}


def opslevel_duplicate() -> Answer:
    """Return OpsLevel's 202 answer for a repeated ``dedup_id``."""
    return 202, {
        "result": "duplicate_deploy",
        "message": "Deploy not created due to existing deploy with identical dedup_id",
    }


def opslevel_errors(status: int, errors: Iterable[tuple[str, str]]) -> Answer:
    """Return OpsLevel's error answer ``{"errors": [{"status", "title", "detail"}]}``."""
    # The document's example carries "status" as a number (400), so it stays a number here.
    return status, {"errors": [{"status": status, "title": title, "detail": detail} for title, detail in errors]}


def opslevel_invalid(error: InvalidReport) -> Answer:
    """Return OpsLevel's 400 answer naming every invalid field as Rails would."""
    return opslevel_errors(400, opslevel_field_errors(error))


def opslevel_field_errors(errors: InvalidReport | Mapping[str, str]) -> list[tuple[str, str]]:
    """Turn field errors into OpsLevel (title, detail) pairs: "Deployed at Error", ..."""
    messages, codes = _field_errors(errors)
    pairs = []
    for name, why in messages.items():
        title = name.replace(".", " ").replace("_", " ").capitalize() + " Error"
        if codes[name] == "missing":
            detail = f"param is missing or the value is empty: {name}"  # Rails' ParameterMissing
        else:
            detail = f"{name} {why}"
        pairs.append((title, detail))
    return pairs


_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    413: "Payload Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Entity",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
}


# --------------------------------------------------------------------------- suggestions


def suggest(name: str, known: Iterable[str]) -> str | None:
    """Return the known name closest to ``name`` (case-insensitive), or None."""
    if not isinstance(name, str) or not name or len(name) > 256:
        return None
    folded: dict[str, str] = {}
    for candidate in known:
        if isinstance(candidate, str) and candidate:
            folded.setdefault(candidate.casefold(), candidate)
    key = name.casefold()
    if key in folded:
        return folded[key]
    matches = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.6)
    return folded[matches[0]] if matches else None
