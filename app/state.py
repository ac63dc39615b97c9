"""Access to the process runtime from request handlers."""

from __future__ import annotations

from flask import current_app

from slipway.runtime import Runtime


def runtime() -> Runtime:
    """The runtime the app was created with."""
    return current_app.extensions["slipway"]
