"""Nonin pulse oximeters: binary data formats 2, 7, 8 and 13, and the ASCII line models.

Drivers: ``nonin-df2``, ``nonin-df7``, ``nonin-df8`` (streaming SpO2 and pulse
with status bits), ``nonin-df13`` (SmartPoint spot check with a device time and
memory replay) and ``nonin-ascii`` (``SPO2=097 HR=072`` lines of the Avant,
8500 and 9847 families).

Sources, for every layout fact below unless another is named: "Onyx II Model
9560 Bluetooth Fingertip Oximeter, OEM Specification and Technical
Information", Nonin doc 6470-000-01 (2008), PDF in ``mattjlewis/NoninPulseOx``
(``Nonin 9560 Bluetooth Specification.pdf``). Link 9600 8N1 and set-format
command p. 3-4; DF13 pp. 5-7 (date and time bytes are BCD, p. 6); DF2 pp. 7-10;
DF7 pp. 11-14; DF8 pp. 15-16. The WristOx2 3150 lists the same formats.

What the decoders call a reading, and why:

* HR 511 and SpO2 127 are Nonin's "no data" values: ``value=None``, ``no_data``.
* The values decoded are the ones "formatted for display" (DF8 carries only
  those; in DF2/DF7 they are SpO2-D, float frame 9, and HR-D, frames 20-21).
  The spec calls them "the most reliable readings possible during periods of
  artifact" (p. 9, p. 14, p. 16), so the artifact bit (ARTF) keeps the value and
  adds the flag ``artifact``; the recording values of frames 1-3 are "retained
  for legacy purposes" and not used.
* The sensor alarm (SNSA) is set for the ten seconds the display values linger
  after the finger comes out: those numbers are stale, so SNSA voids them
  (``sensor_off``). Out of track (OOT, "sustained periods of artifact") also
  voids them: our policy, since a number the oximeter could not track is not
  one to chart; the assistant re-measures.
* Perfusion (DF2/DF7): the oximeter marks each pulse by setting RPRF/GPRF for 12
  frames, green ``01``, yellow ``11``, red ``10`` (p. 8). The colour is read
  frame by frame, never ORed across frames (a green pulse and a red pulse are
  not a yellow one); a packet reports its worst pulse: red ``low_perfusion``,
  yellow ``marginal_perfusion``, green no flag.
* Reserved bits "may be 0 or 1" and reserved bytes are "undefined (0 to 255)":
  they are ignored everywhere (masked out of HR and SpO2 bytes too), never a
  reason to drop a frame.
* DF8 has no checksum: its only sync rule is that the first byte of a frame is
  the only one with bit 7 set, which random bytes satisfy often. A DF8 frame is
  therefore trusted only when its SpO2 (0-100, 127) and pulse (18-321, 511; the
  ranges of spec p. 1) are possible and it is one of :data:`DF8_LOCK_FRAMES`
  such frames in a row; once locked, the decoder emits each following frame as
  it arrives.
* DF2 and DF7 values are spread over a 25-frame packet, so a packet is decoded
  only when all 25 frames arrived intact from the frame carrying SYNC.

Bit maps are data (:data:`DF8_LAYOUTS`, :data:`STREAM_STATUS_BITS`,
:data:`DF13_BITS`). DF8 has a second public bit map, read by another model's
decoder (``drphrozen/javautilityclasses``
``NoninAndroid/src/dk/iha/nonin/Format8.java``, 2011): byte 1 bit 6 "sensor
disconnected", byte 4 bits 3-0 sensor faulty, spot-check mode, battery
critical, battery low. Which one an oximeter uses is chosen per device with
``df8_layout`` in ``[[devices]]``; the default is the documented one.
**Assumption to verify**: the Nonin model that sends the second map is not
named in its source.

The ASCII models' line (``SPO2=XXX HR=YYY``, ``---`` for no data, `` F`` fast
mode, ``*`` event mark, the 9847's ``HH:MM:SS`` prefix) is from their operator
manuals (manualslib.com: Avant 4100 p. 35, 8500 p. 21, 9847 p. 44; not in our
reference as sample lines).

Vendor samples: the spec prints no sample frame of any format, and none of the
ASCII manuals prints a sample line: No vendor sample exists for these drivers.
The tests use frames built from the layout tables of the spec (with recomputed
checksums), labelled as such; the set-format and set-time command examples of
pp. 3-4 are vendor samples.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from devices.protocols.base import DeviceState
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.protocols.framing import ARTIFACT
from devices.protocols.framing import LOW_BATTERY
from devices.protocols.framing import NO_DATA
from devices.protocols.framing import SENSOR_OFF
from devices.protocols.framing import ByteScanner
from devices.protocols.framing import ConditionTracker
from devices.protocols.framing import Discards
from devices.protocols.framing import LineDecoder
from devices.protocols.framing import hunt
from devices.protocols.framing import key_values
from devices.protocols.framing import sum8

NONIN_MISSING_HR = 511
NONIN_MISSING_SPO2 = 127
ACK = 0x06
NAK = 0x15
STX = 0x02
ETX = 0x03

FORMAT_CODES: dict[str, int] = {"df2": 0x02, "df7": 0x07, "df8": 0x08, "df13": 0x0D}
"""The ZZ byte of the set-format command for each data format."""


def set_format_command(code: int) -> bytes:
    """The ``02 70 02 02 ZZ 03`` command that selects data format ``code``.

    The device accepts it only within 5 s of the link coming up and answers
    ``06`` (ACK) or ``15`` (NAK); the choice is kept in non-volatile memory.
    """
    return bytes((STX, 0x70, 0x02, 0x02, code, ETX))


@dataclass(frozen=True, slots=True)
class Bit:
    """One status bit: where it is, which flag it raises, and whether it voids the values.

    ``inverted`` raises the flag when the bit is clear (DF13's SPA bit marks a
    high-quality reading; its absence is what the assistant needs to see).
    """

    byte: int
    mask: int
    flag: str
    voids: bool = False
    inverted: bool = False


def _flags(frame: bytes | bytearray, bits: tuple[Bit, ...]) -> tuple[frozenset[str], bool]:
    """The flags ``bits`` raise in ``frame`` and whether any of them voids the values."""
    raised: set[str] = set()
    voided = False
    for bit in bits:
        if bool(frame[bit.byte] & bit.mask) != bit.inverted:
            raised.add(bit.flag)
            voided = voided or bit.voids
    return frozenset(raised), voided


def _oximetry(spo2: int, hr: int, flags: frozenset[str], voided: bool,
              device_time: dt.datetime | None = None) -> list[Event]:
    """SpO2 and pulse measurements, with Nonin's missing-value sentinels turned into flags."""
    events: list[Event] = []
    for metric, unit, raw, missing in (("spo2", "%", spo2, NONIN_MISSING_SPO2),
                                       ("pulse_oximeter", "/min", hr, NONIN_MISSING_HR)):
        if raw == missing:
            events.append(Measurement(metric, None, unit, flags | {NO_DATA}, device_time))
        else:
            events.append(Measurement(metric, None if voided else Decimal(raw), unit, flags, device_time))
    return events


class _FormatSelect(ByteScanner[Event]):
    """The binary formats' scanner with the connect-time conversation: select the format, read the reply.

    The ACK or NAK byte can only be told apart from stream bytes because it comes
    first after the command, so it is recognised only while a reply is awaited.
    """

    def __init__(self, code: int, max_frame: int, discard_run: int) -> None:
        super().__init__(max_frame, discard_run)
        self._code = code
        self._awaiting_reply = False

    def on_connect(self) -> bytes:
        """Write the set-format command so the device streams the format this decoder reads."""
        self._awaiting_reply = True
        return set_format_command(self._code)

    def poll(self, now: float) -> bytes:
        """Nothing: the binary formats stream without being asked."""
        return b""

    def _reply(self, byte: int, out: list[Event]) -> bool:
        """Consume ``byte`` if it is the awaited ACK/NAK and report it; say whether it was."""
        if not self._awaiting_reply or byte not in (ACK, NAK):
            return False
        self._awaiting_reply = False
        if byte == ACK:
            out.append(DeviceState(frozenset({"format_accepted"}), f"data format {self._code:#04x} selected"))
        else:
            out.append(DeviceState(frozenset({"format_rejected"}), f"data format {self._code:#04x} refused"))
        return True


# ---- DF2 and DF7: 5-byte frames, 25 frames per packet ---------------------------------------------

STATUS_ALWAYS = 0x80
STATUS_SYNC = 0x01
FRAME_LEN = 5
FRAMES_PER_PACKET = 25

STREAM_STATUS_BITS: tuple[Bit, ...] = (
    Bit(0, 0x20, ARTIFACT),
    Bit(0, 0x10, "out_of_track", voids=True),
    Bit(0, 0x08, SENSOR_OFF, voids=True),
)
"""DF2/DF7 STATUS byte: bit 7 always set, bit 6 reserved, ARTF, OOT, SNSA, RPRF, GPRF, SYNC (pp. 8, 12)."""

PERFUSION_MASK = 0x06
GREEN, YELLOW, RED = 0x02, 0x06, 0x04
PERFUSION_RANK: dict[int, int] = {0: 0, GREEN: 1, YELLOW: 2, RED: 3}
"""RPRF (bit 2) and GPRF (bit 1) of one frame: green 01, yellow 11, red 10; worse ranks higher."""
PERFUSION_FLAGS: dict[int, str] = {YELLOW: "marginal_perfusion", RED: "low_perfusion"}

STAT2_BITS: tuple[Bit, ...] = (Bit(0, 0x01, LOW_BATTERY),)
"""STAT2 float (frame 8): bit 0 LOW BAT; bit 5 (SPA) is informational while streaming; the rest reserved."""


@dataclass(frozen=True, slots=True)
class StreamLayout:
    """Where things are in a DF2 or DF7 frame and which float slot (frame number - 1) carries what."""

    name: str
    code: int
    lead: int | None
    status_at: int
    float_at: int
    hr_msb_frame: int = 0
    hr_lsb_frame: int = 1
    spo2_frame: int = 2
    stat2_frame: int = 7
    spo2_display_frame: int = 8
    hr_display_msb_frame: int = 19
    hr_display_lsb_frame: int = 20


DF2 = StreamLayout("df2", 0x02, lead=0x01, status_at=1, float_at=3)
DF7 = StreamLayout("df7", 0x07, lead=None, status_at=0, float_at=3)


def encode_stream_frame(layout: StreamLayout, status: int, pleth: int, value: int) -> bytes:
    """One frame of ``layout`` with its checksum (the simulator's half of the layout)."""
    if layout.lead is None:
        body = bytes((status | STATUS_ALWAYS, (pleth >> 8) & 0xFF, pleth & 0xFF, value))
    else:
        body = bytes((layout.lead, status | STATUS_ALWAYS, pleth & 0xFF, value))
    return body + bytes((sum8(body),))


def stream_floats(hr: int, spo2: int, stat2: int, reserved: int = 0) -> list[int]:
    """The FLOAT byte of each of the 25 frames of a packet: recording and display values alike.

    Slots not decoded here (firmware revision, timer, extended and fast values)
    carry ``reserved``, which the spec leaves undefined.
    """
    floats = [reserved] * FRAMES_PER_PACKET
    layout = DF2
    for msb, lsb, oxygen in ((layout.hr_msb_frame, layout.hr_lsb_frame, layout.spo2_frame),
                             (layout.hr_display_msb_frame, layout.hr_display_lsb_frame, layout.spo2_display_frame)):
        floats[msb] = (hr >> 7) & 0x03
        floats[lsb] = hr & 0x7F
        floats[oxygen] = spo2
    floats[layout.stat2_frame] = stat2
    return floats


class StreamDecoder(_FormatSelect):
    """DF2 or DF7 decoder: hunts frames by checksum, assembles packets from the SYNC frame.

    Frames before the first SYNC frame are the tail of a packet that started
    before we connected and are ignored; a packet cut short by a lost frame is
    rejected whole, because its floats would land in the wrong slots.
    """

    def __init__(self, layout: StreamLayout) -> None:
        super().__init__(layout.code, FRAME_LEN, 64)
        self._layout = layout
        self._packet: list[tuple[int, int]] = []
        self._synced = False
        self._orphans = Discards(FRAMES_PER_PACKET * FRAME_LEN)
        self._conditions = ConditionTracker()

    def _scan(self, buf: bytearray, out: list[Event]) -> int:
        lead = self._layout.lead
        at = self._layout.status_at
        value_at = self._layout.float_at
        i = 0
        n = len(buf)
        while i < n:
            if self._awaiting_reply and self._reply(buf[i], out):
                i += 1
                continue
            # A frame starts with the lead byte (DF2) and a status byte with bit 7 set.
            if (lead is not None and buf[i] != lead) or (i + at < n and not buf[i + at] & STATUS_ALWAYS):
                self._discards.add(1, "no sync", out)
                i += 1
                continue
            if n - i < FRAME_LEN:
                break
            if (buf[i] + buf[i + 1] + buf[i + 2] + buf[i + 3]) & 0xFF != buf[i + 4]:
                self._discards.add(1, "bad checksum", out)
                i += 1
                continue
            self._discards.flush(out)
            self._frame(buf[i + at], buf[i + value_at], out)
            i += FRAME_LEN
        return i

    def _frame(self, status: int, value: int, out: list[Event]) -> None:
        if status & STATUS_SYNC:
            self._orphans.flush(out)
            if self._packet:
                out.append(FrameRejected("incomplete packet", len(self._packet) * FRAME_LEN))
            self._packet = [(status, value)]
            self._synced = True
        elif self._packet:
            self._packet.append((status, value))
        elif self._synced:
            self._orphans.add(FRAME_LEN, "frame outside packet", out)
        if len(self._packet) == FRAMES_PER_PACKET:
            # The unit that yields readings is the packet of 25 five-byte frames.
            self.frames += 1
            self._decode_packet(self._packet, out)
            self._packet = []

    def _decode_packet(self, packet: list[tuple[int, int]], out: list[Event]) -> None:
        layout = self._layout
        status = 0
        perfusion = 0
        for frame_status, _ in packet:
            status |= frame_status
            colour = frame_status & PERFUSION_MASK
            if PERFUSION_RANK[colour] > PERFUSION_RANK[perfusion]:
                perfusion = colour
        floats = [value for _, value in packet]
        spo2 = floats[layout.spo2_display_frame] & 0x7F
        if spo2 > 100 and spo2 != NONIN_MISSING_SPO2:
            out.append(FrameRejected("SpO2 out of range", FRAMES_PER_PACKET * FRAME_LEN))
            return
        hr = (floats[layout.hr_display_msb_frame] & 0x03) << 7 | (floats[layout.hr_display_lsb_frame] & 0x7F)
        flags, voided = _flags(bytes((status,)), STREAM_STATUS_BITS)
        stat2_flags, _ = _flags(bytes((floats[layout.stat2_frame],)), STAT2_BITS)
        flags |= stat2_flags
        if perfusion in PERFUSION_FLAGS:
            flags |= {PERFUSION_FLAGS[perfusion]}
        self._conditions.update(flags, out)
        out.extend(_oximetry(spo2, hr, flags, voided))


# ---- DF8: 4 bytes per second, no checksum -----------------------------------------------------------

DF8_FRAME = 4

DF8_LAYOUTS: dict[str, tuple[Bit, ...]] = {
    "onyx-9560": (
        Bit(0, 0x20, "out_of_track", voids=True),
        Bit(0, 0x10, "low_perfusion"),
        Bit(0, 0x08, "marginal_perfusion"),
        Bit(0, 0x04, ARTIFACT),
        Bit(3, 0x08, SENSOR_OFF, voids=True),
        Bit(3, 0x01, LOW_BATTERY),
    ),
    "extended-status": (
        Bit(0, 0x40, SENSOR_OFF, voids=True),
        Bit(0, 0x20, "out_of_track", voids=True),
        Bit(0, 0x10, "low_perfusion"),
        Bit(0, 0x08, "marginal_perfusion"),
        Bit(0, 0x04, ARTIFACT),
        Bit(3, 0x08, "sensor_fault", voids=True),
        Bit(3, 0x04, "spot_check_mode"),
        Bit(3, 0x02, "battery_critical"),
        Bit(3, 0x01, LOW_BATTERY),
    ),
}
"""DF8 bit maps; the first is the default. ``onyx-9560``: doc 6470-000-01 p. 15, b1 ``1 R OOT LPRF MPRF
ARTF HR8 HR7``, b4 ``0 R SPA R SNSA R R LOWBAT`` (R and SPA ignored). ``extended-status``: ``Format8.java``
of ``drphrozen/javautilityclasses``, b1 bit 6 sensor disconnected, b4 sensor faulty, spot-check mode,
battery critical, battery low."""

DF8_RESERVED: dict[str, tuple[int, int, int, int]] = {"onyx-9560": (0x40, 0x00, 0x00, 0x56)}
"""Bits each layout leaves reserved (the simulator sets them to show they are ignored)."""


def encode_df8(hr: int, spo2: int, flags: frozenset[str], layout: str = "onyx-9560", *,
               reserved: bool = False) -> bytes:
    """One DF8 frame carrying ``hr``, ``spo2`` and the status bits of ``flags`` in ``layout``'s map.

    :param reserved: set every reserved bit, as the spec allows a device to.
    """
    frame = bytearray((0x80 | (hr >> 7) & 0x03, hr & 0x7F, spo2 & 0x7F, 0x00))
    for bit in DF8_LAYOUTS[layout]:
        if bit.flag in flags:
            frame[bit.byte] |= bit.mask
    if reserved:
        for k, mask in enumerate(DF8_RESERVED.get(layout, (0, 0, 0, 0))):
            frame[k] |= mask
    return bytes(frame)


DF8_LOCK_FRAMES = 4
"""Consecutive well-formed frames that establish the alignment before the first of them is trusted."""
HR_RANGE = range(18, 322)
"""The 9560's pulse rate range, 18 to 321 /min (spec p. 1); with 511 (no data) the only HR a frame may carry."""


class Df8Decoder(_FormatSelect):
    """DF8 decoder: sync on bit 7, trust frames only once :data:`DF8_LOCK_FRAMES` in a row line up.

    Without a checksum, a frame is judged by what the spec fixes: bit 7 set in
    byte 1 only, SpO2 0-100 or 127, pulse 18-321 or 511. Random bytes pass that
    about once in 35 positions, so the alignment is trusted only after four such
    frames in a row (four seconds of stream at connect); while locked, each
    frame is emitted as it arrives, bytes with bit 7 clear between frames (line
    noise that cannot start a frame) are skipped, and one bad frame drops the
    lock.

    :param df8_layout: a key of :data:`DF8_LAYOUTS` (the ``[[devices]]`` option of the same name).
    """

    def __init__(self, df8_layout: str = "onyx-9560") -> None:
        super().__init__(FORMAT_CODES["df8"], DF8_LOCK_FRAMES * DF8_FRAME, 64)
        self._bits = DF8_LAYOUTS[df8_layout]
        self._pending: list[bytes] = []
        self._locked = False
        self._conditions = ConditionTracker()

    @property
    def buffered(self) -> int:
        """Bytes held: an incomplete frame plus the frames awaiting confirmation."""
        return len(self._buf) + DF8_FRAME * len(self._pending)

    def _valid(self, i: int) -> bool:
        buf = self._buf
        if buf[i + 1] & 0x80 or buf[i + 2] & 0x80 or buf[i + 3] & 0x80:
            return False
        spo2 = buf[i + 2]
        hr = (buf[i] & 0x03) << 7 | buf[i + 1]
        return (spo2 <= 100 or spo2 == NONIN_MISSING_SPO2) and (hr in HR_RANGE or hr == NONIN_MISSING_HR)

    def _lose_lock(self, out: list[Event]) -> None:
        if self._pending:
            self._discards.add(DF8_FRAME * len(self._pending), "unconfirmed frame", out)
            self._pending.clear()
        self._locked = False

    def _scan(self, buf: bytearray, out: list[Event]) -> int:
        """Decode the frames in ``buf``; frames are emitted only once the alignment is confirmed."""
        i = 0
        n = len(buf)
        while i < n:
            if self._reply(buf[i], out):
                i += 1
                continue
            if not buf[i] & 0x80:
                # Never a frame start: skipped, and a locked stream stays locked (a glitch between frames).
                if not self._locked:
                    self._lose_lock(out)
                self._discards.add(1, "no sync", out)
                i += 1
                continue
            if n - i < DF8_FRAME:
                break
            if not self._valid(i):
                self._lose_lock(out)
                self._discards.add(1, "bad frame", out)
                i += 1
                continue
            frame = bytes(buf[i:i + DF8_FRAME])
            i += DF8_FRAME
            if self._locked:
                self._emit(frame, out)
                continue
            self._pending.append(frame)
            if len(self._pending) == DF8_LOCK_FRAMES:
                self._locked = True
                for confirmed in self._pending:
                    self._emit(confirmed, out)
                self._pending.clear()
        return i

    def _emit(self, frame: bytes, out: list[Event]) -> None:
        self.frames += 1
        self._discards.flush(out)
        flags, voided = _flags(frame, self._bits)
        self._conditions.update(flags, out)
        out.extend(_oximetry(frame[2], (frame[0] & 0x03) << 7 | frame[1], flags, voided))


# ---- DF13: SmartPoint spot check ------------------------------------------------------------------

DF13_SYNC = b"\x00\x02\x00\x0d"
DF13_MIN_LENGTH = 14
DF13_MAX_FRAME = 64

DF13_BITS: tuple[Bit, ...] = (
    Bit(14, 0x02, "low_quality", inverted=True),
    Bit(14, 0x01, NO_DATA, voids=True),
    Bit(15, 0x10, "from_memory"),
    Bit(15, 0x01, LOW_BATTERY),
)
"""DF13 status bits by frame offset: STATUS_MSB bit 1 SPA (clear = not a high-quality reading),
bit 0 NOMS; STATUS_LSB bit 4 MEM (replayed from memory), bit 0 LOW BAT."""


def _bcd(byte: int) -> int:
    high, low = byte >> 4, byte & 0x0F
    if high > 9 or low > 9:
        raise ValueError(f"not BCD: {byte:#04x}")
    return high * 10 + low


def _df13_time(fields: bytes) -> dt.datetime | None:
    """Century, YY, MM, DD, hh, mm, ss as a naive device-local datetime; ``None`` if not a valid time.

    A battery change clears the clock, so an invalid time is expected and must
    not cost the reading.
    """
    try:
        century, year, month, day, hour, minute, second = (_bcd(b) for b in fields)
        return dt.datetime(century * 100 + year, month, day, hour, minute, second)
    except ValueError:
        return None


def _to_bcd(value: int) -> int:
    return (value // 10) << 4 | value % 10


DF13_RESERVED: tuple[tuple[int, int], ...] = ((14, 0xFC), (15, 0xEE), (16, 0xFE), (18, 0xFF), (19, 0x80))
"""(frame offset, mask) of the bits DF13 leaves reserved: status MSB and LSB, HR MSB, byte 19, SpO2 bit 7."""


def encode_df13(hr: int, spo2: int, flags: frozenset[str], when: dt.datetime, *, reserved: bool = False) -> bytes:
    """One 22-byte DF13 frame (the simulator's half of :data:`DF13_BITS`); ``reserved`` sets every reserved bit."""
    body = bytearray(
        (_to_bcd(when.year // 100), _to_bcd(when.year % 100), _to_bcd(when.month), _to_bcd(when.day),
         _to_bcd(when.hour), _to_bcd(when.minute), _to_bcd(when.second), 0, 0, 0, hr >> 8, hr & 0xFF, 0, spo2)
    )
    for bit in DF13_BITS:
        if (bit.flag in flags) != bit.inverted:
            body[bit.byte - 6] |= bit.mask
    if reserved:
        for offset, mask in DF13_RESERVED:
            body[offset - 6] |= mask
    return DF13_SYNC + len(body).to_bytes(2, "big") + bytes(body) + bytes((sum8(body), ETX))


class Df13Decoder(_FormatSelect):
    """DF13 decoder: frames found by their 4-byte sync, checked by length, checksum and ETX."""

    def __init__(self) -> None:
        super().__init__(FORMAT_CODES["df13"], DF13_MAX_FRAME, DF13_MAX_FRAME)
        self._conditions = ConditionTracker()

    def _scan(self, buf: bytearray, out: list[Event]) -> int:
        i = 0
        n = len(buf)
        while i < n:
            if self._reply(buf[i], out):
                i += 1
                continue
            i, found = hunt(buf, DF13_SYNC, i, self._discards, out)
            if not found:
                break
            if n - i < 6:
                break
            length = buf[i + 4] << 8 | buf[i + 5]
            total = 8 + length
            if length < DF13_MIN_LENGTH or total > DF13_MAX_FRAME:
                self._discards.add(1, "bad length", out)
                i += 1
                continue
            if n - i < total:
                break
            frame = bytes(buf[i:i + total])
            if frame[-1] != ETX or sum8(frame[6:6 + length]) != frame[6 + length]:
                self._discards.add(1, "bad checksum", out)
                i += 1
                continue
            self._discards.flush(out)
            self.frames += 1
            self._decode(frame, out)
            i += total
        return i

    def _decode(self, frame: bytes, out: list[Event]) -> None:
        flags, voided = _flags(frame, DF13_BITS)
        when = _df13_time(frame[6:13])
        if when is None:
            flags |= {"bad_device_time"}
        spo2 = frame[19] & 0x7F
        if spo2 > 100 and spo2 != NONIN_MISSING_SPO2:
            out.append(FrameRejected("SpO2 out of range", len(frame)))
            return
        self._conditions.update(flags, out)
        out.extend(_oximetry(spo2, (frame[16] & 0x01) << 8 | frame[17], flags, voided, when))


# ---- ASCII line models ----------------------------------------------------------------------------

ASCII_MAX_LINE = 80
ASCII_FIELDS: dict[str, tuple[str, str, int]] = {
    "SPO2": ("spo2", "%", 100),
    "HR": ("pulse_oximeter", "/min", 400),
}
"""Field name -> (metric, unit, largest value the device can display)."""

ASCII_MARKS: dict[str, str] = {"F": "fast_averaging", "*": "event_marked"}
"""Bare tokens (and a trailing ``*`` on a value) with a meaning."""


class AsciiDecoder(LineDecoder):
    """``SPO2=ddd HR=ddd`` lines (d a digit) (optionally ``HH:MM:SS`` first, `` F`` or ``*`` after), one pair per line.

    The 9847's time prefix has no date, so it is not used as a device time; the
    host receive time orders these readings.
    """

    max_line = ASCII_MAX_LINE

    def _line(self, line: bytes, out: list[Event]) -> None:
        text = line.decode("ascii")
        bare, pairs = key_values(text.replace("*", " * "))
        flags = frozenset(ASCII_MARKS[token] for token in bare if token in ASCII_MARKS)
        events: list[Event] = []
        for key, (metric, unit, highest) in ASCII_FIELDS.items():
            raw = pairs.get(key)
            if raw is None:
                out.append(FrameRejected(f"no {key} field", len(line)))
                return
            if raw and set(raw) == {"-"}:
                events.append(Measurement(metric, None, unit, flags | {NO_DATA}))
            elif raw.isdigit() and int(raw) <= highest:
                events.append(Measurement(metric, Decimal(int(raw)), unit, flags))
            else:
                out.append(FrameRejected(f"bad {key} value", len(line)))
                return
        out.extend(events)
