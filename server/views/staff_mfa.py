"""The staff second factor: enrolment with a QR code and recovery codes, and the code asked after the password."""

from __future__ import annotations

from flask import Blueprint
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue

from server.auth import client_address
from server.auth import requires
from server.auth import services
from server.auth import signed_in_staff
from server.forms import SecondFactorForm
from server.forms import SignOutForm
from server.services.mfa import SecondFactorFailed

bp = Blueprint("staff_mfa", __name__, url_prefix="/staff/second-factor")


@bp.route("", methods=["GET", "POST"])
@requires(before_second_factor=True)
def second_factor() -> ResponseReturnValue:
    """Ask for the code; staff without a second factor yet set one up here first."""
    staff = signed_in_staff()
    if not staff.needs_second_factor:
        return redirect(url_for("staff.home"))
    if not services().mfa.enrolled(staff.user_id):
        return _enrol()
    form = SecondFactorForm()
    error = None
    if form.validate_on_submit():
        try:
            services().mfa.verify(staff, form.code.data or "", address=client_address())
        except SecondFactorFailed as failure:
            error = str(failure)
        else:
            return redirect(url_for("staff.home"))
    return render_template("staff/mfa/verify.html", form=form, error=error, sign_out=SignOutForm())


def _enrol() -> ResponseReturnValue:
    """Show a fresh secret (QR code and text); a correct code confirms it and shows the recovery codes once."""
    staff = signed_in_staff()
    form = SecondFactorForm()
    error = None
    if form.validate_on_submit():
        try:
            codes = services().mfa.confirm_enrolment(staff, form.code.data or "", address=client_address())
        except SecondFactorFailed as failure:
            error = str(failure)
        else:
            return render_template("staff/mfa/recovery_codes.html", codes=codes)
    enrolment = services().mfa.begin_enrolment(staff)
    return render_template("staff/mfa/enrol.html", form=form, error=error, enrolment=enrolment,
                           secret_groups=[enrolment.secret[i:i + 4] for i in range(0, len(enrolment.secret), 4)],
                           sign_out=SignOutForm())
