"""TLS to NATS, when configured: a real nats-server serving TLS and verifying client certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ordermesh.contract.subjects import INTENTS
from ordermesh.contract.wire import Fixed, Intent, Side
from ordermesh.platform.bus import Bus, BusError
from ordermesh.platform.config import NatsSettings, TlsSettings
from ordermesh.platform.natsserver import NatsServer


def _cert(
    directory: Path, name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, *, ca: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert, key


def _files(directory: Path, name: str, ca: str = "ca") -> TlsSettings:
    return TlsSettings(
        ca_file=str(directory / f"{ca}.pem"),
        cert_file=str(directory / f"{name}.pem"),
        key_file=str(directory / f"{name}.key"),
    )


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    ca = _cert(tmp_path, "ca", None, ca=True)
    _cert(tmp_path, "server", ca, ca=False)
    _cert(tmp_path, "client", ca, ca=False)
    other = _cert(tmp_path, "other-ca", None, ca=True)
    _cert(tmp_path, "stranger", other, ca=False)
    return tmp_path


@pytest.fixture
def tls_server(pki: Path) -> Iterator[NatsServer]:
    server = NatsServer(pki / "nats", tls=_files(pki, "server")).start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_client_with_the_configured_files_talks_over_tls(tls_server: NatsServer, pki: Path) -> None:
    bus = Bus(NatsSettings(url=tls_server.url, tls=_files(pki, "client")), "test")
    await bus.connect(deadline_s=5)
    try:
        await bus.provision()
        intent = Intent(
            intent_id="i-tls", strategy_id="s", account="a", symbol="EURUSD", side=Side.BUY, sizing=Fixed(qty=1)
        )
        ack = await bus.publish(bus.subjects.intent("s"), intent, msg_id=intent.intent_id)
        assert ack.stream == INTENTS and ack.seq == 1
        # (the server requires TLS: a plain client is refused, below)
    finally:
        await bus.close()


@pytest.mark.parametrize(
    ("name", "tls"),
    [
        ("no TLS", None),
        ("no client certificate", TlsSettings(ca_file="{pki}/ca.pem")),
        ("a certificate from another CA", "stranger"),
    ],
)
async def test_a_client_without_the_right_files_is_refused(
    tls_server: NatsServer, pki: Path, name: str, tls: TlsSettings | str | None
) -> None:
    if isinstance(tls, str):
        settings = TlsSettings(
            ca_file=str(pki / "ca.pem"), cert_file=str(pki / f"{tls}.pem"), key_file=str(pki / f"{tls}.key")
        )
    elif tls is not None:
        settings = TlsSettings(ca_file=tls.ca_file.format(pki=pki) if tls.ca_file else None)
    else:
        settings = None
    bus = Bus(NatsSettings(url=tls_server.url, tls=settings, connect_timeout_s=0.5), "test")
    with pytest.raises(BusError, match="cannot connect to NATS"):
        await bus.connect(deadline_s=3)


async def test_unreadable_tls_files_are_one_line(tls_server: NatsServer, tmp_path: Path) -> None:
    bus = Bus(NatsSettings(url=tls_server.url, tls=TlsSettings(ca_file=str(tmp_path / "missing.pem"))), "test")
    with pytest.raises(BusError, match="cannot use the TLS files"):
        await bus.connect(deadline_s=3)
