"""TLS contexts for MLLP, built from certificate paths in configuration.

No HL7 v2 specification requires TLS, but IHE ATNA (ITI-19) requires mutually
authenticated TLS 1.2 or later between nodes, and HIPAA 164.312(e) treats
transmission encryption as the norm. Both sides therefore refuse anything
older than TLS 1.2, and the client always verifies the server against the
configured CA and host name: a records interface that accepts any certificate
is as open to the in-transit rewriting shown in "Pestilential Protocol" as
plaintext MLLP.
"""

from __future__ import annotations

import ssl


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
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=certfile, keyfile=keyfile)
    if client_cafile is not None:
        context.load_verify_locations(cafile=client_cafile)
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
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=cafile)
    if certfile is not None:
        context.load_cert_chain(certfile=certfile, keyfile=keyfile)
    return context
