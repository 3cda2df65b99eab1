"""A small TLS-terminating reverse proxy, standing in for nginx or a load balancer in front of ``serve``.

It does what such a proxy does for the application and nothing more: it ends
TLS, sets ``X-Forwarded-For`` and ``X-Forwarded-Proto: https`` on every
request (replacing whatever the client sent) and passes the response bytes
back unchanged. Requests are read head by head (bodies by ``Content-Length``)
so keep-alive connections from a browser work; responses are streamed as they
come. One thread pair per connection, bound to 127.0.0.1, stopped by
:meth:`TLSProxy.close`.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path

_FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
              b"x-forwarded-prefix", b"forwarded")
_MAX_HEAD = 64 * 1024


class TLSProxy:
    """Listens with TLS on a free port of 127.0.0.1 and forwards to ``backend_port`` in plain HTTP."""

    def __init__(self, backend_port: int, *, certfile: Path, keyfile: Path) -> None:
        self.backend_port = backend_port
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._context.load_cert_chain(str(certfile), str(keyfile))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tls-proxy", daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        """The URL a browser uses."""
        return f"https://localhost:{self.port}"

    def close(self) -> None:
        """Stop accepting; open connections end when either side closes."""
        self._closing.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                raw, address = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw, address[0]), daemon=True).start()

    def _serve(self, raw: socket.socket, client_ip: str) -> None:
        try:
            client = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        try:
            backend = socket.create_connection(("127.0.0.1", self.backend_port), timeout=30)
        except OSError:
            client.close()
            return
        threading.Thread(target=_pipe, args=(backend, client), daemon=True).start()
        try:
            _forward_requests(client, backend, client_ip)
        finally:
            with contextlib.suppress(OSError):
                backend.shutdown(socket.SHUT_WR)


def _forward_requests(client: ssl.SSLSocket, backend: socket.socket, client_ip: str) -> None:
    """Copy requests from the browser to the application, rewriting the forwarding headers of each."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = _recv(client)
            if not chunk or len(buffer) > _MAX_HEAD:
                return
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        kept = [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in _FORWARDED]
        length = 0
        for line in kept:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        forwarded = [lines[0], *kept, b"X-Forwarded-For: " + client_ip.encode(), b"X-Forwarded-Proto: https"]
        while len(buffer) < length:
            chunk = _recv(client)
            if not chunk:
                return
            buffer += chunk
        body, buffer = buffer[:length], buffer[length:]
        backend.sendall(b"\r\n".join(forwarded) + b"\r\n\r\n" + body)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _pipe(source: socket.socket, target: ssl.SSLSocket) -> None:
    """Copy the application's responses back to the browser until either side closes."""
    try:
        while chunk := _recv(source):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.close()
