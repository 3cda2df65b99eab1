"""CLI commands for serial devices: ``simulate``, ``devices probe|ports``, ``gateway``."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Attach this module's commands to the ``frontdesk`` group."""
