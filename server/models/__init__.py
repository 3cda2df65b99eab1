"""SQLAlchemy models; importing this package registers every table on :data:`Base.metadata`."""

from server.models.audit import AuditEvent
from server.models.base import Base
from server.models.base import UTCDateTime
from server.models.clinical import Observation
from server.models.clinical import QuestionnaireResponse
from server.models.clinical import VitalsSession
from server.models.kiosk import CheckinCode
from server.models.kiosk import ConsentSignature
from server.models.kiosk import KioskSession
from server.models.kiosk import LookupAttempt
from server.models.kiosk import PendingChange
from server.models.kiosk import StaffFlag
from server.models.kiosk import Ticket
from server.models.messaging import InboundMessage
from server.models.messaging import OutboxMessage
from server.models.messaging import ServiceLease
from server.models.patients import Insurance
from server.models.patients import Patient
from server.models.principals import ROLES
from server.models.principals import ApiToken
from server.models.principals import KioskDevice
from server.models.principals import StaffSession
from server.models.principals import StaffUser
from server.models.scheduling import Appointment
from server.models.scheduling import Visit
from server.models.scheduling import VisitTransition
from server.models.security import AuditChainHead
from server.models.security import LoginThrottle
from server.models.security import MfaRecoveryCode
from server.models.security import SecurityAlert
from server.models.security import StaffMfa
from server.models.stations import Device
from server.models.stations import Gateway
from server.models.stations import Station
from server.models.stations import gateway_station

__all__ = [
    "ROLES", "ApiToken", "Appointment", "AuditChainHead", "AuditEvent", "Base", "CheckinCode", "ConsentSignature",
    "Device",
    "Gateway", "InboundMessage", "Insurance", "KioskDevice", "KioskSession", "LoginThrottle", "LookupAttempt",
    "MfaRecoveryCode", "Observation", "OutboxMessage", "Patient", "PendingChange", "QuestionnaireResponse",
    "SecurityAlert", "ServiceLease", "StaffFlag", "StaffMfa", "StaffSession", "StaffUser", "Station", "Ticket",
    "UTCDateTime", "Visit", "VisitTransition", "VitalsSession", "gateway_station",
]
