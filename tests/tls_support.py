"""Throwaway certificate authorities and certificates for the TLS tests, made at run time.

``make_pki(directory)`` writes PEM files: a CA, a server certificate for
``localhost`` and ``127.0.0.1`` signed by it, a client certificate signed by it,
and a second, unrelated CA with its own server and client certificates (what
an impostor would have). Keys are EC P-256: quick to make.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import ipaddress
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files (certificate files also hold their key)."""

    ca: str
    server: str
    client: str
    other_ca: str
    other_server: str
    other_client: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, issuer_key = issuer if issuer is not None else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
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
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    path: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey | None
) -> str:
    data = certificate.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    path.write_bytes(data)
    path.chmod(0o600)
    return str(path)


def _authority(directory: Path, stem: str) -> tuple[str, str, str]:
    """A CA and a server and a client certificate it signed: their PEM paths."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_certificate = _issue(f"{stem} test CA", ca_key, None, ca=True)
    issuer = (ca_certificate.subject, ca_key)
    paths = [_write(directory / f"{stem}-ca.pem", ca_certificate, None)]
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _issue(f"{stem} {role}", key, issuer, server=role == "server")
        paths.append(_write(directory / f"{stem}-{role}.pem", certificate, key))
    return paths[0], paths[1], paths[2]


def make_pki(directory: Path) -> Pki:
    return Pki(*_authority(directory, "good"), *_authority(directory, "other"))


@functools.cache
def session_pki() -> Pki:
    """One set of certificates for the whole test session (removed at exit)."""
    directory = Path(
        tempfile.mkdtemp(prefix=f"{os.environ.get('UNIXIPC_TEST_PREFIX', 'uxt')}-pki-")
    )
    atexit.register(shutil.rmtree, directory, True)
    return make_pki(directory)
