"""``frontdesk demo`` as a newcomer runs it: two demos side by side in one folder on ports moved by
flags, each loading its schedule over HL7, delivering to its own records system, with an enrolment
link that makes a browser a kiosk and a database the CLI finds; Ctrl-C stops each cleanly."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import typing as t
from pathlib import Path

from tests.procs import FRONTDESK
from tests.procs import Browser
from tests.procs import clean_env
from tests.procs import eventually
from tests.procs import free_port
from tests.procs import run


class Demo:
    """One ``frontdesk demo`` subprocess whose printed lines are collected as they come."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.web, self.hl7, self.records = free_port(), free_port(), free_port()
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

    def printed(self, pattern: str) -> str:
        match = re.search(pattern, self.output())
        assert match, f"{pattern!r} not printed:\n{self.output()}"
        return match.group(1)


def test_two_demos_side_by_side_then_ctrl_c(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "instance")
    demos = [Demo(env, tmp_path), Demo(env, tmp_path)]
    try:
        for demo in demos:
            eventually(lambda demo=demo: "Stop with Ctrl+C." in demo.output() or demo.process.poll() is not None,
                       timeout=90, what="the demo's welcome")
            assert demo.process.poll() is None, demo.output() + "".join(demo.errors)
            base = f"http://127.0.0.1:{demo.web}"
            assert f"{base}/staff/" in demo.output()
            for station in ("room1", "room2"):
                assert f"{base}/staff/stations/{station}" in demo.output()
            assert f"HL7 listener on 127.0.0.1:{demo.hl7}" in demo.output()
            assert "5 appointments sent as SIU^S12" in demo.output()
            assert re.search(r"admin +\S+ +\(admin\)\n +second factor: add key [A-Z2-7]{32} ", demo.output())

            kiosk = Browser(base)
            link = demo.printed(r"(/kiosk/enroll\?code=\S+)")
            status, _, headers = kiosk.request(link)
            assert status == 303 and headers["Location"] == "/kiosk/"
            status, page, _ = kiosk.request("/kiosk/")
            assert status == 200 and "Check in" in page and "Enrollment code" not in page
            assert kiosk.request(link)[0] == 200  # the link worked once; now it is only the form again

            instance = demo.printed(r"FRONTDESK_INSTANCE_DIR=(\S+) frontdesk")
            assert Path(instance) == tmp_path / "instance" / f"demo-{demo.web}"
            users = run(["users", "list"], {**env, "FRONTDESK_INSTANCE_DIR": instance})
            assert users.returncode == 0 and re.search(r"^admin +admin +active +yes", users.stdout, re.M)

            eventually(lambda demo=demo: demo.output().count("ADT^A04") >= 3, timeout=60,
                       what="the first check-ins' ADT^A04 at this demo's records system")
    finally:
        for demo in demos:
            demo.process.send_signal(signal.SIGINT)
        codes = [demo.process.wait(timeout=60) for demo in demos]
    for demo in demos:
        assert "Traceback" not in "".join(demo.errors), "".join(demo.errors)[-3000:]
    assert codes == [0, 0]
