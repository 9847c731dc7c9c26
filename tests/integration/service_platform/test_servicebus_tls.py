"""Service Bus clients share one TLS context per process and still check the server's certificate.

Against a real TLS server on a private port with a self-signed certificate, reached through the SDK's
``custom_endpoint_address`` (Service Bus itself listens on 5671, which a test cannot take). No AMQP is spoken
after the handshake: what matters here is who checks the certificate, with which context. (The SDK would
otherwise build a context, loading its CA bundle, for every connection: each session receiver is one.)
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage, TransportType
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service_platform.servicebus_clients import ServiceBusClientFactory, tls_context

# AMQP over TCP, as the services connect, to the private port instead of 5671.
TO_THE_TEST_SERVER = {"retry_total": 0, "transport_type": TransportType.Amqp}


class SelfSignedTlsServer:
    """Accepts TLS handshakes for ``localhost`` with a certificate no CA signed; records each outcome."""

    def __init__(self, folder: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + datetime.timedelta(hours=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                .sign(key, hashes.SHA256()))
        self.cert_path = folder / "server.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path = folder / "server.key"
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(self.cert_path, key_path)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.handshakes: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            try:
                with self._context.wrap_socket(connection, server_side=True) as tls:
                    self.handshakes.append("completed")
                    tls.recv(8)
            except (OSError, ssl.SSLError):
                self.handshakes.append("refused by the client")
            finally:
                connection.close()

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[SelfSignedTlsServer]:
    server = SelfSignedTlsServer(tmp_path)
    yield server
    server.close()


async def send_through(factory: ServiceBusClientFactory) -> BaseException:
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the chain is inspected below
        async with factory() as client, client.get_queue_sender("orders") as sender:
            await sender.send_messages(ServiceBusMessage(b"{}"))
    return raised.value


def causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def test_clients_check_the_certificate_with_the_one_shared_context(tls_server: SelfSignedTlsServer) -> None:
    factory = ServiceBusClientFactory(
        "Endpoint=sb://localhost/;SharedAccessKeyName=any;SharedAccessKey=YW55",
        client_options={**TO_THE_TEST_SERVER, "custom_endpoint_address": f"sb://localhost:{tls_server.port}"})
    handshakes_before = tls_context().session_stats()["connect"]

    async def two_clients() -> list[BaseException]:
        return [await asyncio.wait_for(send_through(factory), 30) for _ in range(2)]

    for error in asyncio.run(two_clients()):
        assert any(isinstance(cause, ssl.SSLCertVerificationError) for cause in causes(error)), \
            f"a self-signed certificate must be refused: {causes(error)}"
    assert tls_context().session_stats()["connect"] - handshakes_before >= 2, \
        "both clients' handshakes went through the process's one TLS context"


def test_a_client_given_its_own_ca_bundle_uses_it(tls_server: SelfSignedTlsServer) -> None:
    factory = ServiceBusClientFactory(
        "Endpoint=sb://localhost/;SharedAccessKeyName=any;SharedAccessKey=YW55",
        client_options={**TO_THE_TEST_SERVER, "custom_endpoint_address": f"sb://localhost:{tls_server.port}",
                        "connection_verify": str(tls_server.cert_path)})
    handshakes_before = tls_context().session_stats()["connect"]

    error = asyncio.run(asyncio.wait_for(send_through(factory), 30))

    assert not any(isinstance(cause, ssl.SSLCertVerificationError) for cause in causes(error))
    assert "completed" in tls_server.handshakes, "the bundle given trusts the server's certificate"
    assert tls_context().session_stats()["connect"] == handshakes_before
