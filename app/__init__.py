"""The Flask application: HTTP only; GitHub is never called from a request."""

from __future__ import annotations

from flask import Flask

from app.sessions import LazyCookieSessions
from slipway.runtime import Runtime, build
from slipway.settings import API_BODY_LIMIT, Settings


def create_app(settings: Settings | None = None, *, rt: Runtime | None = None) -> Flask:
    """Build the app around a runtime (created from settings when not given)."""
    from app import dashboard, deploy_api, errors, health, inbox_api, limits, metrics, read_api, webhooks

    rt = rt or build(settings)
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=API_BODY_LIMIT, SECRET_KEY=rt.settings.session_secret,
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.session_interface = LazyCookieSessions()
    app.extensions["slipway"] = rt
    errors.register(app)
    limits.init_app(app, rt)
    # The dashboard serves GET /; the read API also serves /api/v1/openapi.json.
    for bp in (health.bp, inbox_api.bp, deploy_api.bp, dashboard.bp, read_api.bp):
        app.register_blueprint(bp)
    limits.exempt(app, health.bp)
    metrics.init_app(app, rt)  # /metrics (unless METRICS_ENABLED=false) and the GitHub call counts
    # GitHub's deliveries are answered in front of Flask (app/webhooks.py); the test client goes through it too.
    app.wsgi_app = webhooks.mount(rt, app.wsgi_app)  # type: ignore[method-assign]
    app.extensions["slipway_wsgi_routes"] = {("POST", webhooks.PATH)}
    return app
