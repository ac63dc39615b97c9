"""What a handler receives and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slipway.runtime import Runtime


@dataclass
class Event:
    """One claimed delivery, decoded, with the services a handler may use."""

    guid: str
    name: str
    action: str | None
    payload: dict[str, Any]
    installation_id: int | None
    repository: str | None
    attempt: int
    rt: Runtime = field(repr=False)

    @property
    def owner_repo(self) -> tuple[str, str]:
        """The repository as (owner, name)."""
        owner, _, name = (self.repository or "/").partition("/")
        return owner, name


@dataclass(frozen=True)
class Outcome:
    """How a handler ended: `done` (acted, or nothing to do) or `ignored`, with a note for the inbox."""

    state: str = "done"
    note: str | None = None

    @classmethod
    def ignored(cls, why: str) -> Outcome:
        """Nothing to act on, and why."""
        return cls("ignored", why)


class Ignored(Exception):
    """Nothing to act on (raised from deep inside a handler); the delivery ends `ignored` with the reason."""


class RetryLater(Exception):
    """A transient failure: try the whole delivery again after `after` seconds (None = backoff)."""

    def __init__(self, message: str, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


class Permanent(Exception):
    """A failure that another attempt cannot fix (404 deleted branch, 422, suspended installation)."""
