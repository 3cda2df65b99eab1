"""What staff decide about a patient's own kiosk changes, shared by the board and the kiosk overview."""

from __future__ import annotations

from flask import abort
from flask import flash

from server.auth import client_address
from server.auth import services
from server.auth import signed_in_staff
from server.services.flags import ChangeNotFound


def decide_change(change_id: int, approve: bool) -> None:
    """Approve (update the patient, send ADT^A08) or reject a change, and say what happened.

    A change someone else decided meanwhile is not an error worth a red message; one that never existed is 404.
    """
    try:
        services().changes.decide(change_id, approve, actor=signed_in_staff().actor(client_address()))
    except ChangeNotFound:
        if not services().changes.exists(change_id):
            abort(404)
        flash("That change was already decided by someone else.", "info")
    else:
        flash("Change approved and sent to the records system." if approve
              else "Change rejected: the patient's details stay as they were.", "info")
