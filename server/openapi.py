"""The OpenAPI document served at ``/api/v1/openapi.json``."""

from __future__ import annotations

import typing as t

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}


def _json(schema: dict[str, t.Any], description: str) -> dict[str, t.Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document() -> dict[str, t.Any]:
    """The API description; kept beside the views it describes."""
    visit = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "state": {"type": "string", "enum": ["expected", "arrived", "roomed", "vitals_taken",
                                                 "checked_out", "cancelled", "no_show"]},
            "patient_name": {"type": "string"},
            "birth_date": {"type": ["string", "null"], "format": "date"},
            "start_at": {"type": ["string", "null"], "format": "date-time"},
            "provider_name": {"type": "string"},
            "location": {"type": "string"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Frontdesk API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {
                "staffSession": {"type": "apiKey", "in": "cookie", "name": "frontdesk_session"},
                "deviceToken": {"type": "http", "scheme": "bearer"},
            },
        },
        "paths": {
            "/outbox": {
                "get": {
                    "summary": "Outbox counts by state, oldest undelivered age, dead and pending messages",
                    "security": [{"staffSession": []}],
                    "responses": {
                        "200": _json({"type": "object", "properties": {
                            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                            "oldest_pending_age_seconds": {"type": ["number", "null"]},
                            "messages": {"type": "array", "items": {"type": "object"}},
                        }}, "Outbox state"),
                        "401": _json(_ERROR, "Not signed in"),
                        "403": _json(_ERROR, "Role not allowed"),
                    },
                },
            },
            "/visits": {
                "get": {
                    "summary": "Visits of one day",
                    "security": [{"staffSession": []}],
                    "parameters": [{"name": "date", "in": "query", "required": False,
                                    "schema": {"type": "string", "format": "date"}}],
                    "responses": {
                        "200": _json({"type": "object", "properties": {
                            "visits": {"type": "array", "items": visit}}}, "The visits"),
                        "400": _json(_ERROR, "Bad date"),
                        "401": _json(_ERROR, "Not signed in"),
                    },
                },
            },
        },
    }
