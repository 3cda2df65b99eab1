"""Decode throughput of the monitor decoders against a naive byte-at-a-time decoder, same run.

For each protocol a simulator records about 1 MB of device output (normal
scenario, conversation included). Our decoder is fed in 1 KiB reads, the way a
serial read loop hands data over; the baseline, written below, walks the same
bytes one at a time through a flag/escape state machine with a running checksum
and then calls the same record decoding. Figures: bytes per second, and that
rate as a multiple of the line's wire rate (target >= 100x). The previous
version of our decoders (``git archive`` of ``BENCH_PREVIOUS_REF``, default
``main``; see ``_decode_common.PreviousDecoders``) decodes the same bytes in the
same run, in a subprocess, and its figure is printed beside ours.

Run: ``.venv/bin/python bench/bench_decode_monitors.py``
"""

from __future__ import annotations

import functools
import typing as t

from _decode_common import PreviousDecoders
from _decode_common import best_rate
from _decode_common import wire_rate

from devices import drivers
from devices.protocols import datex
from devices.protocols import hl7_monitor
from devices.protocols import intellivue

TARGET_BYTES = 1_000_000
READ_SIZE = 1024


def record(name: str) -> bytes:
    """About TARGET_BYTES of what the simulated device sends during a conversation."""
    driver = drivers.get(name)
    simulator = driver.simulator("normal", 1)
    decoder = driver.decoder()
    outgoing = getattr(decoder, "on_connect", lambda: b"")()
    chunks: list[bytes] = []
    size = 0
    now = 0.0
    while size < TARGET_BYTES:
        incoming = simulator.receive(outgoing) + simulator.output(now)
        decoder.feed(incoming)
        chunks.append(incoming)
        size += len(incoming)
        now += 5.0
        outgoing = getattr(decoder, "poll", lambda _now: b"")(now)
    return b"".join(chunks)


def ours(name: str, stream: bytes) -> int:
    decoder = drivers.get(name).decoder()
    getattr(decoder, "on_connect", lambda: b"")()
    count = 0
    for start in range(0, len(stream), READ_SIZE):
        count += len(decoder.feed(stream[start : start + READ_SIZE]))
    return count


def naive_datex(stream: bytes) -> int:
    count = 0
    frame = bytearray()
    escaped = False
    for byte in stream:
        if byte == datex.FLAG:
            if len(frame) > 1 and sum(frame[:-1]) & 0xFF == frame[-1]:
                record_bytes = bytes(frame[:-1])
                descs = datex.subrecords(record_bytes)
                if not isinstance(descs, str) and descs:
                    start = datex.HEADER_SIZE + descs[0][0] + datex.CLASS_OFFSET
                    count += len(datex.decode_basic(record_bytes[start : start + datex.CLASS_SIZE], None))
            frame = bytearray()
            escaped = False
        elif byte == datex.ESCAPE:
            escaped = True
        else:
            frame.append(byte ^ datex.ESCAPE_XOR if escaped else byte)
            escaped = False
    return count


def _fcs_table() -> tuple[int, ...]:
    """The RFC 1662 lookup table, for the baseline's running FCS."""
    table = []
    for byte in range(256):
        value = byte
        for _ in range(8):
            value = (value >> 1) ^ 0x8408 if value & 1 else value >> 1
        table.append(value)
    return tuple(table)


FCS_TABLE = _fcs_table()


def naive_intellivue(stream: bytes) -> int:
    count = 0
    frame = bytearray()
    inside = escaped = False
    fcs = 0xFFFF
    table = FCS_TABLE
    for byte in stream:
        if byte == intellivue.BOF:
            frame, inside, escaped, fcs = bytearray(), True, False, 0xFFFF
        elif byte == intellivue.EOF and inside:
            inside = False
            if len(frame) > 6 and fcs == 0xF0B8:
                message = intellivue.user_data(bytes(frame[:-2]))
                if isinstance(message, bytes) and message[:1] == b"\xe1":
                    ro_type, _, command, body = intellivue.split_data_message(message)
                    if ro_type == intellivue.RORS_APDU and command == intellivue.CMD_CONFIRMED_ACTION:
                        count += len(intellivue.poll_reply_events(body[intellivue.ACTION_RESULT.size :]))
        elif inside and byte == intellivue.ESCAPE:
            escaped = True
        elif inside:
            value = byte ^ intellivue.ESCAPE_XOR if escaped else byte
            escaped = False
            frame.append(value)
            fcs = (fcs >> 8) ^ table[(fcs ^ value) & 0xFF]
    return count


def naive_hl7(stream: bytes) -> int:
    count = 0
    block = bytearray()
    inside = False
    for byte in stream:
        if byte == 0x0B:
            block, inside = bytearray(), True
        elif byte == 0x1C and inside:
            inside = False
            message = hl7_monitor.parse_message(bytes(block))
            if not isinstance(message, str):
                count += len(hl7_monitor.observations(message))
        elif inside:
            block.append(byte)
    return count


NAIVE: dict[str, t.Callable[[bytes], int]] = {
    "datex-as3": naive_datex,
    "intellivue-mib": naive_intellivue,
    "hl7-monitor": naive_hl7,
}


def main() -> None:
    previous = PreviousDecoders()
    print(f"previous version: {previous.ref} at {previous.commit}")
    print(f"{'driver':<16}{'stream':>10}{'ours B/s':>14}{'x wire':>9}{'prev B/s':>14}{'x wire':>9}"
          f"{'naive B/s':>14}{'x wire':>9}  readings (ours/prev)")
    try:
        for name, naive in NAIVE.items():
            stream = record(name)
            ours_rate, _ = best_rate(functools.partial(ours, name, stream), len(stream))
            naive_rate, _ = best_rate(functools.partial(naive, stream), len(stream))
            before = previous.rate(name, stream, READ_SIZE)
            prev_rate, prev_found = before if before else (float("nan"), 0)
            wire = wire_rate(drivers.get(name).serial)
            print(f"{name:<16}{len(stream):>10}{ours_rate:>14,.0f}{ours_rate / wire:>9,.0f}{prev_rate:>14,.0f}"
                  f"{prev_rate / wire:>9,.0f}{naive_rate:>14,.0f}{naive_rate / wire:>9,.0f}  "
                  f"{readings(name, stream)}/{prev_found}")
    finally:
        previous.close()
    print("wire rates: datex-as3 19200 8E1, intellivue-mib and hl7-monitor 115200 8N1 (payload bytes/s)")


def readings(name: str, stream: bytes) -> int:
    """Measurements our decoder finds in ``stream`` (the events figure counts every event)."""
    decoder = drivers.get(name).decoder()
    getattr(decoder, "on_connect", lambda: b"")()
    return sum(type(event).__name__ == "Measurement"
               for start in range(0, len(stream), READ_SIZE) for event in decoder.feed(stream[start:start + READ_SIZE]))


if __name__ == "__main__":
    main()
