"""Response hardening applied to every response (ASVS 3.4, 14.3)."""

from __future__ import annotations

from flask import Flask
from flask import Response
from flask import request

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


# ``same-origin``: the browser sends our own pages' URLs back to us (Flask-WTF's
# CSRF check over HTTPS requires a same-origin Referer) and never sends them to
# another site. ``no-referrer`` would make every HTTPS form post fail that check.
# Our URLs carry ids only, never patient data, so nothing leaks either way.
REFERRER_POLICY = "same-origin"


def install(app: Flask, *, secure: bool) -> None:
    """Add the security headers and ``no-store`` caching to every response of ``app``.

    Every page but static assets may show patient data, so caching is refused
    everywhere else rather than decided page by page (a page that forgets is a
    leak on a shared kiosk or a proxy).
    """

    @app.after_request
    def _harden(response: Response) -> Response:
        headers = response.headers
        headers["Content-Security-Policy"] = CSP
        headers["X-Frame-Options"] = "DENY"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = REFERRER_POLICY
        headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if secure:
            headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        if request.endpoint != "static":
            headers["Cache-Control"] = "no-store"
            headers["Pragma"] = "no-cache"
        return response
