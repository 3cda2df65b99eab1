"""Every response is hardened; every route declares who may call it."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from server import migrate
from tests.conftest import StaffActions

PUBLIC_ENDPOINTS = {"static", "root.index", "staff.login", "staff.logout", "health.healthz", "api.openapi",
                    "kiosk.static", "kiosk.welcome", "kiosk.enroll"}
STATIC = {"static", "kiosk.static"}


def concrete_path(rule: str) -> str:
    rule = re.sub(r"<any\(([^,)]+)[^>]*>", r"\1", rule)
    return re.sub(r"<(?:int:)?[^>]+>", "1", rule)


def test_every_endpoint_declares_access(app: Flask) -> None:
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        access = getattr(view, "_access", None)
        if rule.endpoint in PUBLIC_ENDPOINTS:
            assert access == "public" or rule.endpoint in STATIC, rule.endpoint
        else:
            assert isinstance(access, dict), f"{rule.endpoint} has no @requires"


def test_anonymous_callers_are_turned_away_everywhere(app: Flask, client: FlaskClient) -> None:
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(concrete_path(rule.rule), method=method)
            assert response.status_code in (302, 400, 401), (rule.rule, method, response.status_code)
            if response.status_code == 302:
                # Kiosk pages send a browser that is not an enrolled kiosk to the enrolment screen.
                home = "/kiosk/" if rule.endpoint.startswith("kiosk.") else "/staff/login"
                assert response.headers["Location"] == home, rule.rule


@pytest.mark.parametrize("path", ["/staff/login", "/healthz", "/api/v1/openapi.json", "/api/v1/visits", "/nowhere"])
def test_security_headers_on_every_response(client: FlaskClient, path: str) -> None:
    headers = client.get(path).headers
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cache-Control"] == "no-store"


def test_pages_with_patient_data_are_not_cached(staff: StaffActions, client: FlaskClient, demo_visit: int) -> None:
    staff.create("alice", "front_desk")
    staff.sign_in("alice")
    page = client.get("/staff/")
    assert "Tester" in page.text and page.headers["Cache-Control"] == "no-store"
    assert client.get("/api/v1/visits").headers["Cache-Control"] == "no-store"


def test_pages_carry_no_inline_script_or_style(client: FlaskClient) -> None:
    html = client.get("/staff/login").text
    assert "<script" not in html and "style=" not in html and "<style" not in html


def test_request_size_is_limited(client: FlaskClient) -> None:
    response = client.post("/staff/login", data={"username": "x" * (600 * 1024), "password": "y"})
    assert response.status_code == 413


def test_health_reports_database_and_schema(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "ok" and body["database"]["status"] == "ok"
    assert body["schema"]["current"] == body["schema"]["expected"] == migrate.head_revision()


def test_errors_are_generic(client: FlaskClient) -> None:
    response = client.get("/api/v1/nowhere")
    assert response.status_code == 404 and response.json == {"error": "Not Found"}


def test_openapi_document_lists_every_api_route(app: Flask, client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").json
    assert document["openapi"] == "3.1.0"
    api_rules = {(re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule), method.lower())
                 for rule in app.url_map.iter_rules()
                 if rule.rule.startswith("/api/v1/") and rule.endpoint != "api.openapi"
                 for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert api_rules == {(path, method) for path, item in document["paths"].items() for method in item}
