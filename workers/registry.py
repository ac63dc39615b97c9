"""The one dispatch registry: (event, action) → handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.events import Event, Outcome

Handler = Callable[["Event"], "Outcome"]
HandlerKey = tuple[str, "str | None"]  # None = any action (events without one, or all of them)

_HANDLERS: dict[HandlerKey, Handler] = {}


def handles(event: str, *actions: str) -> Callable[[Handler], Handler]:
    """Register a handler for an event, optionally narrowed to some actions."""

    def register(fn: Handler) -> Handler:
        for key in [(event, a) for a in actions] or [(event, None)]:
            if key in _HANDLERS:
                raise RuntimeError(f"two handlers for {key}")
            _HANDLERS[key] = fn
        return fn

    return register


def _load() -> None:
    """Import the handler modules once; they register themselves."""
    import workers.handlers  # noqa: F401


def get_handler(event: str, action: str | None) -> Handler | None:
    """The handler for this event and action, if Slipway acts on it."""
    _load()
    return _HANDLERS.get((event, action)) or _HANDLERS.get((event, None))


def handled_events() -> dict[str, set[str | None]]:
    """Every event Slipway subscribes to, with the actions it handles (None = all)."""
    _load()
    out: dict[str, set[str | None]] = {}
    for event, action in _HANDLERS:
        out.setdefault(event, set()).add(action)
    return out
