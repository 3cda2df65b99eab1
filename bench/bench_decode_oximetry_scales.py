"""Decode throughput of the oximeter, thermometer and scale decoders against their wire rate.

For each driver: a simulated stream (normal scenario, about 200 kB) is decoded in
4 kB reads, as a serial port delivers it; the figure is bytes per second and
that rate as a multiple of the wire rate (9600 baud 8N1 = 960 bytes/s). The
target is 100x the wire rate, so one gateway process can serve many stations.

Baselines, measured in the same run on the same bytes: the previous version of
our decoders (``git archive`` of ``BENCH_PREVIOUS_REF``, default ``main``, run
in a subprocess; see ``_decode_common.PreviousDecoders``), and a naive decoder
of the same protocol kept in this file, written the obvious way (a list as a
sliding window, one byte at a time, for the binary formats; a regular expression
per line or record for the text ones). Ours and the naive one must find the same
number of readings, or the comparison is void and the script says so; the
previous version's count is printed beside ours, since where it rejected what
the vendor documents (Tanita's CS, SureTemp's repeated final record) it differs
on purpose.

Run: ``.venv/bin/python bench/bench_decode_oximetry_scales.py``
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import struct
from collections.abc import Callable
from decimal import Decimal

from _decode_common import PreviousDecoders
from _decode_common import best_rate
from _decode_common import wire_rate

from devices import drivers
from devices.protocols.base import Measurement

TARGET_BYTES = 200_000
READ_SIZE = 4096


def stream(name: str) -> bytes:
    """About TARGET_BYTES of the simulated device's normal output (or answers to polls)."""
    driver = drivers.get(name)
    simulator = driver.simulator("normal", 1)
    chunks: list[bytes] = []
    size = 0
    if driver.poll_interval is not None:
        decoder = driver.decoder()
        request = decoder.poll(0.0)  # type: ignore[attr-defined]
        while size < TARGET_BYTES:
            chunks.append(simulator.receive(request))
            size += len(chunks[-1])
        return b"".join(chunks)
    now = 0.0
    while size < TARGET_BYTES:
        chunks.append(simulator.output(now))
        size += len(chunks[-1])
        now += 1.0
    return b"".join(chunks)


def ours(name: str, data: bytes) -> int:
    decoder = drivers.get(name).decoder()
    readings = 0
    for start in range(0, len(data), READ_SIZE):
        for event in decoder.feed(data[start:start + READ_SIZE]):
            readings += type(event).__name__ == "Measurement"
    return readings


# ---- naive baselines ------------------------------------------------------------------------------
# Each builds the same Measurement objects as the real decoder for a normal stream, so the difference
# measured is the framing strategy, not the work done per reading.


def _pair(spo2: int, hr: int, when: dt.datetime | None = None) -> list[Measurement]:
    return [Measurement("spo2", Decimal(spo2), "%", frozenset(), when),
            Measurement("pulse_oximeter", Decimal(hr), "/min", frozenset(), when)]


def naive_stream_packets(data: bytes, lead: int | None) -> int:
    """DF2/DF7: slide a 5-byte list window byte by byte, checksum each position, collect 25-frame packets."""
    window: list[int] = []
    floats: list[int] | None = None
    readings: list[Measurement] = []
    for byte in data:
        window.append(byte)
        if len(window) < 5:
            continue
        ok = sum(window[:4]) & 0xFF == window[4] and (lead is None or window[0] == lead)
        status = window[0 if lead is None else 1]
        if ok and status & 0x80:
            if status & 0x01:
                floats = []
            if floats is not None:
                floats.append(window[3])
                if len(floats) == 25:
                    readings += _pair(floats[2], (floats[0] & 3) << 7 | floats[1])
                    floats = None
            window.clear()
        else:
            window.pop(0)
    return len(readings)


def naive_df8(data: bytes) -> int:
    """DF8: a 4-byte list window; a frame is bit 7 set on the first byte only."""
    window: list[int] = []
    readings: list[Measurement] = []
    for byte in data:
        window.append(byte)
        if len(window) < 4:
            continue
        if window[0] & 0x80 and not any(b & 0x80 for b in window[1:]):
            readings += _pair(window[2], (window[0] & 3) << 7 | window[1])
            window.clear()
        else:
            window.pop(0)
    return len(readings)


def naive_framed(data: bytes, header: bytes, length_of: Callable[[list[int]], int],
                 decode: Callable[[list[int]], list[Measurement] | None]) -> int:
    """DF13 / SureTemp: list window, header check, wait for the length, decode or drop one byte."""
    window: list[int] = []
    readings: list[Measurement] = []
    for byte in data:
        window.append(byte)
        while window:
            if bytes(window[:len(header)]) != header[:len(window)]:
                window.pop(0)
                continue
            if len(window) < 8 or len(window) < length_of(window):
                break
            frame = window[:length_of(window)]
            found = decode(frame)
            if found is None:
                window.pop(0)
            else:
                readings += found
                del window[:len(frame)]
    return len(readings)


def _bcd(byte: int) -> int:
    return (byte >> 4) * 10 + (byte & 0x0F)


def _df13(frame: list[int]) -> list[Measurement] | None:
    if frame[-1] != 3 or sum(frame[6:-2]) & 0xFF != frame[-2]:
        return None
    c, y, mo, d, h, mi, se = (_bcd(b) for b in frame[6:13])
    return _pair(frame[19], frame[16] << 8 | frame[17], dt.datetime(c * 100 + y, mo, d, h, mi, se))


def naive_df13(data: bytes) -> int:
    return naive_framed(data, b"\x00\x02\x00\x0d", lambda w: 8 + (w[4] << 8 | w[5]), _df13)


def naive_suretemp(data: bytes) -> int:
    last: list[tuple[bool, bytes] | None] = [None]

    def decode(frame: list[int]) -> list[Measurement] | None:
        if sum(frame) & 0xFF:
            return None
        final = struct.unpack("<f", bytes(frame[8:12]))[0]
        state = frame[22]
        if state not in (3, 4, 5, 6, 7) or final == 0:
            last[0] = None
            return []
        key = (state in (6, 7), bytes(frame[8:12]))
        if key == last[0]:
            return []
        last[0] = key
        return [Measurement("temperature_oral", Decimal(f"{final:.2f}"), "K")]

    return naive_framed(data, b"\x03\x02\x10", lambda w: 9 + (w[6] | w[7] << 8), decode)


LINE = re.compile(rb"([^\n]*)\n")
NONIN_LINE = re.compile(r"SPO2=(\d+|-+)\s+HR=(\d+|-+)")
MASIMO_PAIR = re.compile(r"(\w+)=(\S+)")
TANITA_LINE = re.compile(r"^(.*,)CS,([0-9A-Fa-f]{2})$")
RICELAKE_LINE = re.compile(r"^ *(-?[\d.]+) (lb|kg) (Gross|Net) *$")
HOM_RECORD = re.compile(rb"\x1bR(.*?)\x1bE", re.DOTALL)
SCALE_UNITS = {"Wk": ("weight", "kg"), "Wp": ("weight", "[lb_av]"), "Hm": ("height", "cm"),
               "Hf": ("height", "[in_i]"), "MI": ("bmi", "kg/m2")}


def naive_lines(data: bytes, parse: Callable[[str], list[Measurement]]) -> int:
    """Text protocols: accumulate, cut lines with a regex, parse each with another."""
    buffer = b""
    readings: list[Measurement] = []
    for start in range(0, len(data), READ_SIZE):
        buffer += data[start:start + READ_SIZE]
        position = 0
        for match in LINE.finditer(buffer):
            readings += parse(match.group(1).decode("latin-1").strip())
            position = match.end()
        buffer = buffer[position:]
    return len(readings)


def naive_nonin_ascii(line: str) -> list[Measurement]:
    match = NONIN_LINE.search(line)
    return _pair(int(match.group(1)), int(match.group(2))) if match else []


def naive_masimo(line: str) -> list[Measurement]:
    pairs = dict(MASIMO_PAIR.findall(line))
    if "SPO2" not in pairs or "BPM" not in pairs:
        return []
    return _pair(int(pairs["SPO2"].rstrip("%")), int(pairs["BPM"])) + [
        Measurement("perfusion_index", Decimal(pairs["PI"].rstrip("%")), "%")]


def naive_tanita(line: str) -> list[Measurement]:
    match = TANITA_LINE.match(line.lstrip("\x00"))
    if not match:
        return []
    check = sum(match.group(1).encode("latin-1")) & 0xFF
    if f"{check:02X}" != match.group(2).upper():
        return []
    items = match.group(1).rstrip(",").split(",")
    pairs = dict(zip(items[0::2], items[1::2], strict=False))
    return [Measurement(metric, Decimal(pairs[key]), unit) for key, (metric, unit) in SCALE_UNITS.items()
            if key in pairs and Decimal(pairs[key]) > 0]


def naive_ricelake(line: str) -> list[Measurement]:
    match = RICELAKE_LINE.match(line)
    if not match:
        return []
    return [Measurement("weight", Decimal(match.group(1)), "kg" if match.group(2) == "kg" else "[lb_av]")]


def naive_healthometer(data: bytes) -> int:
    readings: list[Measurement] = []
    buffer = b""
    for start in range(0, len(data), READ_SIZE):
        buffer += data[start:start + READ_SIZE]
        position = 0
        for match in HOM_RECORD.finditer(buffer):
            fields = {f[:1].decode("ascii"): f[1:].decode("ascii") for f in match.group(1).split(b"\x1b") if f}
            metric = fields.get("N") == "m"
            for letter, name, unit in (("W", "weight", "kg" if metric else "[lb_av]"),
                                       ("H", "height", "cm" if metric else "[in_i]"), ("B", "bmi", "kg/m2")):
                if fields.get(letter, "").strip():
                    readings.append(Measurement(name, Decimal(fields[letter]), unit))
            position = match.end()
        buffer = buffer[position:]
    return len(readings)


BASELINES: dict[str, Callable[[bytes], int]] = {
    "nonin-df2": lambda d: naive_stream_packets(d, 0x01),
    "nonin-df7": lambda d: naive_stream_packets(d, None),
    "nonin-df8": naive_df8,
    "nonin-df13": naive_df13,
    "nonin-ascii": lambda d: naive_lines(d, naive_nonin_ascii),
    "masimo-ascii": lambda d: naive_lines(d, naive_masimo),
    "suretemp": naive_suretemp,
    "tanita": lambda d: naive_lines(d, naive_tanita),
    "ricelake": lambda d: naive_lines(d, naive_ricelake),
    "healthometer": naive_healthometer,
}


def main() -> None:
    previous = PreviousDecoders()
    header = (f"{'driver':<14}{'wire B/s':>9}{'ours B/s':>12}{'x wire':>9}{'prev B/s':>12}{'x wire':>9}"
              f"{'naive B/s':>12}{'x wire':>9}  readings (ours/prev)")
    print(f"previous version: {previous.ref} at {previous.commit}")
    print(header)
    print("-" * len(header))
    below_target = []
    try:
        for name, baseline in BASELINES.items():
            data = stream(name)
            wire = wire_rate(drivers.get(name).serial)
            rate, found = best_rate(functools.partial(ours, name, data), len(data))
            naive_rate, naive_found = best_rate(functools.partial(baseline, data), len(data))
            before = previous.rate(name, data, READ_SIZE)
            prev_rate, prev_found = before if before else (float("nan"), 0)
            agreement = "" if found == naive_found else f"  MISMATCH: naive found {naive_found}"
            print(f"{name:<14}{wire:>9.0f}{rate:>12,.0f}{rate / wire:>9,.0f}{prev_rate:>12,.0f}"
                  f"{prev_rate / wire:>9,.0f}{naive_rate:>12,.0f}{naive_rate / wire:>9,.0f}  "
                  f"{found}/{prev_found}{agreement}")
            if rate < 100 * wire:
                below_target.append(name)
    finally:
        previous.close()
    print()
    print("target >= 100x wire rate: " + ("met by every driver" if not below_target
                                          else "MISSED by " + ", ".join(below_target)))


if __name__ == "__main__":
    main()
