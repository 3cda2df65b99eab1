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
    reading = {
        "type": "object",
        "required": ["reading_id", "device_id", "station", "metric", "mdc_code", "value", "unit", "host_time"],
        "properties": {
            "reading_id": {"type": "string", "maxLength": 64},
            "device_id": {"type": "string", "maxLength": 64},
            "station": {"type": "string", "maxLength": 64},
            "metric": {"type": "string"},
            "mdc_code": {"type": "integer"},
            "value": {"type": ["string", "null"], "description": "decimal text as measured; null for no reading"},
            "unit": {"type": "string", "description": "UCUM, the metric's canonical unit"},
            "flags": {"type": "array", "items": {"type": "string"}},
            "device_time": {"type": ["string", "null"], "description": "the device's clock, as it reported it"},
            "host_time": {"type": "string", "format": "date-time"},
        },
    }
    device = {
        "type": "object",
        "properties": {
            "id": {"type": "string"}, "driver": {"type": "string"}, "port": {"type": "string"},
            "station": {"type": ["string", "null"]},
            "state": {"type": "string", "enum": ["connected", "stale", "disconnected", "silent"],
                      "description": "silent: its reader has not reported for 10 s"},
            "connected": {"type": "boolean"}, "stale": {"type": "boolean"},
            "last_frame_time": {"type": ["string", "null"], "format": "date-time"},
            "last_seen": {"type": ["string", "null"], "format": "date-time",
                          "description": "when its reader last reported"},
            "frames_accepted": {"type": "integer", "description": "frames (messages, records, packets) decoded"},
            "frames_rejected": {"type": "integer"},
            "readings": {"type": "integer", "description": "values those frames carried"},
            "unrecognised": {"type": "integer", "description": "observations in good frames that are not charted"},
            "last_error": {"type": ["string", "null"]}, "reconnects": {"type": "integer"},
            "flags": {"type": "array", "items": {"type": "string"}}, "reported_by": {"type": "string"},
        },
    }
    device_report = {
        "type": "object",
        "required": ["device_id", "driver", "port", "station", "frames_accepted", "frames_rejected", "reconnects"],
        "properties": {
            "device_id": {"type": "string", "maxLength": 64}, "driver": {"type": "string", "maxLength": 32},
            "port": {"type": "string", "maxLength": 256}, "station": {"type": "string", "maxLength": 64},
            "connected": {"type": "boolean"}, "stale": {"type": "boolean"},
            "last_frame_time": {"type": ["string", "null"], "format": "date-time"},
            "frames_accepted": {"type": "integer", "description": "frames (messages, records, packets) decoded"},
            "frames_rejected": {"type": "integer"},
            "readings": {"type": "integer", "description": "values those frames carried"},
            "unrecognised": {"type": "integer", "description": "observations in good frames that are not charted"},
            "reconnects": {"type": "integer"}, "last_error": {"type": ["string", "null"]},
            "flags": {"type": "array", "items": {"type": "string"}},
        },
    }
    per_item = _json({"type": "object", "properties": {
        "accepted": {"type": "integer"},
        "duplicates": {"type": "integer", "description": "readings: already held under their reading_id"},
        "rejected": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "error": {"type": "string"}}}}}},
        "Valid items stored; each refused one listed with the field at fault")
    return {
        "openapi": "3.1.0",
        "info": {"title": "Frontdesk API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {
                "staffSession": {"type": "apiKey", "in": "cookie", "name": "frontdesk_session",
                                 "description": "__Host-frontdesk_session when the service runs over HTTPS"},
                "deviceToken": {"type": "http", "scheme": "bearer"},
            },
        },
        "paths": {
            "/readings": {
                "post": {
                    "summary": "Readings from a station gateway; replays (same reading_id) change nothing",
                    "security": [{"deviceToken": []}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["readings"],
                        "properties": {"gateway": {"type": "string"},
                                       "readings": {"type": "array", "maxItems": 1000, "items": reading}}}}}},
                    "description": "A reading for a station the gateway is not registered for, or from a "
                                   "device of another station, is refused like an invalid one.",
                    "responses": {
                        "200": per_item,
                        "400": _json(_ERROR, "Body is not an object with a list of readings, or too many"),
                        "401": _json(_ERROR, "Unknown or revoked gateway token"),
                    },
                },
            },
            "/devices/status": {
                "post": {
                    "summary": "Device status from a station gateway, for the stations it is registered for",
                    "security": [{"deviceToken": []}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["devices"],
                        "properties": {"gateway": {"type": "string"},
                                       "devices": {"type": "array", "maxItems": 64, "items": device_report}}}}}},
                    "responses": {
                        "200": per_item,
                        "400": _json(_ERROR, "Body is not an object with a list of devices, or too many"),
                        "401": _json(_ERROR, "Unknown or revoked gateway token"),
                    },
                },
            },
            "/devices": {
                "get": {
                    "summary": "Status of every device, as its reader (this server or a station gateway) last "
                               "reported it",
                    "security": [{"staffSession": []}],
                    "responses": {
                        "200": _json({"type": "object", "properties": {
                            "devices": {"type": "array", "items": device}}}, "Device status"),
                        "401": _json(_ERROR, "Not signed in"),
                        "403": _json(_ERROR, "Role not allowed"),
                    },
                },
            },
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
            "/flags": {
                "get": {
                    "summary": "Staff flags not yet acknowledged (all=1: with acknowledged ones), most urgent first",
                    "security": [{"staffSession": []}],
                    "parameters": [{"name": "all", "in": "query", "required": False,
                                    "schema": {"type": "string", "enum": ["1"]}}],
                    "responses": {
                        "200": _json({"type": "object", "properties": {"flags": {"type": "array", "items": {
                            "type": "object", "properties": {
                                "id": {"type": "integer"},
                                "kind": {"type": "string", "enum": ["phq9_item9", "identification_lockout",
                                                                    "follow_up_request", "consent_question"]},
                                "priority": {"type": "string", "enum": ["urgent", "high", "normal"]},
                                "message": {"type": "string"},
                                "patient_name": {"type": ["string", "null"]},
                                "visit_id": {"type": ["integer", "null"]},
                                "kiosk_id": {"type": ["integer", "null"]},
                                "created_at": {"type": "string", "format": "date-time"},
                                "acknowledged_at": {"type": ["string", "null"], "format": "date-time"}}}}}},
                            "The flags"),
                        "401": _json(_ERROR, "Not signed in"),
                        "403": _json(_ERROR, "Role not allowed"),
                    },
                },
            },
            "/pending-changes": {
                "get": {
                    "summary": "Contact and insurance changes patients asked for, waiting for staff approval",
                    "security": [{"staffSession": []}],
                    "responses": {
                        "200": _json({"type": "object", "properties": {"changes": {"type": "array", "items": {
                            "type": "object", "properties": {
                                "id": {"type": "integer"}, "patient_name": {"type": "string"},
                                "created_at": {"type": "string", "format": "date-time"},
                                "fields": {"type": "array", "items": {"type": "object", "properties": {
                                    "field": {"type": "string"}, "on_file": {"type": "string"},
                                    "requested": {"type": "string"}}}}}}}}}, "The changes"),
                        "401": _json(_ERROR, "Not signed in"),
                        "403": _json(_ERROR, "Role not allowed"),
                    },
                },
            },
            "/security/alerts": {
                "get": {
                    "summary": "Open security alerts: a sign-in locked for a user and address, an address slowed down",
                    "security": [{"staffSession": []}],
                    "responses": {
                        "200": _json({"type": "object", "properties": {"alerts": {"type": "array", "items": {
                            "type": "object", "properties": {
                                "id": {"type": "integer"},
                                "kind": {"type": "string", "enum": ["sign_in_locked", "address_throttled"]},
                                "subject": {"type": "string"}, "detail": {"type": "string"},
                                "raised_at": {"type": "string", "format": "date-time"}}}}}}, "Open alerts"),
                        "401": _json(_ERROR, "Not signed in"),
                        "403": _json(_ERROR, "Administrators only"),
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
