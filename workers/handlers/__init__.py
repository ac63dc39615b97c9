"""Handlers, one module per event family; importing this package registers them all."""

from workers.handlers import deployments, installations, mirror, ping  # noqa: F401
