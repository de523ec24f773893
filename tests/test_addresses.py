"""Which names reach this server, and one spelling of each: loopback, wildcard and served names."""

from __future__ import annotations

import pytest

from camcap.server.addresses import is_loopback_host, is_wildcard_host, served_names


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
