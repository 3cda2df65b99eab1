"""Staff second factor: TOTP (RFC 6238) with QR enrolment and single-use recovery codes.

Which roles must use it is ``[web] mfa_roles`` (default: administrators);
anyone who has enrolled uses it whatever their role. After the password, a
session is "waiting for the second factor" and reaches only the second-factor
pages until a code is accepted.

Codes are 6 digits over 30-second steps (the authenticator apps' default).
One step either side is accepted for clock skew, and a code is good once: the
accepted step is stored and a code for that step or an earlier one is refused
(replay). Wrong codes count against the same (username, address) throttle as
wrong passwords. The shared secret is stored encrypted (Fernet) with a key
derived from the instance secret, so a database copy alone yields no codes;
rotating ``secret_key`` therefore means enrolling again. Recovery codes are
random and stored as SHA-256, each usable once. Every step is audited.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import pyotp
import segno
from cryptography.fernet import Fernet
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from server.db import UnitOfWork
from server.models import MfaRecoveryCode
from server.models import StaffMfa
from server.models import StaffSession
from server.models import StaffUser
from server.services.audit import AuditTrail
from server.services.context import SYSTEM
from server.services.context import Actor
from server.services.context import Clock
from server.services.staff import AccountError
from server.services.staff import StaffAccounts
from server.services.staff import StaffPrincipal

ISSUER = "Frontdesk"
SKEW_STEPS = 1
RECOVERY_CODES = 10


class SecondFactorFailed(Exception):
    """A code was wrong, used before, or the user is throttled; one message for all."""

    MESSAGE = "That code did not work. Enter the current code from your app, or a recovery code."

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows: the secret for typing in, and the same as a QR code."""

    secret: str
    uri: str
    qr_data_uri: str


def _recovery_hash(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").strip().lower().encode("ascii", "ignore")).hexdigest()


class SecondFactors:
    """Enrols staff in TOTP and checks their codes (see the module docstring)."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail, staff: StaffAccounts,
                 secret: str) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit
        self.staff = staff
        self.throttle = staff.throttle
        key = hashlib.sha256(b"frontdesk-totp:" + secret.encode("utf-8")).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def enrolled(self, user_id: int) -> bool:
        """Whether the user has a confirmed second factor."""
        with self.uow.begin() as session:
            row = session.get(StaffMfa, user_id)
            return row is not None and row.confirmed_at is not None

    def begin_enrolment(self, principal: StaffPrincipal) -> Enrolment:
        """A new secret for a user without a confirmed one (a reload replaces the unconfirmed secret).

        :raises AccountError: when the user already has a confirmed second factor.
        """
        secret = pyotp.random_base32()
        with self.uow.begin() as session:
            row = session.get(StaffMfa, principal.user_id, with_for_update=True)
            if row is not None and row.confirmed_at is not None:
                raise AccountError("second factor: already set up")
            if row is None:
                row = StaffMfa(user_id=principal.user_id, secret="", last_step=0)
                session.add(row)
            row.secret = self._fernet.encrypt(secret.encode("ascii")).decode("ascii")
        uri = pyotp.TOTP(secret).provisioning_uri(name=principal.username, issuer_name=ISSUER)
        return Enrolment(secret, uri, segno.make(uri, error="m").svg_data_uri(scale=5, border=4))

    def confirm_enrolment(self, principal: StaffPrincipal, code: str, *, address: str) -> list[str]:
        """Confirm the pending secret with a code from the app; returns the recovery codes, shown once.

        :raises SecondFactorFailed: for a wrong code.
        """
        now = self.clock.now()
        actor = principal.actor(address)
        with self.uow.begin() as session:
            attempt = self.throttle.reserve(session, principal.username, address, now)
            row = session.get(StaffMfa, principal.user_id, with_for_update=True)
            step = None
            if not attempt.throttled and row is not None and row.confirmed_at is None:
                step = self._matching_step(row, code, now)
            if step is None:
                self.audit.record(session, actor, "mfa.enrol", outcome="failure", resource_type="staff_user",
                                  resource_id=principal.user_id)
                if not attempt.throttled:
                    self.staff.record_failure(session, attempt, address)
            else:
                assert row is not None
                self.throttle.give_back(session, attempt)
                row.confirmed_at, row.last_step = now, step
                codes = self._new_recovery_codes(session, principal.user_id)
                self._pass_session(session, principal, now)
                self.audit.record(session, actor, "mfa.enrol", resource_type="staff_user",
                                  resource_id=principal.user_id)
        if step is None:
            raise SecondFactorFailed()
        return codes

    def verify(self, principal: StaffPrincipal, code: str, *, address: str) -> None:
        """Accept a current TOTP code or an unused recovery code for this session.

        :raises SecondFactorFailed: for a wrong, replayed or throttled code.
        """
        now = self.clock.now()
        actor = principal.actor(address)
        with self.uow.begin() as session:
            attempt = self.throttle.reserve(session, principal.username, address, now)
            row = session.get(StaffMfa, principal.user_id, with_for_update=True)
            how = ""
            if not attempt.throttled and row is not None and row.confirmed_at is not None:
                step = self._matching_step(row, code, now)
                if step is not None and step > row.last_step:
                    row.last_step, how = step, "totp"
                elif step is None and self._use_recovery_code(session, principal.user_id, code, now):
                    how = "recovery_code"
            if how:
                self.throttle.give_back(session, attempt)
                self._pass_session(session, principal, now)
            elif not attempt.throttled:
                self.staff.record_failure(session, attempt, address)
            self.audit.record(session, actor, "mfa.verify", outcome="success" if how else "failure",
                              resource_type="staff_user", resource_id=principal.user_id,
                              detail=how or ("throttled" if attempt.throttled else "bad_code"))
        if not how:
            raise SecondFactorFailed()

    def reset(self, username: str, *, actor: Actor = SYSTEM) -> None:
        """Remove a user's second factor (a lost phone); they enrol again at their next sign-in.

        :raises AccountError: for an unknown user.
        """
        with self.uow.begin() as session:
            user = session.scalar(select(StaffUser).where(StaffUser.username == username.strip().lower()))
            if user is None:
                raise AccountError(f"username: no user called {username!r}")
            session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user.id))
            session.execute(delete(StaffMfa).where(StaffMfa.user_id == user.id))
            session.execute(update(StaffSession).where(StaffSession.user_id == user.id,
                                                       StaffSession.revoked_at.is_(None))
                            .values(revoked_at=self.clock.now()))
            self.audit.record(session, actor, "mfa.reset", resource_type="staff_user", resource_id=user.id)

    def _matching_step(self, row: StaffMfa, code: str, now: dt.datetime) -> int | None:
        """The time step within the skew window whose code is ``code``, or ``None``."""
        code = code.replace(" ", "").strip()
        if not (len(code) == 6 and code.isdigit()):
            return None
        totp = pyotp.TOTP(self._fernet.decrypt(row.secret.encode("ascii")).decode("ascii"))
        current = totp.timecode(now)
        for step in range(current - SKEW_STEPS, current + SKEW_STEPS + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                return step
        return None

    def _use_recovery_code(self, session: Session, user_id: int, code: str, now: dt.datetime) -> bool:
        row = session.scalar(select(MfaRecoveryCode).where(
            MfaRecoveryCode.user_id == user_id, MfaRecoveryCode.code_hash == _recovery_hash(code),
            MfaRecoveryCode.used_at.is_(None)).with_for_update())
        if row is None:
            return False
        row.used_at = now
        return True

    def _new_recovery_codes(self, session: Session, user_id: int) -> list[str]:
        session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user_id))
        codes = []
        for _ in range(RECOVERY_CODES):
            raw = secrets.token_hex(5)
            codes.append(f"{raw[:5]}-{raw[5:]}")
            session.add(MfaRecoveryCode(user_id=user_id, code_hash=_recovery_hash(raw)))
        return codes

    def _pass_session(self, session: Session, principal: StaffPrincipal, now: dt.datetime) -> None:
        session.execute(update(StaffSession).where(StaffSession.id == principal.session_id)
                        .values(second_factor_at=now))
