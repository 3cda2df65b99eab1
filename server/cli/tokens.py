"""``frontdesk tokens add|list|revoke``: bearer tokens for scripts that read the JSON API as a staff user.

The logic lives in :class:`server.services.api_tokens.ApiTokens`; issuing and
revoking are audited as done by ``system`` (an operator at the console).
"""

from __future__ import annotations

import click

from server.cli.common import EXIT_CONFIG
from server.cli.common import fail
from server.cli.common import with_config
from server.cli.core import open_services
from server.config import Config
from server.services.api_tokens import SCOPES
from server.services.staff import AccountError


def register(main: click.Group) -> None:
    """Attach the ``tokens`` group to the ``frontdesk`` group."""
    main.add_command(tokens)


@click.group()
def tokens() -> None:
    """API tokens of staff users (``Authorization: Bearer …`` on /api/v1/)."""


@tokens.command("add")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for, e.g. 'nightly-report' (shown in the list).")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(SCOPES),
              help="What it may read; repeat for several. The user's role still applies.")
@with_config
def tokens_add(config: Config, username: str, name: str, scopes: tuple[str, ...]) -> None:
    """Issue a token for USERNAME; it is printed once, as the last word."""
    try:
        token = open_services(config).api_tokens.issue(username, name, scopes)
    except AccountError as exc:
        fail(str(exc), EXIT_CONFIG)
    click.echo(f"token {name.strip().lower()} for {username.strip().lower()} ({', '.join(scopes)}); "
               f"shown once: {token}")


@tokens.command("list")
@with_config
def tokens_list(config: Config) -> None:
    """List tokens, revoked ones included (the tokens themselves are never shown)."""
    rows = open_services(config).api_tokens.list()
    click.echo(f"{'ID':>4} {'USER':<16} {'NAME':<20} {'STATE':<8} {'LAST USED':<17} SCOPES")
    for row in rows:
        used = row.last_used_at.strftime("%Y-%m-%d %H:%M") if row.last_used_at else "-"
        click.echo(f"{row.id:>4} {row.username:<16} {row.name:<20} {'revoked' if row.revoked_at else 'active':<8} "
                   f"{used:<17} {' '.join(row.scopes)}")


@tokens.command("revoke")
@click.argument("token_id", type=click.IntRange(1, 2**31 - 1))
@with_config
def tokens_revoke(config: Config, token_id: int) -> None:
    """Revoke token TOKEN_ID (from ``tokens list``): its next request is refused (401)."""
    if not open_services(config).api_tokens.revoke(token_id):
        fail(f"no active token {token_id}", EXIT_CONFIG)
    click.echo(f"token {token_id} revoked")
