"""Running the service: the web server plus the background parts that live in the same process.

``serve`` and ``demo`` both end here. Background parts (HL7 listener, outbox
dispatcher, device gateway) implement :class:`Background` and are started
before the web server and stopped after it, on SIGINT or SIGTERM, so that a
stop never cuts a message in half.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import typing as t

from flask import Flask
from waitress.server import create_server
from waitress.wasyncore import close_all

from server import create_app
from server.config import Config
from server.config import WebConfig
from server.logs import configure as configure_logging
from server.services.context import Clock

log = logging.getLogger("frontdesk.runtime")

STOP_GRACE_SECONDS = 5.0
"""How long a stop waits for requests in flight to finish (live streams end at once)."""


class Background(t.Protocol):
    """A part that runs beside the web server."""

    name: str

    def start(self) -> None:
        """Start working (returns at once; the work runs on its own threads)."""
        ...

    def stop(self) -> None:
        """Stop and wait until in-flight work is finished or safely abandoned."""
        ...


def waitress_limits(web: WebConfig) -> dict[str, t.Any]:
    """Waitress settings that bound what one client can make the server hold.

    The body limit is waitress's own, so an oversize upload is refused from its
    ``Content-Length`` (or once a chunked body passes the limit) instead of being
    spooled to disk and only then refused by Flask. ``channel_timeout`` closes
    connections that stop sending half-way (slow clients), and
    ``connection_limit`` caps how many sockets are held open at once
    (idle ones are swept every half timeout). Forwarded
    headers are stripped unless proxies are trusted; then :class:`ProxyFix` in
    the app reads exactly ``trusted_proxies`` hops of them.
    """
    return {
        "max_request_body_size": web.max_content_kb * 1024,
        "max_request_header_size": 64 * 1024,
        "connection_limit": web.connection_limit,
        "channel_timeout": web.channel_timeout_seconds,
        "cleanup_interval": max(1, web.channel_timeout_seconds // 2),
        "clear_untrusted_proxy_headers": not web.trusted_proxies,
    }


def run_server(config: Config, *, background: t.Callable[[Flask], t.Sequence[Background]] = lambda _: (),
               clock: Clock | None = None, ready: t.Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM.

    :param background: builds the parts to run beside the web server, given the app.
    :param ready: called with the base URL once everything is up (``demo``
        prints its welcome there).
    """
    configure_logging()
    app = create_app(config, clock=clock)
    parts = background(app)
    sockets: dict[int, t.Any] = {}
    server = create_server(app, map=sockets, host=config.web.host, port=config.web.port,
                           threads=config.web.threads, ident="frontdesk", **waitress_limits(config.web))
    live = app.extensions["frontdesk"].live
    stopping = threading.Event()

    def _close_when_idle() -> None:
        """Stop accepting, end live streams, let requests in flight finish, then close every socket.

        The sockets are closed from waitress's own loop, which then ends; closing
        them first would leave request threads still answering writing into closed
        connections.
        """
        server.accepting = False
        live.close()
        tasks = server.task_dispatcher
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while (tasks.active_count or tasks.queue) and time.monotonic() < deadline:
            time.sleep(0.05)
        server.trigger.pull_trigger(lambda: close_all(sockets))

    def _stop(signum: int, _frame: t.Any) -> None:
        if not stopping.is_set():
            stopping.set()
            log.info("runtime.stopping", extra={"reason": signal.Signals(signum).name})
            threading.Thread(target=_close_when_idle, name="stopping", daemon=True).start()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    started: list[Background] = []
    try:
        for part in parts:
            part.start()
            started.append(part)
            log.info("runtime.started", extra={"reason": part.name})
        base = f"http://{config.web.host}:{server.effective_port}"
        log.info("runtime.listening", extra={"host": config.web.host,
                                             "port_number": server.effective_port})
        if ready:
            ready(base)
        server.run()
    finally:
        live.close()
        for part in reversed(started):
            part.stop()
        app.extensions["frontdesk.engine"].dispose()
        log.info("runtime.stopped")
