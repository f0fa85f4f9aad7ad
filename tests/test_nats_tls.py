"""nats:// over TLS to the NATS server: a throwaway CA, a server that verifies clients.

The channel's ends are both clients of the NATS server, so TLS here is NATS's own:
``ca_file`` trusts the server's certificate, ``certificate``/``private_key`` are the
end's client certificate when the server asks for one, ``server_hostname`` the name
the server's certificate must carry (``ssl_context`` replaces all of them).
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import unixipc
from tests import nats_support
from tests.channel_support import WAIT
from tests.conftest import Names
from unixipc import IPCOSError


def _openssl(*arguments: str) -> None:
    subprocess.run(["openssl", *arguments], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, signed by it."""
    directory = tmp_path_factory.mktemp("natstls")
    files = {name: str(directory / name) for name in ("ca.pem", "ca.key")}
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=uxca",
        "-keyout", files["ca.key"], "-out", files["ca.pem"],
    )  # fmt: skip
    for who, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "")):
        key, request, certificate = (
            str(directory / f"{who}.{end}") for end in ("key", "csr", "pem")
        )
        _openssl(
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=ux{who}",
            "-keyout", key, "-out", request,
        )  # fmt: skip
        extra = directory / f"{who}.ext"
        extra.write_text(extension + "\n" if extension else "basicConstraints=CA:FALSE\n")
        _openssl(
            "x509", "-req", "-in", request, "-CA", files["ca.pem"], "-CAkey", files["ca.key"],
            "-CAcreateserial", "-days", "2", "-out", certificate, "-extfile", str(extra),
        )  # fmt: skip
        files[f"{who}.key"], files[f"{who}.pem"] = key, certificate
    return files


@pytest.fixture(scope="module")
def server(certificates: dict[str, str]) -> Iterator[nats_support.NatsServer]:
    config = (
        f'tls {{ cert_file: "{certificates["server.pem"]}", '
        f'key_file: "{certificates["server.key"]}", '
        f'ca_file: "{certificates["ca.pem"]}", verify: true }}'
    )
    with nats_support.NatsServer(config=config) as started:
        yield started


def test_tls_with_client_certificates(
    server: nats_support.NatsServer,
    certificates: dict[str, str],
    names: Names,
    cleanup: Callable[..., None],
) -> None:
    url = server.url(names.posix("tls")[1:])
    options = {
        "ca_file": certificates["ca.pem"],
        "certificate": certificates["client.pem"],
        "private_key": certificates["client.key"],
    }
    listener = unixipc.listen(url, **options)  # type: ignore[arg-type]
    cleanup(listener.close)
    context = ssl.create_default_context(cafile=certificates["ca.pem"])
    context.load_cert_chain(certificates["client.pem"], certificates["client.key"])
    client = unixipc.connect(url, timeout=WAIT, ssl_context=context)
    cleanup(client.close)
    accepted = listener.accept(timeout=WAIT)
    cleanup(accepted.close)
    client.send(b"over TLS", timeout=WAIT)
    assert accepted.receive(timeout=WAIT) == b"over TLS"


def test_tls_refusals(
    server: nats_support.NatsServer, certificates: dict[str, str], names: Names
) -> None:
    url = server.url(names.posix("tls")[1:])
    # Not trusting the server's CA; trusting it but without a client certificate;
    # a name the server's certificate does not carry.
    for options in (
        {},
        {"ca_file": certificates["ca.pem"]},
        {
            "ca_file": certificates["ca.pem"],
            "certificate": certificates["client.pem"],
            "private_key": certificates["client.key"],
            "server_hostname": "elsewhere.example",
        },
    ):
        with pytest.raises(IPCOSError):
            unixipc.connect(url, timeout=WAIT, **options)  # type: ignore[arg-type]


def test_tls_options_are_checked(certificates: dict[str, str]) -> None:
    with pytest.raises(TypeError, match="ca_file"):
        unixipc.connect("nats://127.0.0.1:1/x", ca_file=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="private_key"):
        unixipc.connect("nats://127.0.0.1:1/x", private_key=certificates["client.key"])  # type: ignore[arg-type]
    assert Path(certificates["ca.pem"]).exists()
