"""``frontdesk tokens add|list|revoke`` against a real database, and the token used on the API."""

from __future__ import annotations

from pathlib import Path

from server import create_app
from server.config import load_config
from tests.procs import clean_env
from tests.procs import run


def test_issue_list_use_and_revoke_a_token(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "instance")
    assert run(["db", "upgrade"], env).returncode == 0
    assert run(["users", "add", "reporter", "--role", "front_desk", "--password-stdin"], env,
               "correct horse battery\n").returncode == 0

    refused = run(["tokens", "add", "reporter", "--name", "nightly", "--scope", "everything"], env)
    assert refused.returncode != 0 and "everything" in refused.stderr
    added = run(["tokens", "add", "reporter", "--name", "nightly", "--scope", "visits", "--scope", "outbox"], env)
    assert added.returncode == 0, added.stderr
    token = added.stdout.split()[-1]
    listing = run(["tokens", "list"], env).stdout
    assert "nightly" in listing and "visits outbox" in listing and token not in listing

    app = create_app(load_config(env={"FRONTDESK_INSTANCE_DIR": env["FRONTDESK_INSTANCE_DIR"]}))
    client = app.test_client()
    assert client.get("/api/v1/outbox", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    [token_id] = [line.split()[0] for line in listing.splitlines() if "nightly" in line]
    assert run(["tokens", "revoke", token_id], env).returncode == 0
    assert client.get("/api/v1/outbox", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    again = run(["tokens", "revoke", token_id], env)
    assert again.returncode == 2 and f"no active token {token_id}" in again.stderr
    app.extensions["frontdesk"].live.close()
