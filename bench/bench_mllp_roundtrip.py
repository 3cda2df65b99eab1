"""Enqueue-to-ACK latency over loopback MLLP at 10 messages per second.

Ours: messages go into an in-memory outbox; a dispatcher step (claim, send on
the persistent :class:`hl7.client.MLLPClient`, classify the ACK, mark sent) runs
as soon as each is enqueued. Baseline, measured in the same run against the
same receiver: the python-hl7 ``mllp_send`` pattern, one TCP connection per
message (connect, send, read the ACK, close).

The receiver is ``frontdesk records-server`` in its own process, storing every
message in SQLite with ``synchronous=FULL``, as it would in the demo. Both are
measured in plain MLLP and in TLS, where a connection per message also costs a
handshake per message. The TLS certificates are made on the fly with the
``cryptography`` package.

Run: ``.venv/bin/python bench/bench_mllp_roundtrip.py [--messages N] [--rate PER_SECOND]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hl7.client import MLLPClient
from hl7.dispatcher import Dispatcher
from hl7.dispatcher import OutboundItem
from hl7.mllp import MLLPDecoder
from hl7.mllp import encode_frame
from hl7.tls import client_context

REPO = Path(__file__).resolve().parents[1]

ORU = (
    "MSH|^~\\&|KIOSK_VITALS^0012A3FFFE4B5C6D^EUI-64|FAMCLINIC|EHR|FAMCLINIC|20261126093012+0000||"
    "ORU^R01^ORU_R01|{cid}|P|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO\r"
    "PID|||004711^^^FAMCLINIC^MR||Doe^Jane^^^^^L||19800214|F\r"
    "PV1||O|EXAM2^^^FAMCLINIC||||||||||||||||V0008812^^^FAMCLINIC^VN\r"
    "OBR|1|KV-0001^KIOSK_VITALS|0012A3FFFE4B5C6D20261126092955^KIOSK_VITALS^0012A3FFFE4B5C6D^EUI-64|"
    "182777000^monitoring of patient^SCT|||20261126092955+0000\r"
    "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.0.0.1|97|262688^MDC_DIM_PERCENT^MDC|90-100||||R|||"
    "20261126092901+0000|||AMEAS^auto-measurement^MDC\r"
    "OBX|2|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.0.0.2|72|264864^MDC_DIM_BEAT_PER_MIN^MDC|50-120||||R|||"
    "20261126092901+0000|||AMEAS^auto-measurement^MDC\r"
    "OBX|3|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.0.0.3|128|266016^MDC_DIM_MMHG^MDC|90-160||||R|||"
    "20261126092840+0000|||MMEAS^manual-measurement^MDC\r"
    "OBX|4|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.0.0.4|82|266016^MDC_DIM_MMHG^MDC|50-90||||R|||"
    "20261126092840+0000|||MMEAS^manual-measurement^MDC\r"
    "OBX|5|NM|188424^MDC_TEMP_ORAL^MDC|1.0.0.5|36.8|268192^MDC_DIM_DEGC^MDC|||||R|||"
    "20261126092930+0000|||MMEAS^manual-measurement^MDC\r"
)


class QueueOutbox:
    """The smallest outbox that satisfies the dispatcher: FIFO, one key, enqueue times kept."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: list[OutboundItem] = []
        self.enqueued_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.failures = 0

    def enqueue(self, item: OutboundItem) -> None:
        with self.lock:
            self.enqueued_at[item.id] = time.perf_counter()
            self.pending.append(item)

    def claim_next(self, now: dt.datetime, lease_seconds: float, limit: int) -> list[OutboundItem]:
        with self.lock:
            return self.pending[:1]

    def mark_sent(self, acks: Sequence[tuple[int, bytes]], now: dt.datetime) -> None:
        with self.lock:
            for id, _ in acks:
                self.latencies.append(time.perf_counter() - self.enqueued_at[id])
                self.pending.pop(0)

    def mark_unsent(self, ids: Sequence[int], now: dt.datetime) -> None:
        raise AssertionError("a batch of one never runs out of lease time")

    def mark_retry(self, id: int, reason: str, next_attempt_at: dt.datetime) -> None:
        self.failures += 1

    def mark_dead(self, id: int, reason: str) -> None:
        self.failures += 1
        with self.lock:
            self.pending.pop(0)


class NoJitter:
    def random(self) -> float:
        return 0.0


def make_certificates(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1; returns (certificate, key). It is its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "records.bench")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def start_receiver(store: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [
            str(REPO / ".venv" / "bin" / "frontdesk"),
            "records-server",
            "--listen",
            "127.0.0.1:0",
            "--store",
            str(store),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    found = re.search(r":(\d+)", process.stdout.readline())
    if not found:
        process.kill()
        sys.exit("records server did not start")
    # Keep its per-message output from filling the pipe.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, int(found.group(1))


def paced(count: int, rate: float) -> list[float]:
    """Send times, ``1/rate`` apart, starting now."""
    start = time.perf_counter()
    return [start + n / rate for n in range(count)]


def wait_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def run_ours(port: int, count: int, rate: float, context: ssl.SSLContext | None) -> tuple[list[float], int]:
    outbox = QueueOutbox()
    client = MLLPClient("127.0.0.1", port, ssl_context=context, connect_timeout=5, ack_timeout=10)
    dispatcher = Dispatcher(outbox, client, clock=lambda: dt.datetime.now(dt.UTC), rng=NoJitter(), batch_size=1)
    for n, moment in enumerate(paced(count, rate)):
        wait_until(moment)
        cid = f"OURS{n:06d}"
        outbox.enqueue(OutboundItem(n, cid, "P1", ORU.format(cid=cid).encode(), 1))
        while outbox.pending:
            dispatcher.dispatch_once()
    client.close()
    return outbox.latencies, outbox.failures


def send_one_connection(port: int, payload: bytes, context: ssl.SSLContext | None) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
        sock.sendall(encode_frame(payload))
        decoder = MLLPDecoder()
        while not decoder.feed(sock.recv(65536)):
            pass


def run_baseline(port: int, count: int, rate: float, context: ssl.SSLContext | None) -> list[float]:
    latencies = []
    for n, moment in enumerate(paced(count, rate)):
        wait_until(moment)
        begin = time.perf_counter()
        send_one_connection(port, ORU.format(cid=f"BASE{n:06d}").encode(), context)
        latencies.append(time.perf_counter() - begin)
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def report(name: str, latencies: list[float]) -> None:
    ms = [v * 1000 for v in latencies]
    print(
        f"{name:<48} n={len(ms):<4} p50={percentile(ms, 0.5):7.2f} ms  p99={percentile(ms, 0.99):7.2f} ms"
        f"  mean={statistics.fmean(ms):7.2f} ms"
    )


def measure(store: Path, count: int, rate: float, tls: tuple[Path, Path] | None) -> None:
    extra = ("--tls-cert", str(tls[0]), "--tls-key", str(tls[1])) if tls else ()
    context = client_context(cafile=str(tls[0])) if tls else None
    process, port = start_receiver(store, *extra)
    try:
        send_one_connection(port, ORU.format(cid="WARMUP").encode(), context)
        baseline = run_baseline(port, count, rate, context)
        ours, failures = run_ours(port, count, rate, context)
    finally:
        process.terminate()
        process.wait(timeout=30)
    label = "TLS" if tls else "plain"
    report(f"{label} baseline: one connection per message", baseline)
    report(f"{label} ours: dispatcher + persistent MLLPClient", ours)
    if failures:
        print(f"{label} ours: {failures} retries or dead letters (expected 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100, help="messages per measurement (4 measurements)")
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args()
    print(f"enqueue -> ACK over loopback at {args.rate:g} msg/s, {len(ORU)}-byte ORU^R01, receiver stores with fsync")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        measure(directory / "plain.sqlite3", args.messages, args.rate, None)
        measure(directory / "tls.sqlite3", args.messages, args.rate, make_certificates(directory))


if __name__ == "__main__":
    main()
