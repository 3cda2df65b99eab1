"""Inbound HL7 samples as a scheduler and a patient master send them (SIU, ADT), with knobs for tests."""

from __future__ import annotations

MSH = "MSH|^~\\&|EPIC|MAINCLINIC|FRONTDESK|CLINIC|20261126080000-0500||{type}|{control}|P|2.5.1||||||UNICODE UTF-8"
PID = ("PID|1||{mrn}^^^MAINCLINIC^MR~999-88-7777^^^SSA^SS||{family}^{given}^Q||19750412|F|||"
       "12 Elm St^Apt 3^Springfield^IL^62701^USA||555-0142^PRN^PH~^NET^Internet^pat@example.org||es")
SCH = "SCH|P{appt}|F{appt}|||||ROUTINE^Routine visit|FOLLOWUP^Follow-up visit|20|min|^^20^{start}|||||||||||||Booked"
AIL = "AIL|1||EXAM3^^^MAINCLINIC"
AIP = "AIP|1||D123^Okafor^Ngozi^^^^Dr"


def message(*segments: str) -> bytes:
    return "\r".join(segments).encode("utf-8") + b"\r"


def siu(event: str, control: str, *, mrn: str = "MRN001", family: str = "Nguyen", appt: str = "100",
        start: str = "20261126103000-0500") -> bytes:
    return message(MSH.format(type=f"SIU^{event}^SIU_S12", control=control),
                   SCH.format(appt=appt, start=start), PID.format(mrn=mrn, family=family, given="Linh"), AIL, AIP)


def adt(event: str, control: str, *extra: str, mrn: str = "MRN001", family: str = "Nguyen") -> bytes:
    return message(MSH.format(type=f"ADT^{event}^ADT_A01", control=control),
                   "EVN|" + event + "|20261126080000", PID.format(mrn=mrn, family=family, given="Linh"), *extra)
