"""`camcap serve`: check the port and the access settings, then run the server with uvicorn.

Everything that can fail fast does so before the model loads (which can take minutes): a busy
port, a bad token, a certificate without its key. Then it prints how to reach the server (the
token's URL, other devices' addresses, the certificate's fingerprint) and opens the browser once
the server accepts connections.
"""

from __future__ import annotations

import argparse
import errno
import functools
import logging
import os
import socket
import sys
import threading
import time
import webbrowser
from typing import TYPE_CHECKING

from pydantic import SecretStr

from camcap.cli._settings import settings_from_args
from camcap.config import Settings
from camcap.errors import CamcapError

if TYPE_CHECKING:  # imported when used: cryptography is not needed by the other commands
    from camcap.server.tls import CertPair


def serve_command(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    # Before the model loads (which can take minutes): a busy port should fail at once.
    _check_port_free(settings.host, settings.port)
    import uvicorn

    from camcap.server.app import create_app, uvicorn_options
    from camcap.server.serving import (
        ACCEPT_OUT_OF_RESOURCES,
        CamcapServer,
        ClosedListenerRetryFilter,
        RepeatedLogFilter,
        raise_descriptor_limit,
    )
    from camcap.server.tokens import check_bind_safety, url_with_token

    given = settings.token.get_secret_value() if settings.token is not None else None
    # Without a token, one is made here and shown in the URL below: on loopback too, unless --no-token
    # (which only loopback heeds: beyond it a token is always required).
    token = check_bind_safety(settings.host, given, loopback=settings.loopback_token)
    if token is not None and token != given:
        settings = settings.model_copy(update={"token": SecretStr(token)})
    pair = _tls_pair(settings)
    app = create_app(settings)
    scheme = "https" if pair is not None else "http"
    url = url_with_token(f"{scheme}://{_browser_host(settings.host)}:{settings.port}/", token)
    if settings.open_browser and settings.port:  # port 0: the OS picks one, known only to uvicorn
        threading.Thread(target=_open_when_listening, args=(settings.host, settings.port, url), daemon=True).start()
    _print_access(settings, token, generated=token is not None and token != given, pair=pair)
    print(f"camcap: serving {settings.model} at {url} (Ctrl+C to stop)", file=sys.stderr)
    # Before uvicorn reads the limit (uvicorn_options): a 1024-descriptor default is easy to exhaust.
    raise_descriptor_limit()
    logging.getLogger("asyncio").addFilter(RepeatedLogFilter(ACCEPT_OUT_OF_RESOURCES))
    logging.getLogger("asyncio").addFilter(ClosedListenerRetryFilter())
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="debug" if args.verbose > 1 else "info",
        ssl_certfile=None if pair is None else str(pair.cert),
        ssl_keyfile=None if pair is None else str(pair.key),
        **uvicorn_options(settings),
    )
    server = CamcapServer(config, closing=app.state.closing)
    server.run()
    if server.interrupted:
        raise KeyboardInterrupt  # after a clean stop: the CLI says "interrupted" and exits 130
    if not server.started:
        raise CamcapError("the server did not start; the log above says why.")
    return 0


def _tls_pair(settings: Settings) -> CertPair | None:
    """The checked certificate to serve HTTPS with (self-signed unless --cert/--key), or None."""
    from camcap.server import tls
    from camcap.server.addresses import served_names

    if not settings.serves_https():
        if settings.cert is not None or settings.key is not None:
            raise CamcapError("--cert and --key are for HTTPS; leave out --no-https (or CAMCAP_HTTPS=false).")
        return None
    if (settings.cert is None) != (settings.key is None):
        raise CamcapError("--cert and --key go together: pass both, or neither for a self-signed certificate.")
    if settings.cert is not None and settings.key is not None:
        return tls.load_cert_pair(settings.cert, settings.key)
    cert, key = tls.ensure_self_signed_cert(hostnames=served_names(settings.host))
    return tls.load_cert_pair(cert, key)


def _print_access(settings: Settings, token: str | None, *, generated: bool, pair: CertPair | None) -> None:
    """Say how to reach the server: the token it needs, other devices' URLs, the certificate."""
    from camcap.server.addresses import is_loopback_host, is_wildcard_host, local_addresses
    from camcap.server.tokens import url_with_token

    say = functools.partial(print, file=sys.stderr)
    if generated and is_loopback_host(settings.host):
        say("camcap: a new access token keeps other processes and users of this machine out (--no-token: none).")
        say("camcap: the browser opens the URL below, which carries it; set CAMCAP_TOKEN to keep one across restarts.")
    elif generated:
        say("camcap: other devices can reach this server, so it needs an access token; a new one was made.")
        say("camcap: open the URL below (it carries the token); set CAMCAP_TOKEN to keep one across restarts.")
    if not is_loopback_host(settings.host):
        scheme = "https" if pair is not None else "http"
        hosts = local_addresses() if is_wildcard_host(settings.host) else [settings.host]
        for host in hosts:
            shown = f"[{host}]" if ":" in host else host
            say(f"camcap: from another device: {url_with_token(f'{scheme}://{shown}:{settings.port}/', token)}")
        if pair is None:
            say(
                "camcap: warning: plain HTTP beyond this machine: anyone on the network path can read frames, "
                "captions and the token, and browsers on other devices will not open their camera. Drop --no-https."
            )
    if pair is not None:
        kind = "self-signed (browsers warn once; accept it if the fingerprint matches)" if pair.self_signed else ""
        say(f"camcap: HTTPS certificate {pair.cert} {kind}".rstrip())
        say(f"camcap:   SHA-256 fingerprint {pair.fingerprint}")


def _check_port_free(host: str, port: int) -> None:
    """Fail with a clear message if uvicorn could not bind (host, port)."""
    if port == 0:
        return  # the OS picks a free port
    # The same socket uvicorn binds (Config.bind_socket), so the answer is the one it would get.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        if os.name != "nt":
            # Like uvicorn: a port whose last connection is in TIME_WAIT is free to reuse. (On
            # Windows this option would let us bind a port another process listens on.)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except socket.gaierror as exc:
            raise CamcapError(
                f"cannot listen on host {host!r} ({exc.strerror}); use --host 127.0.0.1 (this machine only) "
                "or --host 0.0.0.0 (every network interface)."
            ) from None
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                raise CamcapError(
                    f"port {port} is already in use; try --port {port + 1} or stop the other process."
                ) from None
            if exc.errno == errno.EACCES:
                raise CamcapError(
                    f"not allowed to listen on port {port} (ports below 1024 need administrator rights); "
                    "try --port 8000."
                ) from None
            raise CamcapError(
                f"cannot listen on {host}:{port} ({exc.strerror}); use an address of this machine, such as "
                "--host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every network interface)."
            ) from None


def _browser_host(host: str) -> str:
    # A wildcard address is not somewhere a browser can go; the camera also needs a secure
    # context, which http://127.0.0.1 is and a LAN address is not.
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _open_when_listening(host: str, port: int, url: str) -> None:
    """Open the page once the server accepts connections (the model may take minutes to load)."""
    target = _browser_host(host).strip("[]")
    while True:
        try:
            with socket.create_connection((target, port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    webbrowser.open(url)
