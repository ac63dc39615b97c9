"""Handlers, one module per event family; importing this package registers them all."""

from workers.handlers import (  # noqa: F401
    checks,
    deployments,
    installations,
    internal,
    mirror,
    ping,
    protection,
    pull_requests,
    refs,
)
