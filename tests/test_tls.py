"""The self-signed certificate: made once, reused, replaced when it no longer fits, and served."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import ssl
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from camcap.server import tls
from camcap.server.security import AccessControlMiddleware, AccessPolicy
from camcap.server.threaded import serve_in_thread
from camcap.server.tls import TlsError, default_tls_dir, ensure_self_signed_cert, load_cert_pair

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def read_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def san(path: Path) -> tuple[set[str], set[str]]:
    names = read_cert(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(names.get_values_for_type(x509.DNSName)), {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}


def make_cert(folder: Path, *, days: float = 30, encrypt: bool = False) -> tuple[Path, Path]:
    """A certificate made the ordinary way (not by camcap), valid for `days` from now (negative: expired)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.timezone.utc)
    start, end = sorted([now, now + dt.timedelta(days=days)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - dt.timedelta(days=1))
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "other-cert.pem", folder / "other-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    encryption = serialization.BestAvailableEncryption(b"pw") if encrypt else serialization.NoEncryption()
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return cert_path, key_path


# --- making and reusing -------------------------------------------------------------------------


def test_generates_a_pair_with_the_names(tmp_path: Path) -> None:
    cert, key = ensure_self_signed_cert(tmp_path / "tls", ["MyBox.local", "192.168.1.20", "fe80::1"])
    assert cert == tmp_path / "tls" / "cert.pem" and key == tmp_path / "tls" / "key.pem"
    dns, ips = san(cert)
    assert dns == {"localhost", "mybox.local"}
    assert ips == {"127.0.0.1", "::1", "192.168.1.20", "fe80::1"}
    pair = load_cert_pair(cert, key)
    assert pair.self_signed
    assert pair.not_after - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=390)
    assert pair.fingerprint == read_cert(cert).fingerprint(hashes.SHA256()).hex(":").upper()
    basic = read_cert(cert).extensions.get_extension_for_class(x509.BasicConstraints).value
    assert not basic.ca  # a leaf: Firefox refuses a CA certificate as a server's own


@posix_only
def test_key_is_private(tmp_path: Path) -> None:
    old = os.umask(0)  # even a permissive umask must not open the key up
    try:
        _, key = ensure_self_signed_cert(tmp_path / "tls")
    finally:
        os.umask(old)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    assert not [p for p in (tmp_path / "tls").iterdir() if p.name.endswith(".tmp")]


def test_second_call_reuses_the_same_files(tmp_path: Path) -> None:
    cert, key = ensure_self_signed_cert(tmp_path, ["mybox.local"])
    before = cert.read_bytes(), key.read_bytes()
    again = ensure_self_signed_cert(tmp_path, ["mybox.local"])
    assert again == (cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == before
    # Fewer names than it covers: still reused (a browser exception once accepted keeps working).
    ensure_self_signed_cert(tmp_path, [])
    assert cert.read_bytes() == before[0]


def test_new_names_replace_it(tmp_path: Path) -> None:
    cert, _ = ensure_self_signed_cert(tmp_path, ["192.168.1.20"])
    before = cert.read_bytes()
    ensure_self_signed_cert(tmp_path, ["10.0.0.7"])
    assert cert.read_bytes() != before
    assert "10.0.0.7" in san(cert)[1]


def test_expiring_certificate_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls, "VALIDITY", dt.timedelta(days=3))  # inside RENEW_BEFORE
    cert, _ = ensure_self_signed_cert(tmp_path)
    before = cert.read_bytes()
    monkeypatch.setattr(tls, "VALIDITY", dt.timedelta(days=397))
    ensure_self_signed_cert(tmp_path)
    assert cert.read_bytes() != before
    assert read_cert(cert).not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=390)


@pytest.mark.parametrize("damage", ["corrupt_cert", "foreign_key", "missing_key"])
def test_damaged_pair_is_replaced(tmp_path: Path, damage: str) -> None:
    cert, key = ensure_self_signed_cert(tmp_path)
    before = cert.read_bytes()
    if damage == "corrupt_cert":
        cert.write_bytes(b"not a certificate")
    elif damage == "foreign_key":
        key.write_bytes(make_cert(tmp_path / "other")[1].read_bytes())
    else:
        key.unlink()
    ensure_self_signed_cert(tmp_path)
    assert cert.read_bytes() != before
    load_cert_pair(cert, key)  # a valid pair again


def test_default_folder_is_read_when_called(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_tls_dir() == tmp_path / "xdg" / "camcap" / "tls"
    cert, _ = ensure_self_signed_cert()
    assert cert.parent == tmp_path / "xdg" / "camcap" / "tls"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_tls_dir() == tmp_path / "home" / ".config" / "camcap" / "tls"


def test_unwritable_folder_says_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"  # a file where a folder should be: fails even for root
    blocker.write_text("x")
    with pytest.raises(TlsError, match="--cert and --key"):
        ensure_self_signed_cert(blocker / "tls")


# --- checking a user's pair ---------------------------------------------------------------------


def test_load_cert_pair_accepts_an_ordinary_pair(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    pair = load_cert_pair(cert, key)
    assert pair.cert == cert and pair.names == ()


def test_missing_files_say_which_flag(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    with pytest.raises(TlsError, match=r"does not exist.*--cert"):
        load_cert_pair(tmp_path / "nope.pem", key)
    with pytest.raises(TlsError, match=r"does not exist.*--key"):
        load_cert_pair(cert, tmp_path / "nope.pem")


def test_mismatched_key_is_refused(tmp_path: Path) -> None:
    cert, _ = make_cert(tmp_path / "a")
    _, other_key = make_cert(tmp_path / "b")
    with pytest.raises(TlsError, match="does not belong to the certificate"):
        load_cert_pair(cert, other_key)


def test_swapped_files_are_refused(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    with pytest.raises(TlsError, match="not a PEM certificate"):
        load_cert_pair(key, cert)


def test_encrypted_key_says_how_to_decrypt(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, encrypt=True)
    with pytest.raises(TlsError, match="openssl pkey"):
        load_cert_pair(cert, key)


def test_expired_certificate_is_refused(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, days=-2)
    with pytest.raises(TlsError, match="expired"):
        load_cert_pair(cert, key)


# --- a real HTTPS server ------------------------------------------------------------------------


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"hello over {request.url.scheme}")


@contextlib.contextmanager
def serving_tls(app: object, cert: Path, key: Path) -> Iterator[int]:
    """Run `app` under uvicorn with TLS on 127.0.0.1 (an OS-picked port) in a thread; yields the port."""
    with serve_in_thread(app, lifespan="off", ssl_certfile=str(cert), ssl_keyfile=str(key)) as (_, port):
        yield port


def test_uvicorn_serves_https_verified_against_the_certificate(tmp_path: Path) -> None:
    cert, key = ensure_self_signed_cert(tmp_path / "tls")
    token = "tls-test-token-0123456789"
    app = AccessControlMiddleware(
        Starlette(routes=[Route("/", hello)]), AccessPolicy.for_bind("127.0.0.1", 0, token=token, https=True)
    )
    trusted = ssl.create_default_context(cafile=str(cert))
    # Python 3.13+ verifies strictly by default (RFC 5280 extensions); hold every version to that.
    trusted.verify_flags |= ssl.VERIFY_X509_STRICT
    with serving_tls(app, cert, key) as port:
        for host in ("127.0.0.1", "localhost"):  # the IP name and the DNS name
            response = httpx.get(f"https://{host}:{port}/", params={"token": token}, verify=trusted, timeout=10)
            assert response.status_code == 200
            assert response.text == "hello over https"
            assert "; Secure" in response.headers["set-cookie"]
        # The same server is refused by a client that does not trust this certificate.
        other_cert, _ = make_cert(tmp_path / "other")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(
                f"https://127.0.0.1:{port}/", verify=ssl.create_default_context(cafile=str(other_cert)), timeout=10
            )
