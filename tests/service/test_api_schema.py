"""Schemathesis over every operation of ``/api/v1/``: generated requests, valid and invalid, with a staff
token and a gateway token; no answer is a server error, and every answer matches its documented schema,
status codes and content type. The document is the one the app serves."""

from __future__ import annotations

import typing as t

import hypothesis
import pytest
import schemathesis
from flask import Flask
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance
from schemathesis.checks import not_a_server_error
from schemathesis.checks import response_schema_conformance
from schemathesis.checks import status_code_conformance

from server.services import Services
from server.services.api_tokens import SCOPES

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
GATEWAY_PATHS = ("/api/v1/readings", "/api/v1/devices/status")


@pytest.fixture
def tokens(services: Services) -> dict[str, str]:
    services.staff.add_user("reporter", "admin", "correct horse battery")
    return {"staff": services.api_tokens.issue("reporter", "schema-run", SCOPES),
            "gateway": services.devices.add("gateway", "station-pc-1", stations=("room1",))}


def exercise(operation: t.Any, token: str, mode: GenerationMode) -> None:
    """Send generated requests to one operation and run every check on each answer."""

    @hypothesis.settings(max_examples=30, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def call(case: t.Any) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

    call()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_keeps_its_contract(app: Flask, demo_visit: int, tokens: dict[str, str],
                                            mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    routes = [(rule, method) for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")
              and rule.endpoint != "api.openapi" for method in rule.methods - {"HEAD", "OPTIONS"}]
    assert len(operations) == len(routes)
    failures: dict[str, str] = {}
    for operation in operations:
        try:
            exercise(operation, tokens["gateway" if operation.path in GATEWAY_PATHS else "staff"], mode)
        except Exception as exc:  # noqa: BLE001 - every operation is tried; all failures are reported together
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
