"""Consent texts, versioned, from TOML files; and storing what a patient signed.

Each file in the consents folder (``[kiosk] consents_dir``, the shipped
``server/consents/`` by default) holds one consent: an ``id``, a ``version``
and a title and body per language. Files are read in name order, which is
the order patients see them. A signature stores the id, the version and the
language shown, so what the patient agreed to can always be reproduced.
Like questionnaires, a bad file stops ``serve`` at start.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from server.models import ConsentSignature
from server.services.audit import AuditTrail
from server.services.context import Actor
from server.services.context import Clock

DEFAULT_FOLDER = Path(__file__).parent.parent / "consents"


class ConsentError(ValueError):
    """A consent file that cannot be used; ``str()`` names the file and the problem."""


@dataclass(frozen=True)
class Consent:
    """One consent text in every language it is written in."""

    consent_id: str
    version: str
    texts: dict[str, tuple[str, str]]

    def text(self, language: str) -> tuple[str, str]:
        """``(title, body)`` in ``language``, English when it has no translation."""
        return self.texts.get(language) or self.texts["en"]


def load_consents(folder: Path | None = None) -> tuple[Consent, ...]:
    """Every ``*.toml`` consent in ``folder``, in file-name order.

    :raises ConsentError: for an unreadable file, a missing field or no English text.
    """
    folder = folder or DEFAULT_FOLDER
    if not folder.is_dir():
        raise ConsentError(f"{folder}: consent folder does not exist")
    consents = []
    for path in sorted(folder.glob("*.toml")):
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            texts = {str(lang): (str(entry["title"]).strip(), str(entry["body"]).strip())
                     for lang, entry in raw["text"].items()}
            consent = Consent(str(raw["id"]), str(raw["version"]), texts)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConsentError(f"{path.name}: cannot be read ({exc})") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConsentError(f"{path.name}: needs id, version and [text.LANG] title and body ({exc})") from None
        if "en" not in consent.texts:
            raise ConsentError(f"{path.name}: needs an English text ([text.en])")
        consents.append(consent)
    return tuple(consents)


@dataclass(frozen=True)
class Signature:
    """How the patient signed: a typed name, a drawing (SVG path data), or "talk to staff first"."""

    method: str
    name: str = ""
    drawing: str = ""


def record_signature_in(session: Session, audit: AuditTrail, clock: Clock, consent: Consent, signature: Signature, *,
                        visit_id: int, patient_id: int, language: str, kiosk_id: int, actor: Actor) -> None:
    """Store a signature (or a refusal to sign yet) for the consent version shown, in the caller's transaction."""
    row = ConsentSignature(visit_id=visit_id, patient_id=patient_id, consent_id=consent.consent_id,
                           version=consent.version, language=language, method=signature.method,
                           signer_name=signature.name, drawing=signature.drawing, signed_at=clock.now(),
                           kiosk_id=kiosk_id)
    session.add(row)
    session.flush()
    audit.record(session, actor, "consent.signed" if signature.method != "declined" else "consent.deferred",
                 patient_id=patient_id, resource_type="consent_signature", resource_id=row.id,
                 detail=f"consent={consent.consent_id} version={consent.version} method={signature.method}")
