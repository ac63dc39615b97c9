"""ping: GitHub's hello when the hook is created."""

from workers.events import Event, Outcome
from workers.registry import handles


@handles("ping")
def on_ping(event: Event) -> Outcome:
    """Nothing to do but record it."""
    return Outcome("done", f"hook {event.payload.get('hook_id')}")
