"""``frontdesk demo`` in a subprocess, as a newcomer runs it, with what it printed at hand."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import threading
import typing as t
from pathlib import Path

from tests.procs import FRONTDESK
from tests.procs import eventually
from tests.procs import free_port


class Demo:
    """One ``frontdesk demo`` on free ports; its printed lines are collected as they come."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.web, self.hl7, self.records = free_port(), free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.web}"
        self.home = Path(env["FRONTDESK_INSTANCE_DIR"]) / f"demo-{self.web}"
        self.process = subprocess.Popen(
            [FRONTDESK, "demo", "--port", str(self.web), "--hl7-port", str(self.hl7),
             "--records-port", str(self.records)],
            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.errors: list[str] = []
        for pipe, sink in ((self.process.stdout, self.lines), (self.process.stderr, self.errors)):
            threading.Thread(target=self._read, args=(pipe, sink), daemon=True).start()

    @staticmethod
    def _read(pipe: t.IO[str] | None, sink: list[str]) -> None:
        assert pipe is not None
        for line in pipe:
            sink.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self) -> None:
        """Until the welcome is printed (fails with what it said if it stopped instead)."""
        eventually(lambda: "Stop with Ctrl+C." in self.output() or self.process.poll() is not None,
                   timeout=120, what="the demo's welcome")
        assert self.process.poll() is None, self.output() + "".join(self.errors)[-3000:]

    def printed(self, pattern: str) -> str:
        """The first group of ``pattern`` in what the demo printed."""
        match = re.search(pattern, self.output(), re.M)
        assert match, f"{pattern!r} not printed:\n{self.output()}"
        return match.group(1)

    def password(self, username: str) -> str:
        return self.printed(rf"^  {username} +(\S+) +\(")

    def recovery_codes(self) -> list[str]:
        return self.printed(r"recovery code \(each works once\): (.+)$").split(", ")

    def messages(self, message_type: str) -> list[bytes]:
        """What the demo's records system has stored of ``message_type`` (e.g. ``ORU``)."""
        store = self.home / "records.db"
        if not store.exists():
            return []
        with sqlite3.connect(store) as db:
            return [bytes(p) for (p,) in db.execute("SELECT payload FROM message WHERE message_type LIKE ?",
                                                    (f"{message_type}%",))]

    def stop(self) -> int:
        """Ctrl-C, as a person stops it; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)
