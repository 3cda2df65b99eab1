"""HL7 commands: ``listen``, ``bridge``, ``outbox list|retry|discard``, ``import-hl7``."""

from __future__ import annotations

import re
import signal
import threading
import typing as t
from pathlib import Path

import click

from hl7.batch import is_batch
from hl7.batch import split_batch
from hl7.er7 import ParseError
from hl7.er7 import load_messages
from hl7.mllp import END_BLOCK
from hl7.mllp import START_BLOCK
from hl7.mllp import MLLPDecoder
from hl7.mllp import MLLPProtocolError
from server.cli.common import EXIT_CONFIG
from server.cli.common import fail
from server.cli.common import with_config
from server.cli.core import open_services
from server.config import Config
from server.config import ConfigError
from server.config import check_production
from server.interfaces import DispatcherPart
from server.interfaces import ListenerPart
from server.live import make_hub
from server.logs import configure as configure_logging
from server.services.context import Actor
from server.services.outbox import OutboxError
from server.services.outbox import Selection

INTER_FRAME_BREAKS = re.compile(re.escape(END_BLOCK) + rb"\r?[\r\n]*")
IMPORT_GROUP = 100  # messages applied per transaction


def register(main: click.Group) -> None:
    """Attach this module's commands to the ``frontdesk`` group."""
    main.add_command(listen)
    main.add_command(bridge)
    main.add_command(outbox)
    main.add_command(import_hl7)


def _run_until_signal(part: ListenerPart | DispatcherPart) -> None:
    """Run a started part until SIGINT or SIGTERM, then stop it cleanly."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        part.stop()


@click.command()
@with_config
def listen(config: Config) -> None:
    """Receive SIU and ADT over MLLP on [hl7] listen_host:listen_port until stopped."""
    try:
        check_production(config)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    configure_logging()
    part = ListenerPart(open_services(config), config.hl7)
    try:
        part.start()
    except OSError as exc:
        fail(f"cannot listen on {config.hl7.listen_host}:{config.hl7.listen_port}: {exc.strerror or exc}")
    host, port = part.listener.address
    click.echo(f"listening for HL7 on {host}:{port}", err=True)
    _run_until_signal(part)


@click.command()
@with_config
def bridge(config: Config) -> None:
    """Deliver the outbox to the records system ([hl7] destination_host) until stopped.

    On PostgreSQL it is woken through LISTEN/NOTIFY whenever any process queues a message.
    """
    if not config.hl7.destination_host:
        fail("hl7.destination_host: must be set for the bridge to deliver anything", EXIT_CONFIG)
    configure_logging()
    live = make_hub(config.database_url, config.database.schema)
    part = DispatcherPart(open_services(config, live=live), config.hl7)
    part.start()
    try:
        _run_until_signal(part)
    finally:
        live.close()


@click.group()
def outbox() -> None:
    """Inspect the outbox and act on stuck messages."""


@outbox.command("list")
@click.option("--status", type=click.Choice(["pending", "sending", "sent", "dead", "discarded"]), default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@with_config
def outbox_list(config: Config, status: str | None, limit: int) -> None:
    """Messages, newest first, with counts by state and the oldest undelivered age."""
    services = open_services(config)
    stats = services.outbox.stats()
    counts = t.cast(dict[str, int], stats["counts"])
    click.echo("  ".join(f"{state}={n}" for state, n in counts.items())
               + f"  oldest_pending_age_s={stats['oldest_pending_age_seconds']}")
    for row in services.outbox.list(status=status, limit=limit):
        click.echo(f"{row.id:>6}  {row.status:<9} {row.message_type:<8} {row.control_id:<22} "
                   f"attempts={row.attempts:<3} key={row.ordering_key}  {row.last_error[:80]}")


def _selection_options(command: t.Callable[..., None]) -> t.Callable[..., None]:
    """The ways to name the messages of a retry or discard: one id, or a bulk selection."""
    for option in reversed([
        click.argument("message_id", type=int, required=False),
        click.option("--all", "select_all", is_flag=True, help="Every message the action applies to."),
        click.option("--mrn", default="", help="Only this patient's messages (medical record number)."),
        click.option("--error", default="", help="Only messages whose last error contains this text."),
    ]):
        command = option(command)
    return command


@outbox.command("retry")
@_selection_options
@with_config
def outbox_retry(config: Config, message_id: int | None, select_all: bool, mrn: str, error: str) -> None:
    """Send messages again now (same MSH-10): one by id, or dead and waiting ones in bulk
    (--all, --mrn, --error); each and the patient's later messages flow again."""
    _outbox_action(config, message_id, "retry", Selection(mrn=mrn, error=error), select_all)


@outbox.command("discard")
@_selection_options
@with_config
def outbox_discard(config: Config, message_id: int | None, select_all: bool, mrn: str, error: str) -> None:
    """Give up on messages for good: one by id, or dead letters in bulk (--all, --mrn, --error);
    the patient's later messages flow again."""
    _outbox_action(config, message_id, "discard", Selection(mrn=mrn, error=error), select_all)


def _outbox_action(config: Config, message_id: int | None, action: str, selection: Selection,
                   select_all: bool) -> None:
    bulk = select_all or bool(selection.mrn or selection.error)
    if (message_id is None) == (not bulk):
        fail(f"give either a message id or --all, --mrn or --error to say which messages to {action}", EXIT_CONFIG)
    services = open_services(config)
    actor = Actor("system", "cli")
    if message_id is None:
        count = getattr(services.outbox, f"{action}_many")(selection, actor=actor)
        click.echo(f"{action} done for {count} message{'' if count == 1 else 's'}")
        return
    try:
        getattr(services.outbox, action)(message_id, actor=actor)
    except OutboxError as exc:
        fail(str(exc))
    click.echo(f"outbox message {message_id}: {action} done")


@click.command("import-hl7")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_config
def import_hl7(config: Config, path: Path) -> None:
    """Feed a file of SIU/ADT messages through the listener's path (MLLP frames or MSH-separated text)."""
    data = path.read_bytes()
    try:
        messages = split_file(data)
    except (ParseError, MLLPProtocolError) as exc:
        fail(f"{path}: {exc}")
    services = open_services(config)
    outcomes: dict[str, int] = {}
    for start in range(0, len(messages), IMPORT_GROUP):
        for result in services.inbound.receive_many(messages[start:start + IMPORT_GROUP], f"file:{path.name}"):
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
            suffix = " (duplicate)" if result.duplicate else ""
            detail = f"  {result.error}" if result.error else ""
            click.echo(f"{result.control_id:<22} {result.message_type:<10} {result.outcome}{suffix}{detail}")
    click.echo(f"{len(messages)} messages: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
    if outcomes.get("AE") or outcomes.get("AR"):
        raise SystemExit(1)


def split_file(data: bytes) -> list[bytes]:
    """Messages from a file: MLLP frames when it starts with a start block, else text split at each MSH.

    Segments may end in CR, CRLF or LF. Line breaks that editors and capture
    tools put between frames are dropped; anything else outside a frame, or a
    last frame without its end block, is an error. A frame holding a batch
    (FHS/BHS) yields the batch's messages.

    :raises MLLPProtocolError: for bytes outside a frame or an unfinished frame.
    :raises ParseError: for text that does not start with MSH, or a batch that cannot be read.
    """
    if not data.lstrip(b"\r\n").startswith(START_BLOCK):
        return load_messages(data)
    decoder = MLLPDecoder()
    frames = decoder.feed(INTER_FRAME_BREAKS.sub(END_BLOCK + b"\r", data.strip(b"\r\n")))
    if decoder.in_frame:
        raise MLLPProtocolError("the last frame has no end block")
    return [message for frame in frames
            for message in (split_batch(frame).messages if is_batch(frame) else (frame,))]
