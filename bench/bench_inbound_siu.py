"""Inbound schedule rate: SIU^S12 parsed, applied and ACKed over one MLLP connection.

Ours: a scheduler's feed arriving at ``ListenerPart`` (the listener ``serve`` and
``listen`` run) on SQLite: every message is parsed, checked for a repeat by
MSH-10, applied (patient upsert, appointment, expected visit, audit rows, the
raw message and its ACK kept) in one transaction, and answered. One
:class:`hl7.client.MLLPClient` sends the messages one after another on a single
connection, each waiting for its ACK, as schedulers do.

Baseline, in the same run: the same messages parsed with hl7apy's
``parse_message`` alone (no database, no socket), over a small count because it
is slow; it is the parser an interface built on hl7apy would start from.

Run: ``.venv/bin/python bench/bench_inbound_siu.py [--messages N] [--baseline-messages M]``
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from bench_outbox_drain import open_services
from hl7apy.parser import parse_message as hl7apy_parse

from hl7.ack import parse_ack
from hl7.client import MLLPClient
from server.config import HL7Config
from server.interfaces import ListenerPart

TARGET_PER_S = 500.0


def siu_s12(n: int) -> tuple[str, bytes]:
    """A new appointment for patient ``n``: its MSH-10 and the message (segments ending in CR)."""
    control_id = f"SCHED{n:08d}"
    segments = [
        f"MSH|^~\\&|SCHED|FAMCLINIC|FRONTDESK|CLINIC|20261126070000+0000||SIU^S12^SIU_S12|{control_id}|P|2.5.1",
        f"SCH|P{n}^SCHED|F{n}^SCHED|||||ROUTINE^Routine visit^HL70276||20|MIN|"
        f"^^20^20261126{9 + n % 8:02d}{n % 4 * 15:02d}00+0000||||||||||||||Booked",
        f"PID|1||MR{n:07d}^^^FAMCLINIC^MR||Family{n}^Given^Q||19{50 + n % 50:02d}0{1 + n % 9}1{n % 10}|F|||"
        f"{n} Elm St^^Springfield^IL^62701^USA||555-01{n % 100:02d}^PRN^PH||en",
        "AIL|1||EXAM2^^^FAMCLINIC",
        "AIP|1||D204^Mensah^Efua",
    ]
    return control_id, ("\r".join(segments) + "\r").encode()


def ours(messages: list[tuple[str, bytes]], work: Path) -> float:
    """Messages per second applied and ACKed AA through the listener."""
    services = open_services(f"sqlite:///{work / 'frontdesk.db'}", work / "instance")
    settings = dataclasses.replace(HL7Config(), listen_port=0)
    part = ListenerPart(services, settings)
    part.start()
    try:
        host, port = part.listener.address
        with MLLPClient(host, port, connect_timeout=5, ack_timeout=30) as client:
            started = time.perf_counter()
            acks = [client.send(payload, control_id) for control_id, payload in messages]
            elapsed = time.perf_counter() - started
    finally:
        part.stop()
        services.uow.engine.dispose()
    refused = [ack for ack in acks if parse_ack(ack).code != "AA"]
    if refused:
        raise SystemExit(f"{len(refused)} messages were not accepted, first: {refused[0]!r}")
    return len(messages) / elapsed


def baseline(messages: list[tuple[str, bytes]]) -> float:
    """Messages per second parsed by hl7apy alone."""
    started = time.perf_counter()
    for _, payload in messages:
        hl7apy_parse(payload.decode())
    return len(messages) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--baseline-messages", type=int, default=200)
    args = parser.parse_args()
    messages = [siu_s12(n) for n in range(args.messages)]
    parsed = baseline(messages[:args.baseline_messages])
    with tempfile.TemporaryDirectory() as tmp:
        rate = ours(messages, Path(tmp))
    verdict = "meets" if rate >= TARGET_PER_S else "below"
    print(f"{args.messages} SIU^S12, one MLLP connection, SQLite")
    print(f"baseline  hl7apy parse_message alone ({args.baseline_messages} msgs)     {parsed:8.0f} msg/s")
    print(f"ours      parse + upsert + ACK via ListenerPart         {rate:8.0f} msg/s  "
          f"({rate / parsed:.1f}x baseline; {verdict} the {TARGET_PER_S:.0f}/s target)")


if __name__ == "__main__":
    main()
