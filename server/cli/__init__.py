"""The ``frontdesk`` console script.

Each group of subcommands lives in its own module and is attached here, so the
script's surface (a contract other systems and scripts rely on) is visible in
one place.
"""

from __future__ import annotations

import click

from server.cli import core as core_commands
from server.cli import devices as devices_commands
from server.cli import interfaces as interfaces_commands
from server.cli import records as records_commands
from server.cli import security as security_commands
from server.cli import tokens as tokens_commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="frontdesk", prog_name="frontdesk", message="%(prog)s %(version)s")
def main() -> None:
    """Frontdesk: clinic check-in kiosk, vitals stations and HL7 interfaces."""


core_commands.register(main)
devices_commands.register(main)
interfaces_commands.register(main)
records_commands.register(main)
security_commands.register(main)
tokens_commands.register(main)
