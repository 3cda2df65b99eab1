"""Staff side of the kiosk, kept minimal until the front-desk board arrives: flags to acknowledge,
demographic changes to approve or reject (approval sends ADT^A08), and a reset button per kiosk."""

from __future__ import annotations

from flask import Blueprint
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue

from server.auth import client_address
from server.auth import requires
from server.auth import services
from server.auth import signed_in_staff
from server.forms import ActionForm
from server.forms import SignOutForm
from server.services.flags import FlagNotFound
from server.views.staff.decisions import decide_change

bp = Blueprint("staff_kiosk", __name__, url_prefix="/staff/kiosk")


@bp.get("/")
@requires("front_desk")
def overview() -> str:
    """Open flags (most urgent first), pending changes and the kiosks."""
    svc = services()
    actor = signed_in_staff().actor(client_address())
    return render_template("staff/kiosk/overview.html", flags=svc.flags.open(actor=actor),
                           changes=svc.changes.pending(actor=actor), kiosks=svc.kiosks.status(),
                           form=ActionForm(), staff=signed_in_staff(), sign_out=SignOutForm())


@bp.post("/flags/<int:flag_id>")
@requires("front_desk", "assistant")
def acknowledge(flag_id: int) -> ResponseReturnValue:
    """Mark a flag as handled."""
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        services().flags.acknowledge(flag_id, actor=signed_in_staff().actor(client_address()))
    except FlagNotFound:
        flash("That flag was already handled.", "error")
    return redirect(url_for("staff_kiosk.overview"))


@bp.post("/changes/<int:change_id>")
@requires("front_desk")
def decide(change_id: int) -> ResponseReturnValue:
    """Approve (update the patient, send ADT^A08) or reject a change the patient asked for."""
    form = ActionForm()
    if not form.validate_on_submit() or form.action.data not in ("approve", "reject"):
        abort(400)
    decide_change(change_id, form.action.data == "approve")
    return redirect(url_for("staff_kiosk.overview"))


@bp.post("/kiosks/<int:kiosk_id>/reset")
@requires("front_desk")
def reset(kiosk_id: int) -> ResponseReturnValue:
    """End whatever a kiosk is showing (a patient walked away mid-way)."""
    if not ActionForm().validate_on_submit():
        abort(400)
    ended = services().kiosks.force_reset(kiosk_id, actor=signed_in_staff().actor(client_address()))
    flash("Kiosk reset." if ended else "Nobody was using that kiosk.", "info")
    return redirect(url_for("staff_kiosk.overview"))
