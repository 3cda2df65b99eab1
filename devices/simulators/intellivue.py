"""A simulated Philips IntelliVue monitor on its MIB/RS232 data export port.

Like the monitor, it sends nothing on its own: it accepts an association
request with an association result followed by its MDS Create event report,
answers numeric polls with the current SpO2, pulse, NIBP and temperature,
answers MDS polls (keep-alives) with an empty reply, and confirms a release.
Polls before the association are ignored, as the monitor ignores them.

The association result body is the request's presentation data echoed back:
the decoder only reads the session byte, and a real monitor's AARE could not be
confirmed byte for byte. Everything above it (frame header, FCS, escaping,
remote-operation headers, poll replies) uses the layouts of
:mod:`devices.protocols.intellivue`.
"""

from __future__ import annotations

import datetime as dt
import random
import struct
from decimal import Decimal

from devices.protocols.intellivue import AC_SPDU_SI
from devices.protocols.intellivue import ACTION_ARGUMENT
from devices.protocols.intellivue import ACTION_RESULT
from devices.protocols.intellivue import ASSOCIATION_REQUEST
from devices.protocols.intellivue import CMD_CONFIRMED_ACTION
from devices.protocols.intellivue import CMD_CONFIRMED_EVENT_REPORT
from devices.protocols.intellivue import CN_SPDU_SI
from devices.protocols.intellivue import DN_SPDU_SI
from devices.protocols.intellivue import EVENT_ARGUMENT
from devices.protocols.intellivue import FN_SPDU_SI
from devices.protocols.intellivue import LIST_HEAD
from devices.protocols.intellivue import NOM_ACT_POLL_MDIB_DATA
from devices.protocols.intellivue import NOM_ATTR_NU_CMPD_VAL_OBS
from devices.protocols.intellivue import NOM_ATTR_NU_VAL_OBS
from devices.protocols.intellivue import NOM_MOC_VMO_METRIC_NU
from devices.protocols.intellivue import NOM_MOC_VMS_MDS
from devices.protocols.intellivue import NOM_NOTI_MDS_CREAT
from devices.protocols.intellivue import NOM_PART_OBJ
from devices.protocols.intellivue import NU_OBS_VALUE
from devices.protocols.intellivue import POLL_REQUEST
from devices.protocols.intellivue import ROIV_APDU
from devices.protocols.intellivue import RORS_APDU
from devices.protocols.intellivue import IntelliVueFramer
from devices.protocols.intellivue import Malformed
from devices.protocols.intellivue import data_message
from devices.protocols.intellivue import encode_float
from devices.protocols.intellivue import encode_frame
from devices.protocols.intellivue import encode_time
from devices.protocols.intellivue import frame_bytes
from devices.protocols.intellivue import session_message
from devices.protocols.intellivue import split_data_message
from devices.protocols.intellivue import user_data
from devices.simulators._common import check_scenario
from devices.simulators._common import cuff_pressures
from devices.simulators._common import garbled

SPO2 = 0x4BB8
PLETH_PULSE = 0x4822
GENERIC_PULSE = 0x480A
"""NOM_PULS_RATE: the monitor's pulse from ECG or an arterial line; the decoder must not take it for SpO2's."""
NIBP_PULSE = 0xF0E5
SYSTOLIC = 0x4A05
DIASTOLIC = 0x4A06
MEAN = 0x4A07
TEMPERATURE = 0x4B48
PERCENT = 0x0220
BPM = 0x0AA0
MMHG = 0x0F20
DEGC = 0x17A0

STATE_NONE = 0x0000
STATE_QUESTIONABLE = 0x4000
STATE_UNAVAILABLE = 0x2000
NAN = 0x007FFFFF

CLOCK_START = dt.datetime(2026, 11, 26, 9, 0, 0)
"""Monitor wall clock at simulator time 0; fixed so streams are reproducible."""


def _observation(handle: int, attribute: int, value: bytes) -> bytes:
    return struct.pack(">HHHHH", handle, 1, 4 + len(value), attribute, len(value)) + value


def _bad_fcs_frame() -> bytes:
    """A short data-export frame whose FCS no longer matches (one header bit flipped)."""
    corrupt = bytearray(frame_bytes(b"\x11\x01\x00\x04\xe1\x00\x00\x02"))
    corrupt[3] ^= 0x01
    return bytes(corrupt)


class IntelliVueSimulator:
    """One IntelliVue monitor with SpO2, NIBP and temperature measurements.

    :param scenario: one of :data:`devices.simulators.base.SCENARIOS`.
    :param seed: seeds the measurement noise and the garbage, so a run replays.
    """

    def __init__(self, scenario: str = "normal", seed: int = 0) -> None:
        self.scenario = check_scenario(scenario)
        self._rng = random.Random(seed)
        self._framer = IntelliVueFramer()
        self._now = 0.0
        self.associated = False
        self.mds_confirmed = False
        self._invoke_id = 0
        self._answers = 0

    def output(self, now: float) -> bytes:
        """Nothing: the monitor only answers."""
        self._now = now
        return b""

    def receive(self, data: bytes) -> bytes:
        """The answers to every complete host frame in ``data``."""
        answer = b""
        for item in self._framer.feed(data):
            if not isinstance(item, bytes):
                continue
            message = user_data(item)
            if isinstance(message, str) or not message:
                continue
            try:
                answer += self._answer(message)
            except (Malformed, struct.error):
                continue
        return answer

    def _answer(self, message: bytes) -> bytes:
        kind = message[0]
        if kind == CN_SPDU_SI:
            self.associated = True
            self.mds_confirmed = False
            self._invoke_id += 1
            accept = encode_frame(session_message(AC_SPDU_SI, ASSOCIATION_REQUEST[2:]))
            return self._wrap(accept + encode_frame(self._mds_create()))
        if kind == FN_SPDU_SI:
            self.associated = False
            return encode_frame(session_message(DN_SPDU_SI, b"\xc1\x02\x00\x00"))
        if not self.associated:
            return b""
        ro_type, invoke_id, command, body = split_data_message(message)
        if ro_type == RORS_APDU and command == CMD_CONFIRMED_EVENT_REPORT:
            self.mds_confirmed = True
            return b""
        if ro_type != ROIV_APDU or command != CMD_CONFIRMED_ACTION:
            return b""
        _, _, _, _, action, _ = ACTION_ARGUMENT.unpack_from(body)
        if action != NOM_ACT_POLL_MDIB_DATA:
            return b""
        poll_number, partition, code, _ = POLL_REQUEST.unpack_from(body, ACTION_ARGUMENT.size)
        if partition != NOM_PART_OBJ:
            return b""
        observations = self._numerics() if code == NOM_MOC_VMO_METRIC_NU else []
        return self._wrap(encode_frame(self._poll_reply(invoke_id, poll_number, code, observations)))

    def _wrap(self, frames: bytes) -> bytes:
        """In the garbage scenario, every other answer comes after noise and a frame with a bad FCS."""
        self._answers += 1
        if self.scenario != "garbage":
            return frames
        return garbled(self._rng, self._answers, frames, _bad_fcs_frame, 48)

    def _clock(self) -> dt.datetime:
        return CLOCK_START + dt.timedelta(seconds=int(self._now))

    def _mds_create(self) -> bytes:
        info = struct.pack(">HHH", NOM_MOC_VMS_MDS, 0, 0) + LIST_HEAD.pack(0, 0)
        body = EVENT_ARGUMENT.pack(NOM_MOC_VMS_MDS, 0, 0, int(self._now * 8000), NOM_NOTI_MDS_CREAT,
                                   len(info)) + info
        return data_message(ROIV_APDU, self._invoke_id, CMD_CONFIRMED_EVENT_REPORT, body)

    def _poll_reply(self, invoke_id: int, poll_number: int, code: int, observations: list[bytes]) -> bytes:
        observed = b"".join(observations)
        context = struct.pack(">HHH", 0, len(observations), len(observed)) + observed
        contexts = LIST_HEAD.pack(1, len(context)) + context if observations else LIST_HEAD.pack(0, 0)
        reply = (
            struct.pack(">HI", poll_number, int(self._now * 8000) & 0xFFFFFFFF)
            + encode_time(self._clock())
            + struct.pack(">HHH", NOM_PART_OBJ, code, 0)
            + contexts
        )
        body = ACTION_RESULT.pack(NOM_MOC_VMS_MDS, 0, 0, NOM_ACT_POLL_MDIB_DATA, len(reply)) + reply
        return data_message(RORS_APDU, invoke_id, CMD_CONFIRMED_ACTION, body)

    def _numerics(self) -> list[bytes]:
        rng = self._rng
        systolic, diastolic, mean = cuff_pressures(rng, 121, 78)
        pulse = round(rng.gauss(74, 2))
        off = self.scenario == "sensor-off"
        spo2_state = {"artifact": STATE_QUESTIONABLE, "sensor-off": STATE_UNAVAILABLE}.get(self.scenario, STATE_NONE)
        temperature_state = STATE_UNAVAILABLE if off else STATE_NONE

        def nu(physio: int, state: int, unit: int, value: Decimal | None) -> bytes:
            return NU_OBS_VALUE.pack(physio, state, unit, NAN if value is None else encode_float(value))

        oximeter = None if off else Decimal(min(100, round(rng.gauss(97.5, 0.8))))
        pulse_ox = None if off else Decimal(pulse + rng.choice((-1, 0, 1)))
        temperature = None if off else Decimal(f"{rng.gauss(36.8, 0.1):.1f}")
        compound = b"".join(
            nu(physio, STATE_NONE, MMHG, Decimal(value))
            for physio, value in ((SYSTOLIC, systolic), (DIASTOLIC, diastolic), (MEAN, mean))
        )
        return [
            _observation(0x0101, NOM_ATTR_NU_VAL_OBS, nu(SPO2, spo2_state, PERCENT, oximeter)),
            _observation(0x0102, NOM_ATTR_NU_VAL_OBS, nu(PLETH_PULSE, spo2_state, BPM, pulse_ox)),
            _observation(0x0106, NOM_ATTR_NU_VAL_OBS, nu(GENERIC_PULSE, STATE_NONE, BPM, Decimal(pulse + 9))),
            _observation(0x0103, NOM_ATTR_NU_CMPD_VAL_OBS, LIST_HEAD.pack(3, len(compound)) + compound),
            _observation(0x0104, NOM_ATTR_NU_VAL_OBS, nu(NIBP_PULSE, STATE_NONE, BPM, Decimal(pulse))),
            _observation(0x0105, NOM_ATTR_NU_VAL_OBS, nu(TEMPERATURE, temperature_state, DEGC, temperature)),
        ]
