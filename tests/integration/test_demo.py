"""``frontdesk demo`` as a newcomer runs it: two demos side by side in one folder on ports moved by
flags, each loading its schedule over HL7, delivering to its own records system, with an enrolment
link that makes a browser a kiosk and a database the CLI finds; Ctrl-C stops each cleanly."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.demo_run import Demo
from tests.procs import Browser
from tests.procs import clean_env
from tests.procs import eventually
from tests.procs import run


def test_two_demos_side_by_side_then_ctrl_c(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "instance")
    demos = [Demo(env, tmp_path), Demo(env, tmp_path)]
    try:
        for demo in demos:
            demo.wait_ready()
            base = demo.base
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

            instance = demo.printed(r"FRONTDESK_INSTANCE_DIR=(\S+) \S*frontdesk users list")
            assert Path(instance) == tmp_path / "instance" / f"demo-{demo.web}"
            program = demo.printed(r"FRONTDESK_INSTANCE_DIR=\S+ (\S*frontdesk) users list")
            assert os.access(program, os.X_OK), f"the printed command {program} cannot be run as printed"
            users = run(["users", "list"], {**env, "FRONTDESK_INSTANCE_DIR": instance})
            assert users.returncode == 0 and re.search(r"^admin +admin +active +yes", users.stdout, re.M)

            eventually(lambda demo=demo: demo.output().count("ADT^A04") >= 3, timeout=60,
                       what="the first check-ins' ADT^A04 at this demo's records system")
    finally:
        codes = [demo.stop() for demo in demos]
    for demo in demos:
        assert "Traceback" not in "".join(demo.errors), "".join(demo.errors)[-3000:]
    assert codes == [0, 0]
