"""Frontdesk server: the app factory.

``create_app(config)`` is the one place an application is assembled: settings
from a validated :class:`server.config.Config`, the database engine and
services, extensions, security headers, logging and blueprints.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid

from flask import Flask
from flask import Response
from flask import g
from flask import jsonify
from flask import render_template
from flask import request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from server import preflight  # noqa: F401  (first of ours: stops with one line if python-hl7 shadows hl7)
from server import security
from server.auth import staff_chrome
from server.auth import wants_json
from server.bounds import BoundedIntConverter
from server.bounds import BoundedJSONProvider
from server.config import Config
from server.config import ensure_secret_key
from server.config import load_config
from server.db import make_engine
from server.extensions import babel
from server.extensions import csrf
from server.live import StreamSlots
from server.live import make_hub
from server.services import build_services
from server.services.context import Clock

log = logging.getLogger("frontdesk.http")


def create_app(config: Config | None = None, *, clock: Clock | None = None) -> Flask:
    """Build the WSGI application.

    :param config: validated settings; read from the environment when omitted.
    :param clock: the time source (tests pass a frozen clock).
    """
    config = config or load_config()
    app = Flask(__name__, instance_path=str(config.instance_dir))
    app.url_map.converters["int"] = BoundedIntConverter
    app.json = BoundedJSONProvider(app)
    secret = ensure_secret_key(config)
    app.config.update(
        SECRET_KEY=secret,
        TESTING=config.testing,
        MAX_CONTENT_LENGTH=config.web.max_content_kb * 1024,
        SESSION_COOKIE_NAME="__Host-frontdesk_csrf" if config.web.secure_cookies else "frontdesk_csrf",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.web.secure_cookies,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=config.web.absolute_timeout_hours),
        WTF_CSRF_TIME_LIMIT=config.web.absolute_timeout_hours * 3600,
        FRONTDESK=config,
    )
    if config.web.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.web.trusted_proxies,  # type: ignore[method-assign]
                                x_proto=config.web.trusted_proxies)
    engine = make_engine(config.database_url, echo=config.database.echo, schema=config.database.schema or None,
                         connections=config.web.threads)
    app.extensions["frontdesk"] = build_services(config, engine, secret=secret, clock=clock,
                                                 live=make_hub(config.database_url, config.database.schema))
    app.extensions["frontdesk.engine"] = engine
    app.extensions["frontdesk.streams"] = StreamSlots.for_threads(config.web.threads)
    csrf.init_app(app)
    # Pages set g.language (the kiosk: the patient's choice); everything else is English.
    babel.init_app(app, locale_selector=lambda: g.get("language", "en"))
    security.install(app, secure=config.web.secure_cookies)
    _install_request_log(app)
    _install_error_pages(app)

    from kiosk import views as kiosk
    from server.views import api
    from server.views.staff import account as staff_account
    from server.views.staff import admin
    from server.views.staff import board
    from server.views.staff import interfaces as staff_interfaces
    from server.views.staff import kiosk as staff_kiosk
    from server.views.staff import stations

    app.register_blueprint(board.bp)
    app.register_blueprint(board.root)
    app.register_blueprint(admin.bp)
    app.register_blueprint(staff_account.bp)
    app.register_blueprint(stations.bp)
    app.register_blueprint(staff_interfaces.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(api.health_bp)
    app.register_blueprint(kiosk.bp)
    app.register_blueprint(staff_kiosk.bp)
    csrf.exempt(api.health_bp)
    csrf.exempt(api.readings)
    csrf.exempt(api.device_status)
    return app


def _install_request_log(app: Flask) -> None:
    """One log line per request: the route pattern (never the raw URL), status and duration."""

    @app.before_request
    def _start() -> None:
        g.request_id = uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        staff = g.get("staff")
        log.info("http.request", extra={
            "request_id": g.get("request_id"),
            "method": request.method,
            "endpoint": request.url_rule.rule if request.url_rule else "<unmatched>",
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2),
            "actor_type": "staff" if staff else None,
            "actor_id": staff.user_id if staff else None,
        })
        return response


ERROR_TITLES = {400: "Something in that request was not right", 403: "Not allowed",
                404: "Page not found", 405: "Not allowed", 413: "Too much data"}
ERROR_TEXTS = {403: "Your role does not allow this page.",
               404: "There is nothing at this address. It may have been removed, or the link may be wrong.",
               405: "This page cannot be used that way.",
               413: "That was more than this page accepts. Nothing was saved."}


def _install_error_pages(app: Flask) -> None:
    """Generic error bodies (ASVS 16.5.1): status and a short sentence, never internals."""

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[Response | str, int]:
        status = error.code or 500
        message = error.description if status == 400 else error.name
        if wants_json():
            return jsonify(error=message), status
        return render_template("error.html", status=status, message=ERROR_TITLES.get(status, message),
                               explanation=ERROR_TEXTS.get(status, message if status == 400 else ""),
                               **staff_chrome()), status

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> tuple[Response | str, int]:
        log.error("http.unhandled_error", exc_info=error, extra={"request_id": g.get("request_id")})
        if wants_json():
            return jsonify(error="internal error"), 500
        return render_template("error.html", status=500, message="Something went wrong."), 500
