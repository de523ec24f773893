"""Which names reach this server, and one spelling of each: loopback, wildcard and served names,
Host headers, and the hosts and origins a user allows."""

from __future__ import annotations

import pytest

from camcap.errors import AccessConfigError
from camcap.server.addresses import (
    format_origin,
    host_from_header,
    is_loopback_host,
    is_wildcard_host,
    normalize_host,
    normalize_origin,
    served_names,
)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST.", " localhost ", "::ffff:127.0.0.1"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "", "192.168.1.20", "10.0.0.1", "example.com", "localhost.example.com", "128.0.0.1"]
)
def test_non_loopback_hosts(host: str) -> None:
    assert not is_loopback_host(host)


def test_wildcard_hosts() -> None:
    assert is_wildcard_host("0.0.0.0") and is_wildcard_host("::") and is_wildcard_host("")
    assert not is_wildcard_host("127.0.0.1") and not is_wildcard_host("192.168.1.20")


def test_served_names_look_up_the_machine_only_beyond_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "MyBox.lan")
    assert served_names("127.0.0.1") == ["localhost", "127.0.0.1", "::1"]
    wide = served_names("192.168.1.20")
    assert {"192.168.1.20", "mybox.lan", "mybox", "mybox.local"} <= set(wide)


# --- one spelling of each name --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("camcap.example.com", "camcap.example.com"),
        ("CamCap.Example.COM.:8443", "camcap.example.com"),
        ("192.168.1.20:8000", "192.168.1.20"),
        ("[::1]:8000", "::1"),
        ("[FE80::1]", "fe80::1"),
        ("::1", "::1"),  # a bare IPv6 address, though a Host header should bracket it
    ],
)
def test_a_host_header_gives_its_name_in_one_spelling(header: str, host: str) -> None:
    assert host_from_header(header) == host


@pytest.mark.parametrize(
    "header", ["", "example.com:http", "[::1", "[::1]8000", "[::1]:x", "user@example.com", "a b", "evil.com/x"]
)
def test_a_malformed_host_header_has_no_name(header: str) -> None:
    assert host_from_header(header) is None


def test_a_host_the_user_gives_is_checked_and_normalised() -> None:
    assert normalize_host(" Camera-Box.LAN ") == "camera-box.lan"
    for bad in ("https://camera-box.lan", "camera box", ""):
        with pytest.raises(AccessConfigError, match="is not a host name"):
            normalize_host(bad)


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://Example.com", "https://example.com"),
        ("https://example.com:443/", "https://example.com"),  # the default port and an empty path go
        ("http://example.com:8080", "http://example.com:8080"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_an_origin_has_one_spelling(given: str, origin: str) -> None:
    assert normalize_origin(given) == origin


@pytest.mark.parametrize(
    "given",
    ["example.com", "ftp://example.com", "https://example.com/app", "https://example.com?x=1", "https://u@example.com",
     "https://example.com:99999", "https://"],
)  # fmt: skip
def test_what_is_not_an_origin_is_refused_with_an_example(given: str) -> None:
    with pytest.raises(AccessConfigError, match=r"expected scheme://host\[:port\], e.g. https://example.com:8443"):
        normalize_origin(given)


def test_an_origin_is_written_as_browsers_send_it() -> None:
    assert format_origin("https", "example.com", 443) == "https://example.com"
    assert format_origin("https", "::1", 8443) == "https://[::1]:8443"
    assert format_origin("http", "LOCALHOST.", None) == "http://localhost"
