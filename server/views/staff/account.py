"""A staff member's own sign-in: the second factor (set-up with a QR code, recovery codes, the code after the
password) and changing their password."""

from __future__ import annotations

from flask import Blueprint
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue

from server.auth import client_address
from server.auth import requires
from server.auth import services
from server.auth import signed_in_staff
from server.forms import ChangePasswordForm
from server.forms import SecondFactorForm
from server.forms import SignOutForm
from server.services.mfa import SecondFactorFailed
from server.services.staff import MIN_PASSWORD_LENGTH
from server.services.staff import AccountError

bp = Blueprint("account", __name__, url_prefix="/staff")


@bp.route("/second-factor", methods=["GET", "POST"])
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
    return render_template("staff/account/verify.html", form=form, error=error, sign_out=SignOutForm())


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
            return render_template("staff/account/recovery_codes.html", codes=codes)
    enrolment = services().mfa.begin_enrolment(staff)
    return render_template("staff/account/enrol.html", form=form, error=error, enrolment=enrolment,
                           secret_groups=[enrolment.secret[i:i + 4] for i in range(0, len(enrolment.secret), 4)],
                           sign_out=SignOutForm())


@bp.route("/password", methods=["GET", "POST"])
@requires()
def change_password() -> ResponseReturnValue:
    """Change one's own password; other browsers signed in as this user are signed out."""
    staff = signed_in_staff()
    form = ChangePasswordForm()
    error = None
    if form.validate_on_submit():
        try:
            services().staff.change_own_password(staff, form.current.data or "", form.new.data or "",
                                                 address=client_address())
        except AccountError as exc:
            error = _PASSWORD_ERRORS.get(str(exc).split(":")[0], str(exc))
        else:
            flash("Your password is changed. Other browsers signed in as you have been signed out.", "info")
            return redirect(url_for("staff.home"))
    elif form.errors:
        error = next(iter(form.errors.values()))[0]
    return render_template("staff/account/password.html", form=form, error=error, staff=staff,
                           sign_out=SignOutForm())


_PASSWORD_ERRORS = {
    "current password": "Your current password is not correct.",
    "password": f"The new password must be at least {MIN_PASSWORD_LENGTH} characters.",
}
