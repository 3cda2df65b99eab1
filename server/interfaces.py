"""The HL7 interfaces as background parts of a process: the inbound listener and the outbox dispatcher.

``serve`` runs both beside the web server; ``listen`` and ``bridge`` run one
each on its own, for sites that split them across processes or machines.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import ssl
import threading
import time

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from hl7.client import MLLPClient
from hl7.dispatcher import Dispatcher
from hl7.dispatcher import OutboundItem
from hl7.listener import MLLPListener
from hl7.listener import PeerInfo
from hl7.listener import parse_allowed_sender
from hl7.retry import RetryPolicy
from hl7.tls import client_context
from hl7.tls import server_context
from server.config import Config
from server.config import HL7Config
from server.config import listener_security
from server.live import BOARD_CHANNEL
from server.live import PostgresHub
from server.live import Subscription
from server.runtime import Background
from server.services import Services
from server.services.outbox import BacklogWatch
from server.services.outbox import OutboxRepository
from server.services.retention import RetentionPart
from server.stations import DevicesPart

log = logging.getLogger("frontdesk.interfaces")


def allowed_senders(settings: HL7Config) -> list[tuple[str, str]] | None:
    """``APP^FACILITY`` settings as ``(MSH-3.1, MSH-4.1)`` pairs; ``None`` accepts any sender."""
    if not settings.allowed_senders:
        return None
    return [parse_allowed_sender(entry) for entry in settings.allowed_senders]


def listener_tls(settings: HL7Config) -> ssl.SSLContext | None:
    """The listener's TLS context, mutual when ``tls_require_client_cert`` is set."""
    if not settings.tls_cert:
        return None
    return server_context(certfile=settings.tls_cert, keyfile=settings.tls_key,
                          client_cafile=settings.tls_ca if settings.tls_require_client_cert else None)


def destination_tls(settings: HL7Config) -> ssl.SSLContext | None:
    """The dispatcher's TLS context toward the records system, if configured."""
    if not settings.destination_tls_ca:
        return None
    return client_context(cafile=settings.destination_tls_ca, certfile=settings.destination_tls_cert or None,
                          keyfile=settings.destination_tls_key or None)


def dispatcher_clients(settings: HL7Config) -> list[MLLPClient]:
    """One MLLP client per ``destination_connections``, with the destination's TLS and server name."""
    tls = destination_tls(settings)
    return [MLLPClient(settings.destination_host, settings.destination_port, ssl_context=tls,
                       server_hostname=settings.destination_tls_server_name or None,
                       connect_timeout=settings.connect_timeout_seconds, ack_timeout=settings.ack_timeout_seconds,
                       max_frame=settings.max_frame_kb * 1024)
            for _ in range(settings.destination_connections)]


class ListenerPart:
    """Inbound MLLP: SIU and ADT applied by :class:`server.services.inbound.Inbound`."""

    name = "hl7-listener"

    def __init__(self, services: Services, settings: HL7Config) -> None:
        self.listener = MLLPListener(
            lambda raw, peer: services.inbound.handle(raw, _describe(peer)),
            on_unreadable=lambda raw, peer, _reason: services.inbound.handle(raw, _describe(peer)),
            group_handler=lambda frames, peer: services.inbound.handle_group(frames, _describe(peer)),
            host=settings.listen_host, port=settings.listen_port, ssl_context=listener_tls(settings),
            idle_timeout=settings.listen_idle_timeout_seconds,
            max_frame=settings.max_frame_kb * 1024, allowed_senders=allowed_senders(settings))
        self.security = listener_security(settings)

    def start(self) -> None:
        self.listener.start()
        plain = self.security.startswith("plain")
        log.log(logging.WARNING if plain else logging.INFO, "hl7.listener_security",
                extra={"reason": self.security})

    def stop(self) -> None:
        self.listener.close()


BACKLOG_CHECK_SECONDS = 30.0


class DispatcherPart:
    """Outbound MLLP: delivers the outbox to ``destination_host:destination_port`` over
    ``destination_connections`` connections.

    Woken at once by an enqueue in this process, and through the live hub by
    one in any other process (PostgreSQL ``LISTEN/NOTIFY``), so a separate
    ``bridge`` sends without waiting for its poll. The poll remains for retries
    that fall due; it is longer where the hub crosses processes.
    """

    name = "hl7-dispatcher"

    def __init__(self, services: Services, settings: HL7Config, *, owner: str | None = None,
                 poll_interval: float | None = None) -> None:
        self.repository = OutboxRepository(uow=services.uow, audit=services.audit, owner=owner)
        clients = dispatcher_clients(settings)
        self.dispatcher = Dispatcher(
            self.repository, clients, clock=services.clock.now, rng=random.Random(),
            retry=RetryPolicy(base=settings.retry_base_seconds, cap=settings.retry_cap_seconds,
                              max_attempts=settings.max_attempts),
            batch_size=settings.batch_size, on_dead=self._dead_letter)
        cross_process = isinstance(services.live, PostgresHub)
        self.poll_interval = poll_interval if poll_interval is not None else 5.0 if cross_process else 0.5
        self.outbox = services.outbox
        self.backlog = BacklogWatch(services.outbox, limit=dt.timedelta(minutes=settings.backlog_alert_minutes))
        self.live = services.live
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._waker: threading.Thread | None = None

    def _dead_letter(self, item: OutboundItem, reason: str) -> None:
        """Show it on the boards: the patient's row says a message stopped (the dispatcher logs the alert; the
        reason stays out of both, as it may quote patient data)."""
        self.live.publish(BOARD_CHANNEL, "message", {"messages_of": item.ordering_key})

    def start(self) -> None:
        """Run the dispatcher; a message enqueued anywhere wakes it at once instead of at the next poll."""
        self.outbox.subscribe(self.dispatcher.wake)
        self._stop.clear()
        subscription = self.live.subscribe(["outbox"])
        self._waker = threading.Thread(target=self._wake_on_events, args=(subscription,), name="outbox-wake",
                                       daemon=True)
        self._waker.start()
        self._thread = threading.Thread(target=self.dispatcher.run, args=(self._stop,),
                                        kwargs={"poll_interval": self.poll_interval}, name="hl7-dispatcher",
                                        daemon=True)
        self._thread.start()

    def _wake_on_events(self, subscription: Subscription) -> None:
        """Wake the dispatcher on every enqueue anywhere, and look at the backlog's age every
        :data:`BACKLOG_CHECK_SECONDS`."""
        next_check = time.monotonic()
        with subscription:
            while not self._stop.is_set() and not subscription.closed:
                if subscription.get(timeout=0.5) is not None:
                    self.dispatcher.wake()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + BACKLOG_CHECK_SECONDS
                    try:
                        self.backlog.check()
                    except SQLAlchemyError:
                        log.warning("outbox.backlog_check_failed", exc_info=True)

    def stop(self) -> None:
        self.outbox.unsubscribe(self.dispatcher.wake)
        self._stop.set()
        self.dispatcher.wake()
        if self._thread is not None:
            self._thread.join()
        if self._waker is not None:
            self._waker.join()
        self.repository.release()


def _describe(peer: PeerInfo) -> str:
    subject = f" cn={peer.certificate_subject}" if peer.certificate_subject else ""
    return f"{peer.host}:{peer.port}{subject}"


def service_parts(app: Flask, config: Config) -> list[Background]:
    """What ``serve`` runs beside the web server: the HL7 listener, the dispatcher once a
    destination is set, the device gateway when ``[[devices]]`` are configured, and the
    retention purge when ``keep_days`` is set."""
    services: Services = app.extensions["frontdesk"]
    parts: list[Background] = [ListenerPart(services, config.hl7)]
    if config.hl7.destination_host:
        parts.append(DispatcherPart(services, config.hl7))
    if config.devices:
        parts.append(DevicesPart(app, config))
    if config.hl7.keep_days:
        parts.append(RetentionPart(services.retention))
    return parts
