"""HTTPS for reaching camcap from other devices: a self-signed certificate, made once and reused.

Browsers only open the camera (`getUserMedia`) on a secure origin: `http://localhost` counts,
`http://192.168.1.20:8000` does not. So a phone or laptop on the LAN needs HTTPS. camcap makes a
self-signed certificate for this machine's names and addresses, keeps it in the user's config
folder, and reuses it, so the browser's "not trusted" exception, once accepted, keeps working.
Users with a real certificate pass it instead; `load_cert_pair` checks it before the server starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from camcap.errors import CamcapError

logger = logging.getLogger(__name__)

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
#: Under the 398 days browsers accept for server certificates (Safari refuses longer ones even
#: when the user trusts them by hand).
VALIDITY = dt.timedelta(days=397)
#: Replace a certificate this close to expiry rather than let it lapse mid-session.
RENEW_BEFORE = dt.timedelta(days=14)
_ALWAYS = ("localhost", "127.0.0.1", "::1")


class TlsError(CamcapError):
    """A certificate or key cannot be used for HTTPS."""


@dataclass(frozen=True)
class CertPair:
    """A checked certificate and its key, with what a user may want to see at startup."""

    cert: Path
    key: Path
    #: The DNS names and IP addresses the certificate is valid for.
    names: tuple[str, ...]
    not_after: dt.datetime
    #: SHA-256 of the certificate, "AB:CD:...": compare it with the one the browser's warning shows.
    fingerprint: str
    self_signed: bool


def default_tls_dir() -> Path:
    """`$XDG_CONFIG_HOME/camcap/tls`, else `~/.config/camcap/tls`; read when called, never at import."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "camcap" / "tls"


def ensure_self_signed_cert(folder: Path | None = None, hostnames: Sequence[str] = ()) -> tuple[Path, Path]:
    """Return `(cert, key)` paths of a self-signed certificate covering `hostnames`.

    `folder` defaults to `default_tls_dir()`. Always covers localhost, 127.0.0.1 and ::1; entries
    of `hostnames` that parse as IP addresses become IP names, the rest DNS names. The pair in the
    folder is reused unless it is missing, unreadable, mismatched, expires within `RENEW_BEFORE`,
    or lacks one of the wanted names; then a new one replaces it. The key file is mode 0600.
    """
    folder = folder if folder is not None else default_tls_dir()
    wanted = _names(hostnames)
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    reason = _why_replace(cert_path, key_path, wanted)
    if reason is None:
        return cert_path, key_path
    logger.info("Making a self-signed TLS certificate in %s (%s)", folder, reason)
    cert_pem, key_pem = _self_signed(wanted)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The key first: a crash between the two writes leaves a mismatched pair, which the next
        # start detects and replaces, never a certificate whose key is missing.
        _write_atomically(key_path, key_pem, mode=0o600)
        _write_atomically(cert_path, cert_pem, mode=0o644)
    except OSError as exc:
        raise TlsError(
            f"Cannot write the TLS certificate to {folder}: {exc.strerror or exc}. Make the folder writable, "
            "or pass your own certificate with --cert and --key."
        ) from exc
    return cert_path, key_path


def load_cert_pair(cert: Path, key: Path) -> CertPair:
    """Check that `cert` and `key` are PEM files that belong together and are valid now.

    Raises `TlsError` saying what is wrong and what to do. A certificate file may hold a whole
    chain (e.g. Let's Encrypt's fullchain.pem): the first certificate is the server's.
    """
    certificate = _read_cert(Path(cert))
    private_key = _read_key(Path(key))
    if _public_bytes(certificate.public_key()) != _public_bytes(private_key.public_key()):
        raise TlsError(
            f"The key {key} does not belong to the certificate {cert} (their public keys differ). "
            "Pass the key that was made together with this certificate."
        )
    now = dt.datetime.now(dt.timezone.utc)
    if certificate.not_valid_after_utc <= now:
        raise TlsError(
            f"The certificate {cert} expired on {certificate.not_valid_after_utc:%Y-%m-%d}; browsers will refuse it. "
            "Renew it, or leave --cert and --key out to use a self-signed one camcap makes."
        )
    if certificate.not_valid_before_utc > now:
        raise TlsError(
            f"The certificate {cert} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; "
            "check this machine's clock."
        )
    return CertPair(
        cert=Path(cert),
        key=Path(key),
        names=_cert_names(certificate),
        not_after=certificate.not_valid_after_utc,
        fingerprint=certificate.fingerprint(hashes.SHA256()).hex(":").upper(),
        self_signed=certificate.issuer == certificate.subject,
    )


# --- internals ----------------------------------------------------------------------------------


def _names(hostnames: Sequence[str]) -> list[str]:
    """The wanted names, normalized (lower case, IPs in canonical form), loopback first."""
    names: list[str] = []
    for name in (*_ALWAYS, *hostnames):
        bare = name.strip().strip("[]").rstrip(".").lower()
        with contextlib.suppress(ValueError):  # not an address: a DNS name
            bare = str(ipaddress.ip_address(bare))
        if bare:
            names.append(bare)
    return list(dict.fromkeys(names))


def _why_replace(cert_path: Path, key_path: Path, wanted: Sequence[str]) -> str | None:
    """Why the pair on disk cannot be reused, or None if it can."""
    if not cert_path.is_file() or not key_path.is_file():
        return "none yet"
    try:
        pair = load_cert_pair(cert_path, key_path)
    except TlsError as exc:
        return f"the old one is unusable: {exc}"
    if pair.not_after - dt.datetime.now(dt.timezone.utc) < RENEW_BEFORE:
        return f"the old one expires on {pair.not_after:%Y-%m-%d}"
    missing = [name for name in wanted if name not in pair.names]
    if missing:
        return f"the old one does not cover {', '.join(missing)}"
    return None


def _self_signed(names: Sequence[str]) -> tuple[bytes, bytes]:
    # P-256: every browser accepts it, and it is made in milliseconds (RSA-2048 takes ~100x longer).
    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname() or "localhost"
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "camcap (self-signed)"),
            x509.NameAttribute(NameOID.COMMON_NAME, host[:64]),
        ]
    )
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    # An hour of slack for clocks that disagree a little (a phone vs this machine).
    now = dt.datetime.now(dt.timezone.utc)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        # A leaf, not a CA: Firefox refuses a CA certificate used as a server's own certificate.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write via a temporary file and rename, so readers never see half a file.

    The temporary file is created with `mode` already set: a key is never readable by others, not
    even for a moment.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # O_NOFOLLOW: a link planted at the temporary name must not redirect the key elsewhere.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(tmp, mode)  # O_CREAT's mode is masked by the umask, and ignored if tmp existed
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_cert(path: Path) -> x509.Certificate:
    data = _read(path, "certificate", "--cert")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise TlsError(
            f"{path} is not a PEM certificate (it should start with -----BEGIN CERTIFICATE-----). "
            "Pass the certificate file with --cert, or leave --cert and --key out to use a self-signed one."
        ) from None


def _read_key(path: Path) -> PrivateKeyTypes:
    data = _read(path, "private key", "--key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's signal for "encrypted, and no password given"
        raise TlsError(
            f"The private key {path} is protected by a password. camcap needs an unencrypted key: "
            f"openssl pkey -in {path} -out key-plain.pem, then pass --key key-plain.pem (keep it private)."
        ) from None
    except ValueError:
        raise TlsError(
            f"{path} is not a PEM private key (it should start with -----BEGIN ... PRIVATE KEY-----). "
            "Pass the key file with --key."
        ) from None


def _read(path: Path, what: str, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsError(
            f"The TLS {what} file {path} does not exist. Pass the right path with {flag}, or leave --cert and "
            "--key out to use a self-signed certificate camcap makes for you."
        ) from None
    except OSError as exc:
        raise TlsError(f"Cannot read the TLS {what} file {path}: {exc.strerror or exc}.") from None


def _public_bytes(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _cert_names(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return tuple(name.lower() for name in [*dns, *ips])
