"""The interface monitor (``/staff/interfaces``, administrators): outbox, dead letters, inbound messages, devices.

Searches are posted, not put in the address: an MRN in a URL would end up in
browser history and proxy logs.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue

from server.auth import client_address
from server.auth import requires
from server.auth import services
from server.auth import signed_in_staff
from server.config import Config
from server.forms import ActionForm
from server.forms import BulkOutboxForm
from server.forms import InboundSearchForm
from server.forms import SignOutForm
from server.services.inbound import InboundNotFound as NotReprocessable
from server.services.interface_monitor import OUTBOX_STATE_TEXT
from server.services.interface_monitor import InboundNotFound
from server.services.interface_monitor import InboundQuery
from server.services.interface_monitor import InterfaceMonitor
from server.services.outbox import OutboxError
from server.services.outbox import OutboxNotFound
from server.services.outbox import Selection

bp = Blueprint("staff_interfaces", __name__, url_prefix="/staff/interfaces")

def monitor() -> InterfaceMonitor:
    svc = services()
    config: Config = current_app.config["FRONTDESK"]
    return InterfaceMonitor(uow=svc.uow, clock=svc.clock, audit=svc.audit, outbox=svc.outbox,
                            stations=svc.stations, zone=config.web.zone,
                            backlog_alert=dt.timedelta(minutes=config.hl7.backlog_alert_minutes))


def _page(search: InboundSearchForm | None = None, *, searched: bool = False) -> str:
    watch = monitor()
    actor = signed_in_staff().actor(client_address())
    search = search or InboundSearchForm(formdata=None)
    found = []
    if searched:
        query = InboundQuery(control_id=(search.control_id.data or "").strip(),
                             message_type=(search.message_type.data or "").strip(),
                             mrn=(search.mrn.data or "").strip(), day=search.day.data)
        found = watch.search_inbound(query, actor=actor)
    else:
        found = watch.search_inbound(InboundQuery(), actor=actor, limit=20)
    return render_template("staff/interfaces/index.html", overview=watch.overview(),
                           dead=watch.dead_letters(actor=actor), devices=watch.devices(), search=search,
                           searched=searched, found=found, bulk=BulkOutboxForm(formdata=None), form=ActionForm(),
                           state_text=OUTBOX_STATE_TEXT, staff=signed_in_staff(), sign_out=SignOutForm())


@bp.get("/")
@requires("admin")
def index() -> str:
    """The outbox at a glance, dead letters, the latest received messages and every device."""
    return _page()


@bp.post("/search")
@requires("admin")
def search() -> ResponseReturnValue:
    """Received messages by control id, type, MRN and day."""
    form = InboundSearchForm()
    if not form.validate_on_submit():
        return _page(form), 400
    return _page(form, searched=True)


@bp.get("/inbound/<int:inbound_id>")
@requires("admin")
def inbound(inbound_id: int) -> str:
    """One received message and our answer, segment by segment."""
    try:
        detail = monitor().inbound(inbound_id, actor=signed_in_staff().actor(client_address()))
    except InboundNotFound:
        abort(404)
    return render_template("staff/interfaces/inbound.html", detail=detail, form=ActionForm(),
                           staff=signed_in_staff(), sign_out=SignOutForm())


@bp.post("/inbound/<int:inbound_id>/reprocess")
@requires("admin")
def reprocess(inbound_id: int) -> ResponseReturnValue:
    """Apply a message we did not apply again, now that its cause may be fixed."""
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        result = services().inbound.reprocess(inbound_id, actor=signed_in_staff().actor(client_address()))
    except NotReprocessable:
        abort(404)
    if result.outcome == "AA":
        flash("The message was applied.", "info")
    else:
        flash(f"The message still cannot be applied: {result.error}", "error")
    return redirect(url_for("staff_interfaces.inbound", inbound_id=inbound_id))


@bp.post("/outbox/<int:message_id>")
@requires("admin")
def outbox_action(message_id: int) -> ResponseReturnValue:
    """Send one held message again (same control id) or discard it."""
    form = ActionForm()
    action = form.action.data
    if not form.validate_on_submit() or action not in ("retry", "discard"):
        abort(400)
    try:
        getattr(services().outbox, action)(message_id, actor=signed_in_staff().actor(client_address()))
    except OutboxNotFound:
        abort(404)
    except OutboxError:
        flash(f"Message {message_id} was already delivered or discarded.", "error")
        return redirect(url_for("staff_interfaces.index"))
    flash(f"Message {message_id} {'will be sent again now' if action == 'retry' else 'was discarded'}.", "info")
    return redirect(url_for("staff_interfaces.index"))


@bp.post("/outbox")
@requires("admin")
def outbox_bulk() -> ResponseReturnValue:
    """Retry or discard every message of a selection: all, one patient's, or those with an error text."""
    form = BulkOutboxForm()
    if not form.validate_on_submit():
        abort(400)
    text = (form.text.data or "").strip()
    if form.scope.data != "all" and not text:
        flash("Enter the MRN or the error text the messages should match.", "error")
        return redirect(url_for("staff_interfaces.index"))
    selection = Selection(mrn=text if form.scope.data == "mrn" else "",
                          error=text if form.scope.data == "error" else "")
    actor = signed_in_staff().actor(client_address())
    if form.action.data == "retry":
        count = services().outbox.retry_many(selection, actor=actor)
        flash(f"{count} message{'' if count == 1 else 's'} will be sent again now.", "info")
    else:
        count = services().outbox.discard_many(selection, actor=actor)
        flash(f"{count} held message{'' if count == 1 else 's'} discarded.", "info")
    return redirect(url_for("staff_interfaces.index"))
