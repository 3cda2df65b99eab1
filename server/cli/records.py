"""CLI command ``records-server``: the reference records system.

Stands in for the clinic's EHR: the demo sends to it and the tests rehearse
failures with it (``--reply AE|AR|none|slow=SECONDS``). Its output is one line
per message (time, MSH-9, MSH-10, outcome), so a person watching the demo sees
deliveries, retries and duplicates without ever seeing a patient's name.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import ssl
import threading
from pathlib import Path

import click

from hl7.listener import parse_allowed_sender
from hl7.records_server import RecordsSystem
from hl7.records_server import ReplyMode
from hl7.tls import server_context
from server.cli.common import CommandError


def register(main: click.Group) -> None:
    """Attach this module's commands to the ``frontdesk`` group."""
    main.add_command(records_server)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"expected HOST:PORT, got {text!r}", param_hint="--listen")
    return host.strip("[]"), int(port)


def _reply(text: str) -> ReplyMode:
    try:
        return ReplyMode.parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--reply") from None


def _senders(values: tuple[str, ...]) -> set[tuple[str, str]] | None:
    if not values:
        return None
    try:
        return {parse_allowed_sender(value) for value in values}
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--allow") from None


def _tls(cert: str | None, key: str | None, client_ca: str | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        if client_ca is not None:
            raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if cert is None or key is None:
        raise click.UsageError("--tls-cert and --tls-key go together")
    try:
        return server_context(certfile=cert, keyfile=key, client_cafile=client_ca)
    except (OSError, ssl.SSLError) as exc:
        raise CommandError(f"cannot load TLS certificate or key: {exc}") from None


@click.command("records-server")
@click.option(
    "--listen",
    default="127.0.0.1:2576",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on; port 0 picks a free one (printed at start).",
)
@click.option(
    "--store",
    "store_path",
    default="instance/records.sqlite3",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file for received messages.",
)
@click.option(
    "--reply",
    "reply_text",
    default="AA",
    show_default=True,
    metavar="AA|AE|AR|none|slow=SECONDS",
    help="How to answer: accept, reject, never answer, or accept after a delay.",
)
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="APPLICATION^FACILITY",
    help="Accept only these senders (MSH-3.1^MSH-4.1); repeatable. Others get AR.",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate for TLS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key for TLS.")
@click.option(
    "--tls-client-ca",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM CA file; clients must present a certificate it signed (mutual TLS).",
)
@click.option("--max-connections", default=128, show_default=True, type=click.IntRange(1, 4096))
@click.option(
    "--idle-timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds a connection may stay silent.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log connections and framing errors.")
def records_server(
    listen: str,
    store_path: Path,
    reply_text: str,
    allow: tuple[str, ...],
    tls_cert: str | None,
    tls_key: str | None,
    tls_client_ca: str | None,
    max_connections: int,
    idle_timeout: float,
    verbose: bool,
) -> None:
    """Run the reference records system: receive HL7 over MLLP, de-duplicate by MSH-10, store, ACK."""
    host, port = _address(listen)
    reply = _reply(reply_text)
    senders = _senders(allow)
    context = _tls(tls_cert, tls_key, tls_client_ca)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        store_path.parent.mkdir(parents=True, exist_ok=True)
        system = RecordsSystem(
            store_path,
            reply=reply,
            emit=click.echo,
            host=host,
            port=port,
            ssl_context=context,
            allowed_senders=senders,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
        )
    except (OSError, sqlite3.Error) as exc:
        raise CommandError(f"cannot open store {store_path}: {exc}") from None
    try:
        system.start()
    except OSError as exc:
        system.close()
        raise CommandError(f"cannot listen on {listen}: {exc}") from None
    bound_host, bound_port = system.address
    click.echo(
        f"records server listening on {bound_host}:{bound_port}"
        f"{' (TLS)' if context else ''}, reply {reply_text}, store {store_path}"
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        system.close()
        click.echo("records server stopped")
