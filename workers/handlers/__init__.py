"""Handlers, one module per event family; importing this package registers them all."""

from workers.handlers import installations, ping  # noqa: F401
