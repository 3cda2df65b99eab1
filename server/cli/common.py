"""What every command shares: loading the configuration and failing with one clear line."""

from __future__ import annotations

import functools
import sys
import typing as t
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from server.config import Config
from server.config import ConfigError
from server.config import load_config
from server.db import make_engine

F = t.TypeVar("F", bound=t.Callable[..., t.Any])

EXIT_CONFIG: t.Literal[2] = 2


class CommandError(click.ClickException):
    """The environment stops a command (a database, a port, a device that does not answer).

    One line on stderr, exit status 1, no traceback.
    """

    exit_code = 1

    def show(self, file: t.IO[t.Any] | None = None) -> None:
        click.echo(f"frontdesk: error: {self.format_message()}", err=True, file=file)


class SettingsError(CommandError):
    """The configuration or the arguments are wrong: exit status 2."""

    exit_code = 2


def fail(message: str, code: t.Literal[1, 2] = 1) -> t.NoReturn:
    """Stop the command with ``frontdesk: error: message`` and exit status ``code``."""
    raise (SettingsError if code == EXIT_CONFIG else CommandError)(message)


def with_config(command: F) -> F:
    """Add ``--config FILE`` and pass the validated :class:`Config` as ``config``.

    Without the option, ``FRONTDESK_CONFIG`` names the file; without either the
    defaults apply. A bad value exits with status 2 and one line naming the key.
    """

    @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                  help="TOML configuration file (default: $FRONTDESK_CONFIG, else built-in defaults).")
    @functools.wraps(command)
    def wrapped(*args: t.Any, config_path: str | None, **kwargs: t.Any) -> t.Any:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            fail(str(exc), EXIT_CONFIG)
        return command(*args, config=config, **kwargs)

    return t.cast(F, wrapped)


def safe_url(url: str) -> str:
    """The database URL with any password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def open_database(config: Config, *, create: bool = False) -> Engine:
    """An engine that has answered once; exits with one line when the database cannot be reached.

    :param create: make the SQLite file (and its folder) when it does not exist;
        only ``db upgrade`` does, so a command that only reads never leaves an
        empty database behind that ``serve`` would then refuse.
    """
    if config.database_url.startswith("sqlite"):
        path = make_url(config.database_url).database or ""
        if path and path != ":memory:" and not Path(path).exists():
            if not create:
                fail(f"no database yet at {path}: run 'frontdesk db upgrade'", EXIT_CONFIG)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.database_url, echo=config.database.echo, schema=config.database.schema or None)
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        fail(f"database {safe_url(config.database_url)} is unreachable: {reason}")
    return engine


def read_password(from_stdin: bool, prompt: str = "Password") -> str:
    """A password from one line of standard input (scripts), or typed twice at a hidden prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt(prompt, hide_input=True, confirmation_prompt=True))
