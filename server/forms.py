"""Form schemas for staff pages (Flask-WTF: every form carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField
from wtforms import PasswordField
from wtforms import SelectField
from wtforms import StringField
from wtforms.fields import SelectChoice
from wtforms.validators import DataRequired
from wtforms.validators import EqualTo
from wtforms.validators import Length
from wtforms.validators import Optional
from wtforms.validators import Regexp


class SignInForm(FlaskForm):
    """Username and password."""

    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class SignOutForm(FlaskForm):
    """Only the CSRF token: sign-out is a POST so another site cannot trigger it."""


class VisitStateForm(FlaskForm):
    """Move a visit to another state: ``target`` is the pressed button's state, ``room`` the room chosen for
    "Room", ``day`` the board day to return to."""

    target = StringField("New state", validators=[Length(max=16)])
    room = StringField("Room", validators=[Length(max=64)])
    day = StringField("Day", validators=[Length(max=10)])


class BoardActionForm(FlaskForm):
    """A board button acting on a flag or a change (``action``), and the board day to return to."""

    action = StringField("Action", validators=[Length(max=16)])
    day = StringField("Day", validators=[Length(max=10)])


class OutboxActionForm(FlaskForm):
    """Retry or discard one outbox message (the id is in the URL; the pressed button is the action)."""

    action = SelectField("Action", choices=[SelectChoice("retry", "Send again"), SelectChoice("discard", "Discard")])


class StationForm(FlaskForm):
    """Only the CSRF token: station forms carry one field per vitals row, read by :mod:`server.domain.vitals`."""


class ActionForm(FlaskForm):
    """A button posting one action (its value); the CSRF token is what the form is for."""

    action = StringField("Action", validators=[Length(max=16)])


class SecondFactorForm(FlaskForm):
    """A six-digit code from the authenticator app, or a recovery code."""

    code = StringField("Code", validators=[DataRequired(), Length(max=32)])


class ChangePasswordForm(FlaskForm):
    """A signed-in user's own password change: the current one, then the new one twice."""

    current = PasswordField("Current password", validators=[DataRequired(), Length(max=256)])
    new = PasswordField("New password", validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField("New password again",
                            validators=[DataRequired(), EqualTo("new", "The new passwords differ.")])


class AddUserForm(FlaskForm):
    """An administrator adds a staff user."""

    username = StringField("Username", validators=[DataRequired("Enter a username."), Length(max=64)])
    display_name = StringField("Full name", validators=[Length(max=128)])
    role = SelectField("Role", choices=[SelectChoice("front_desk", "Front desk"),
                                        SelectChoice("assistant", "Medical assistant"),
                                        SelectChoice("admin", "Administrator")])
    password = PasswordField("First password", validators=[DataRequired("Enter a first password."), Length(max=256)])


class ResetPasswordForm(FlaskForm):
    """An administrator gives a user a new password."""

    password = PasswordField("New password", validators=[DataRequired("Enter the new password."), Length(max=256)])


class RegisterDeviceForm(FlaskForm):
    """An administrator registers a kiosk or a station gateway."""

    name = StringField("Name", validators=[DataRequired("Enter a name."), Length(max=64)])
    location = StringField("Where it stands", validators=[Length(max=128)])
    stations = StringField("Stations it serves", validators=[Length(max=512)])


class AuditReportForm(FlaskForm):
    """The access report's question: a patient's MRN and two days (posted: an MRN never goes in a URL)."""

    mrn = StringField("Medical record number (MRN)", validators=[DataRequired("Enter the patient's MRN."),
                                                                 Length(max=64)])
    start = StringField("From", validators=[DataRequired("Enter the first day."), Length(max=10)])
    end = StringField("To", validators=[DataRequired("Enter the last day."), Length(max=10)])


PRINTABLE = Regexp(r"^[^\x00-\x1f\x7f]*$", message="Use letters, digits and punctuation only.")


class InboundSearchForm(FlaskForm):
    """Find received messages; every field is optional."""

    control_id = StringField("Control id (MSH-10)", validators=[Optional(), Length(max=64), PRINTABLE])
    message_type = StringField("Message type", validators=[Optional(), Length(max=32), PRINTABLE],
                               description="For example SIU^S12 or ADT")
    mrn = StringField("Patient MRN", validators=[Optional(), Length(max=64), PRINTABLE],
                      description="Searched on the day below, today if none is given")
    day = DateField("Received on", validators=[Optional()])


class BulkOutboxForm(FlaskForm):
    """Retry or discard many outbox messages at once."""

    action = SelectField("Action", choices=[("retry", "Send again now"), ("discard", "Discard held messages")])
    scope = SelectField("Which messages", choices=[("all", "All held and waiting messages"),
                                                   ("mrn", "Messages of one patient (MRN)"),
                                                   ("error", "Messages whose error contains")])
    text = StringField("MRN or error text", validators=[Optional(), Length(max=200), PRINTABLE])
