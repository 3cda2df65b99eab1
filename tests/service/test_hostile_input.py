"""Hostile route values and JSON bodies on every route: a clear 4xx, never a 500.

The walk covers the whole URL map, so a route added later is attacked too.
Callers are as privileged as they can be (an administrator with a valid CSRF
token, a gateway with a valid token), so a refusal is the input's fault and
not a missing credential's.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from server.bounds import MAX_JSON_DEPTH
from server.bounds import json_depth
from server.services import Services
from tests.conftest import StaffActions
from tests.conftest import csrf_token

HOSTILE_VALUES = ["99999999999999999999", str(2**31), str(2**63), str(2**64 + 1), "-1", "0", "1e3", "%00",
                  "..%2f..%2fetc", "1" * 5000, "%F0%9F%92%A9"]
OUT_OF_INT_RANGE = HOSTILE_VALUES[:4] + HOSTILE_VALUES[9:]
ARGUMENT = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>")


def _paths(rule: str) -> list[str]:
    if not ARGUMENT.search(rule):
        return [rule]
    return [ARGUMENT.sub(value, rule) for value in HOSTILE_VALUES]


@pytest.fixture
def armed(staff: StaffActions, services: Services, client: FlaskClient) -> dict[str, str]:
    """An administrator signed in, a CSRF token and a gateway token."""
    staff.create("root", "admin")
    staff.sign_in("root")
    staff.pass_second_factor()
    token = csrf_token(client.get("/staff/").text)
    return {"csrf": token, "gateway": services.devices.add("gateway", "gw-hostile", stations=("room1",))}


def test_hostile_route_values_are_refused_without_a_server_error(app: Flask, client: FlaskClient,
                                                                  armed: dict[str, str]) -> None:
    form = {"csrf_token": armed["csrf"], "target": "arrived", "action": "retry"}
    for rule in app.url_map.iter_rules():
        for path in _paths(rule.rule):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                response = client.open(path, method=method, data=form if method == "POST" else None,
                                       headers={"Authorization": f"Bearer {armed['gateway']}"}
                                       if path.startswith("/api/") else {})
                assert response.status_code < 500, (rule.rule, path[:40], method, response.status_code)
                if "int:" in rule.rule and any(value in path for value in OUT_OF_INT_RANGE):
                    assert response.status_code == 404, (path[:40], method, response.status_code)


@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000,
                                  "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
                                  '{"readings": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001])
def test_deeply_nested_json_is_a_bad_request_everywhere(app: Flask, client: FlaskClient, armed: dict[str, str],
                                                        body: str) -> None:
    headers = {"Authorization": f"Bearer {armed['gateway']}", "Content-Type": "application/json",
               "X-CSRFToken": armed["csrf"]}
    for rule in app.url_map.iter_rules():
        if "POST" not in rule.methods or ARGUMENT.search(rule.rule):
            continue
        response = client.post(rule.rule, data=body, headers=headers)
        assert response.status_code < 500, (rule.rule, response.status_code)
    response = client.post("/api/v1/readings", data=body, headers=headers)
    assert response.status_code == 400 and "error" in response.json


def test_json_at_the_depth_limit_is_still_read(client: FlaskClient, armed: dict[str, str]) -> None:
    nested = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)
    response = client.post("/api/v1/readings", data='{"readings": [], "extra": ' + nested + "}",
                           headers={"Authorization": f"Bearer {armed['gateway']}", "Content-Type": "application/json"})
    assert response.status_code == 200 and response.json == {"accepted": 0, "duplicates": 0, "rejected": []}


def test_json_depth_counts_lists_and_objects() -> None:
    assert json_depth(1) == 0
    assert json_depth([]) == 1
    assert json_depth({"a": [{"b": 1}]}) == 3
