"""A TLS-terminating TCP proxy on loopback, in front of a plaintext Temporal dev server.

The dev server's CLI has no TLS options, so a test reaches it through this proxy:
a real TLS handshake (ALPN ``h2``) with a certificate from a CA made for the
test, then the bytes go to the server unchanged. The proxy also reads the
client's HTTP/2 frames as they pass (it never answers or alters them), and
records each request's headers, so a test can see what metadata reached the
server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.loopback import Connections, loopback_server

__all__ = ["Certificates", "TlsProxy", "make_certificates", "tls_proxy"]


@dataclass(frozen=True)
class Certificates:
    ca: Path
    """The test CA's certificate: what a client must trust."""
    cert: Path
    key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certificates(folder: Path, *, host: str = "localhost") -> Certificates:
    """A CA and a server certificate it signed for ``host`` and 127.0.0.1, as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("durable test CA"))
        .issuer_name(_name("durable test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = Certificates(ca=folder / "ca.pem", cert=folder / "server.pem", key=folder / "key.pem")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class TlsProxy:
    address: str
    requests: list[dict[str, str]] = field(default_factory=list)
    """The headers of every HTTP/2 request a client sent through the proxy."""
    handshakes: int = 0
    """TLS handshakes completed."""


class _Observer:
    """Reads the client's side of an HTTP/2 connection, as a server would, without answering."""

    def __init__(self, proxy: TlsProxy) -> None:
        self.proxy = proxy
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.h2.initiate_connection()
        self.failed = False

    def feed(self, data: bytes) -> None:
        if self.failed:
            return
        try:
            events = self.h2.receive_data(data)
        except Exception:  # an observer must never break the connection it watches
            self.failed = True
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived) and event.headers:
                self.proxy.requests.append(
                    {_text(name): _text(value) for name, value in event.headers}
                )
            elif isinstance(event, h2.events.DataReceived) and event.stream_id:
                # Keep the observer's windows open; the real server sets the client's.
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.h2.data_to_send()  # what a server would answer is the real server's to say


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, observer: _Observer | None
) -> None:
    try:
        while data := await reader.read(65536):
            if observer is not None:
                observer.feed(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@contextlib.asynccontextmanager
async def tls_proxy(upstream: str, certificates: Certificates) -> AsyncIterator[TlsProxy]:
    """A TLS proxy on a free loopback port to the plaintext server at ``upstream``.

    Connections are accepted in plain TCP and their handshake done by the handler,
    so one closed mid-handshake is still the proxy's to close.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert, certificates.key)
    context.set_alpn_protocols(["h2"])
    host, port = upstream.rsplit(":", 1)
    proxy = TlsProxy(address="")

    async def serve(
        client_reader: asyncio.StreamReader, client: asyncio.StreamWriter, held: Connections
    ) -> None:
        try:
            await client.start_tls(context)
            proxy.handshakes += 1
            server_reader, server = await asyncio.open_connection(host, int(port))
        except (ConnectionError, ssl.SSLError):
            return  # a client that refused the certificate, or went away
        held.add(server)
        await asyncio.gather(
            _pipe(client_reader, server, _Observer(proxy)), _pipe(server_reader, client, None)
        )

    async with loopback_server(serve) as listening:
        proxy.address = f"127.0.0.1:{listening}"
        yield proxy
