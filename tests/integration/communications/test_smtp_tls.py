"""E-mail over encrypted SMTP against a real server (aiosmtpd): STARTTLS on the submission
port and implicit TLS, each with AUTH, and a server whose certificate nobody vouches for
refused rather than trusted."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers import free_port
from transact.communications import channels
from transact.communications.domain import EmailConfig, Rendered, Result, Sender

# aiosmtpd warns that AUTH without STARTTLS is unsafe: on the implicit-TLS port it is TLS.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "shop", "mail-secret"
SENDER = Sender("Example Shop", "pay@shop.example")
RENDERED = Rendered("Your payment link", "Pay here: https://pay.example/pay/t", "<p>Pay</p>", "")


@dataclass
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(
    subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA and a certificate for 127.0.0.1 signed by it."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test CA", ca_key, "Test CA", ca_key, ca=True)
    leaf = _certificate("127.0.0.1", key, "Test CA", ca_key, ca=False)
    return Pki(
        ca_file=_pem(folder / "ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        cert_file=_pem(folder / "cert.pem", leaf.public_bytes(serialization.Encoding.PEM)),
        key_file=_pem(
            folder / "key.pem",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ),
    )


class Inbox:
    def __init__(self) -> None:
        self.received: list[Any] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.received.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok)


def _server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    return context


@pytest.fixture
def trust_test_ca(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    # The client checks certificates against the system's store; here that is our CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))


def _serve(inbox: Inbox, pki: Pki, *, implicit: bool) -> Controller:
    context = _server_context(pki)
    common: dict[str, Any] = {
        "hostname": "127.0.0.1",
        "port": free_port(),
        "authenticator": inbox.authenticate,
        "auth_required": True,
    }
    if implicit:
        # The connection is TLS from its first byte, which aiosmtpd does not count as TLS.
        return Controller(inbox, ssl_context=context, **common, auth_require_tls=False)
    return Controller(inbox, tls_context=context, require_starttls=True, **common)


@pytest.fixture
def starttls_server(pki: Pki) -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = _serve(inbox, pki, implicit=False)
    controller.start()
    yield inbox, controller.port
    controller.stop()


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = _serve(inbox, pki, implicit=True)
    controller.start()
    yield inbox, controller.port
    controller.stop()


async def _send(port: int, security: str, password: str = PASSWORD) -> channels.Delivery:
    config = EmailConfig("127.0.0.1", port, security, USER, timeout=5.0)  # type: ignore[arg-type]
    return await channels.send_email(config, password, SENDER, "customer@example.com", RENDERED)


@pytest.mark.usefixtures("trust_test_ca")
async def test_starttls_with_auth_delivers(starttls_server: tuple[Inbox, int]) -> None:
    inbox, port = starttls_server
    delivery = await _send(port, "starttls")
    assert delivery.result is Result.SENT, delivery.reason
    [mail] = inbox.received
    assert mail["Subject"] == "Your payment link"
    assert inbox.logins  # authenticated, after STARTTLS (the server requires it first)


@pytest.mark.usefixtures("trust_test_ca")
async def test_implicit_tls_with_auth_delivers(tls_server: tuple[Inbox, int]) -> None:
    inbox, port = tls_server
    delivery = await _send(port, "tls")
    assert delivery.result is Result.SENT, delivery.reason
    assert len(inbox.received) == 1
    assert inbox.logins


async def test_a_certificate_nobody_vouches_for_is_not_trusted(
    starttls_server: tuple[Inbox, int],
) -> None:
    # No test CA in the trust store: the server's certificate cannot be checked, so
    # nothing (not the password, not the link) is sent to it.
    inbox, port = starttls_server
    delivery = await _send(port, "starttls")
    assert delivery.result is not Result.SENT
    await asyncio.sleep(0)
    assert inbox.received == []
    assert inbox.logins == []
