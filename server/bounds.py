"""Bounds on what a request may carry before any view sees it: route integers and JSON nesting.

Both are installed for the whole app in :func:`server.create_app`, so every
route, including ones added later, gets them without asking:

* ``<int:...>`` in a route accepts only 0 … 2³¹−1, the range of the integer
  columns ids live in on PostgreSQL. Anything longer is a 404 at routing time,
  instead of an ``OverflowError`` from SQLite or a ``DataError`` from
  PostgreSQL (a 500) once the view queries with it.
* JSON bodies nested deeper than :data:`MAX_JSON_DEPTH` are refused as
  invalid JSON (400), as are bodies so deep that Python's parser runs out of
  recursion (a ``RecursionError``, formerly a 500). Body size is bounded
  earlier, by the server and ``MAX_CONTENT_LENGTH`` (413).
"""

from __future__ import annotations

import typing as t

from flask.json.provider import DefaultJSONProvider
from werkzeug.routing import IntegerConverter
from werkzeug.routing import Map

MAX_ROUTE_INT = 2**31 - 1
MAX_JSON_DEPTH = 32


class BoundedIntConverter(IntegerConverter):
    """Werkzeug's ``int`` converter, limited to the ids our tables can hold."""

    def __init__(self, map: Map, fixed_digits: int = 0, min: int | None = None, max: int | None = None,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=0 if min is None else min,
                         max=MAX_ROUTE_INT if max is None else max, signed=signed)


class JSONTooDeep(ValueError):
    """A JSON document nested beyond :data:`MAX_JSON_DEPTH` (a ``ValueError``, so Flask answers 400)."""


def json_depth(value: t.Any) -> int:
    """How deeply ``value`` nests lists and objects (a scalar is 0), walked without recursion."""
    deepest = 0
    pending: list[tuple[t.Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            depth += 1
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                break
            pending.extend((child, depth) for child in item)
    return deepest


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, refusing documents nested too deeply for our handlers or Python's parser."""

    def loads(self, s: str | bytes, **kwargs: t.Any) -> t.Any:
        try:
            value = super().loads(s, **kwargs)
        except RecursionError:
            raise JSONTooDeep(f"JSON nested more than {MAX_JSON_DEPTH} levels") from None
        if json_depth(value) > MAX_JSON_DEPTH:
            raise JSONTooDeep(f"JSON nested more than {MAX_JSON_DEPTH} levels")
        return value
