"""Server time of ``POST /api/v1/readings`` (the gateways' hot path) with its Pydantic validation, beside
the same work without it, in the same run.

* **ours**: the real endpoint: the body checked against ``ReadingBatch``, each reading against
  ``ReadingIn`` and the domain rules, stored, the response checked against ``PerItem``;
* **baseline**: a bare route on the same app doing only what the endpoint did before the schemas
  (the same token check, ``request.get_json``, the domain rules of :meth:`IncomingReading.from_json`, the
  station check, the same store call).

The checking alone is timed too, per reading, with ``time.process_time`` (CPU, so other processes on
the machine disturb it less): ``ReadingIn`` then the domain rules, beside the domain rules alone.

Both take the same batches (1 and 50 readings, fresh ids each time so every reading is stored) on a
fresh SQLite database, through Flask's WSGI test client (no network: the server's own time).

    python bench/bench_readings_api.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import statistics
import tempfile
import time
import typing as t
from pathlib import Path

from flask import Flask
from flask import g
from flask import jsonify
from flask import request

from server import create_app
from server import migrate
from server.auth import requires
from server.config import Config
from server.db import make_engine
from server.extensions import csrf
from server.schemas import ReadingIn
from server.services import Services
from server.services.stations import check_sender
from server.services.vitals import IncomingReading

ids = itertools.count()


def batch(size: int) -> dict[str, t.Any]:
    now = dt.datetime.now(dt.UTC).isoformat()
    return {"gateway": "bench-pc", "readings": [
        {"reading_id": f"r{next(ids)}", "device_id": f"ox-{i % 4}", "station": "room1", "metric": "spo2",
         "mdc_code": 150456, "value": "97", "unit": "%", "flags": [], "device_time": None, "host_time": now}
        for i in range(size)]}


def add_baseline(app: Flask, services: Services) -> None:
    @requires(principals=("gateway",))
    def baseline() -> t.Any:
        body = request.get_json(silent=True)
        owners = services.stations.owners()
        good = []
        for item in body["readings"]:
            reading = IncomingReading.from_json(item)
            check_sender(g.device.stations, owners, reading.station, reading.device_id)
            good.append(reading)
        return jsonify(accepted=services.vitals.record(good), rejected=[])

    app.add_url_rule("/bench/readings", "bench_readings", csrf.exempt(baseline), methods=["POST"])


def measure(app: Flask, path: str, token: str, size: int, rounds: int) -> list[float]:
    client = app.test_client()
    times = []
    for _ in range(rounds):
        body = batch(size)
        start = time.perf_counter()
        response = client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200 and response.json["accepted"] == size, response.text
    return times


def checking_cpu(rounds: int) -> None:
    """CPU per reading of the checks alone: the schema and the domain rules, beside the domain rules alone."""
    items = batch(1000)["readings"]
    for label, check in (("baseline", IncomingReading.from_json),
                         ("ours", lambda item: IncomingReading.from_json(ReadingIn.model_validate(item).model_dump())),
                         ("baseline", IncomingReading.from_json),
                         ("ours", lambda item: IncomingReading.from_json(ReadingIn.model_validate(item).model_dump()))):
        start = time.process_time()
        for _ in range(rounds):
            for item in items:
                check(item)
        per_reading = (time.process_time() - start) / (rounds * len(items)) * 1e6
        print(f"checking one reading, {label:<9} {per_reading:7.1f} µs CPU")


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Config.for_tests(db_url=f"sqlite:///{Path(tmp) / 'bench.db'}", instance_dir=Path(tmp))
        migrate.upgrade(make_engine(config.database_url))
        app = create_app(config)
        services = t.cast(Services, app.extensions["frontdesk"])
        token = services.devices.add("gateway", "bench-pc", stations=("room1",))
        add_baseline(app, services)
        for path in ("/bench/readings", "/api/v1/readings"):
            measure(app, path, token, 50, 20)  # warm-up: first requests build caches on both sides
        print(f"POST readings, server time in ms over {args.rounds} requests (SQLite):")
        print(f"{'batch':>6} {'':<9} {'p50':>7} {'p95':>7}")
        for size in (1, 50):
            for label, path in (("baseline", "/bench/readings"), ("ours", "/api/v1/readings"),
                                ("baseline", "/bench/readings"), ("ours", "/api/v1/readings")):
                times = measure(app, path, token, size, args.rounds)
                print(f"{size:>6} {label:<9} {statistics.median(times):>7.2f} {p95(times):>7.2f}")
        services.live.close()
    checking_cpu(max(1, args.rounds // 20))


if __name__ == "__main__":
    main()
