"""TLS contexts for MLLP, built from certificate paths in configuration.

No HL7 v2 specification requires TLS, but IHE ATNA (ITI-19) requires mutually
authenticated TLS 1.2 or later between nodes, and HIPAA 164.312(e) treats
transmission encryption as the norm. Both sides therefore refuse anything
older than TLS 1.2, and the client always verifies the server against the
configured CA and host name: a records interface that accepts any certificate
is as open to the in-transit rewriting shown in "Pestilential Protocol" as
plaintext MLLP.

Certificates are rotated without a restart: every context here re-reads its
files when one of them changed on disk, just before the next handshake (one
``stat`` per file per connection). Open connections keep the certificate they
started with; a file that cannot be loaded (a key written before its
certificate, say) leaves the previous certificate in use and is tried again at
the next connection. A CA file is added to those already trusted, so a CA
removed from the file stays trusted until the process restarts.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import typing as t

log = logging.getLogger(__name__)


class ReloadingContext(ssl.SSLContext):
    """An :class:`ssl.SSLContext` that re-reads its certificate files when they change (see the module docstring).

    Both the listener and the client wrap every connection through
    :meth:`wrap_socket`, so checking there covers every handshake.
    """

    _files: tuple[str, ...]
    _loaded: tuple[float, ...]
    _load: t.Callable[[ssl.SSLContext], None]
    _reload_lock: threading.Lock

    def watch(self, files: t.Sequence[str], load: t.Callable[[ssl.SSLContext], None]) -> None:
        """Load ``files`` into this context with ``load`` now, and again whenever one of them changes."""
        self._files = tuple(files)
        self._load = load
        self._reload_lock = threading.Lock()
        load(self)
        self._loaded = self._stamps()

    def _stamps(self) -> tuple[float, ...]:
        return tuple(os.stat(path).st_mtime_ns for path in self._files)

    def refresh(self) -> None:
        """Re-read the files if any changed since they were last loaded."""
        with self._reload_lock:
            try:
                stamps = self._stamps()
                if stamps == self._loaded:
                    return
                self._load(self)
            except (OSError, ssl.SSLError) as exc:
                log.warning("hl7.certificate_reload_failed", extra={"path": ",".join(self._files),
                                                                    "reason": str(exc)})
                return
            self._loaded = stamps
        log.info("hl7.certificate_reloaded", extra={"path": ",".join(self._files)})

    def wrap_socket(self, sock: socket.socket, *args: t.Any, **kwargs: t.Any) -> ssl.SSLSocket:
        self.refresh()
        return super().wrap_socket(sock, *args, **kwargs)


def server_context(
    *,
    certfile: str,
    keyfile: str,
    client_cafile: str | None = None,
) -> ssl.SSLContext:
    """Context for the MLLP listener.

    :param certfile: PEM certificate chain the listener presents.
    :param keyfile: PEM private key for ``certfile``.
    :param client_cafile: when given, mutual TLS: every client must present a
        certificate signed by a CA in this PEM file, or the handshake fails.
        An IP allow-list alone is weak peer authentication; a client
        certificate identifies the sending system.
    """
    context = ReloadingContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2

    def load(ctx: ssl.SSLContext) -> None:
        ctx.load_cert_chain(certfile=certfile, keyfile=keyfile)
        if client_cafile is not None:
            ctx.load_verify_locations(cafile=client_cafile)

    context.watch([certfile, keyfile, *([client_cafile] if client_cafile else [])], load)
    if client_cafile is not None:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    *,
    cafile: str,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> ssl.SSLContext:
    """Context for the MLLP client.

    :param cafile: PEM file with the CA(s) that may sign the receiver's
        certificate. Required: the system trust store is the wrong authority
        for a clinic's interface engine, and no verification is no security.
    :param certfile: PEM client certificate for mutual TLS.
    :param keyfile: PEM private key for ``certfile``.
    :raises ValueError: if only one of ``certfile`` and ``keyfile`` is given.
    """
    if (certfile is None) != (keyfile is None):
        raise ValueError("certfile and keyfile go together")
    context = ReloadingContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2

    def load(ctx: ssl.SSLContext) -> None:
        ctx.load_verify_locations(cafile=cafile)
        if certfile is not None:
            ctx.load_cert_chain(certfile=certfile, keyfile=keyfile)

    context.watch([cafile, *([certfile, keyfile] if certfile and keyfile else [])], load)
    return context
