"""Host names, addresses and web origins: which names reach this server, and one spelling of each.

The access rules (security.py) compare a request's Host and Origin with the names this server is
reached by; the self-signed certificate (tls.py, through `camcap serve`) lists the same names. Both
need this machine's names and addresses (`served_names`), and both must compare names in one
canonical form (`normalize_host`, `normalize_origin`), or "LOCALHOST." and "localhost" would differ.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from camcap.errors import AccessConfigError

#: The names only this machine reaches; always served, and the allowed Hosts of a loopback server.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_DEFAULT_PORTS = {"http": 80, "https": 443}


# --- names and addresses ------------------------------------------------------------------------


def is_loopback_host(host: str) -> bool:
    """True for names that only this machine can reach: `localhost`, 127.0.0.0/8 and ::1.

    Accepts bracketed IPv6 (`[::1]`) and IPv4-mapped addresses. An empty host, `0.0.0.0` and `::`
    mean "every interface" and are not loopback.
    """
    name = _bare_host(host)
    if name == "localhost":
        return True
    ip = ip_or_none(name)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def is_wildcard_host(host: str) -> bool:
    """True for bind addresses that mean every interface (`0.0.0.0`, `::`, or empty)."""
    name = _bare_host(host)
    ip = ip_or_none(name)
    return name == "" or (ip is not None and ip.is_unspecified)


def local_hostnames() -> list[str]:
    """This machine's own names: its hostname, the short form, and `<short>.local` (mDNS).

    Only `gethostname()` is consulted: a reverse DNS lookup (`getfqdn`) can hang for seconds on a
    network without DNS, and this runs at startup.
    """
    full = socket.gethostname().strip().rstrip(".").lower()
    if not full:
        return []
    short = full.split(".")[0]
    return list(dict.fromkeys([full, short, f"{short}.local"]))


def local_addresses() -> list[str]:
    """This machine's primary LAN addresses (IPv4 and IPv6), found without sending anything.

    Connecting a UDP socket only asks the kernel which local address routes to a destination; no
    packet leaves. A machine without a default route has none, and that is fine: IP literals are
    always accepted as Host (see `AccessPolicy.host_allowed`).
    """
    found: list[str] = []
    # Documentation-only addresses (RFC 5737, RFC 3849): routed like the internet, never reached.
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                address = str(sock.getsockname()[0]).split("%")[0]
        except OSError:
            continue
        ip = ip_or_none(address)
        if ip is not None and not (ip.is_loopback or ip.is_unspecified or ip.is_link_local):
            found.append(str(ip))
    return found


def served_names(host: str) -> list[str]:
    """The names and addresses a server bound to `host` is reached by, loopback names first.

    Used for the Host allow-list and for a self-signed certificate's names. Looks up this
    machine's names only when bound beyond loopback.
    """
    names = list(LOOPBACK_NAMES)
    if is_loopback_host(host):
        return names
    if not is_wildcard_host(host):
        names.append(_bare_host(host))
    names += local_hostnames()
    if is_wildcard_host(host):
        names += local_addresses()
    return list(dict.fromkeys(names))


# --- parsing and canonical forms ----------------------------------------------------------------


def _bare_host(host: str) -> str:
    """Lower-case, without IPv6 brackets or a trailing dot ("LOCALHOST." is localhost)."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name.rstrip(".")


def ip_or_none(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address `name` spells, or None for a host name."""
    try:
        return ipaddress.ip_address(name.split("%")[0])  # drop an IPv6 zone ("fe80::1%eth0")
    except ValueError:
        return None


def host_from_header(value: str) -> str | None:
    """The host name in a Host header (`name`, `name:port`, `[v6]:port`), or None if malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1 :]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return _bare_host(value[: end + 1])
    if ip_or_none(value) is not None:  # a bare IPv6 address, leniently
        return _bare_host(value)
    name, colon, port = value.rpartition(":")
    if not colon:
        name = value
    elif not port.isdigit():
        return None
    name = _bare_host(name)
    return name if name and not any(c in name for c in "/\\@ ") else None


def normalize_host(value: str) -> str:
    """A host name the user gave (`--allow-host`) in canonical form; raise `AccessConfigError` if it is not one."""
    name = host_from_header(value)
    if name is None or "://" in value:
        raise AccessConfigError(
            f"{value!r} is not a host name; give a bare name or address such as camcap.example.com or 192.168.1.20."
        )
    return name


def format_origin(scheme: str, host: str, port: int | None) -> str:
    """`scheme://host[:port]` for these parts: IPv6 bracketed, the scheme's default port left out."""
    name = _bare_host(host)
    shown = f"[{name}]" if ":" in name else name
    return f"{scheme}://{shown}" if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{scheme}://{shown}:{port}"


def normalize_origin(value: str) -> str:
    """`scheme://host[:port]` in canonical form (lower case, default port dropped)."""
    problem = f"{value[:100]!r} is not a web origin; expected scheme://host[:port], e.g. https://example.com:8443."
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        raise AccessConfigError(problem) from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        raise AccessConfigError(problem)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise AccessConfigError(problem)
    return format_origin(parts.scheme, parts.hostname, port)
