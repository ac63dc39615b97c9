"""Flask's signed cookie sessions, opened only for requests that carry the session cookie."""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class LazyCookieSessions(SecureCookieSessionInterface):
    """The dashboard's sessions, without their cost on requests that have no session cookie.

    Flask builds a signing serializer for every request (webhooks and API calls included) only to find
    no cookie; without one, an empty session is handed out at once and, while nothing is written to
    it, saving it does nothing. A login writes to it and gets its cookie as before.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """An empty session when there is no cookie; otherwise Flask's own signed-cookie session."""
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        """Nothing to do for an empty session that was never written; otherwise Flask's own save."""
        if not session and not session.modified:
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)
