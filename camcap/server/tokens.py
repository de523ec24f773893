"""Access tokens: making one, checking one, comparing one, and deciding when a server needs one.

A token is the secret that lets a client beyond loopback use the server (security.py checks it on
every request). `check_bind_safety` decides when a token is required: listening beyond loopback
without one generates one, which `camcap serve` prints in the URL from `url_with_token`.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from camcap.errors import AccessConfigError
from camcap.server.addresses import is_loopback_host

TOKEN_QUERY = "token"
#: 16 URL-safe characters are ~96 bits: far beyond guessing over a network. Generated tokens are 43.
MIN_TOKEN_CHARS = 16
# Characters that survive a URL query, a cookie and a shell command line without quoting.
_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]+")


def generate_token() -> str:
    """A fresh random access token (32 bytes from `secrets`, URL-safe base64: 43 characters)."""
    return secrets.token_urlsafe(32)


def validate_token(token: str) -> str:
    """Return `token` if it is long and plain enough to use; raise `AccessConfigError` if not."""
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN_PATTERN.fullmatch(token):
        raise AccessConfigError(
            f"The access token must be at least {MIN_TOKEN_CHARS} characters of A-Z, a-z, 0-9, '-', '_', "
            f"'.' or '~' (got {len(token)} characters). Leave --token out and camcap generates one, or make "
            'one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return token


def tokens_match(supplied: str | None, expected: str) -> bool:
    """Compare a client's token with the server's in constant time.

    Both sides are encoded to bytes first: `compare_digest` refuses non-ASCII `str`, and a client
    can send anything.
    """
    if supplied is None:
        return False
    return secrets.compare_digest(supplied.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def check_bind_safety(host: str, token: str | None, *, generate: bool = True, loopback: bool = False) -> str | None:
    """Decide the access token for a server bound to `host`; returns the token to require, or None.

    The decision:
    - A token the user gave is always required (after `validate_token`), wherever the server listens.
    - On loopback without a token, one is generated only with `loopback=True` (what `camcap serve`
      does by default: other processes and accounts on the machine can reach loopback too);
      otherwise none is required, and the Host/Origin checks still keep web pages out.
    - Beyond loopback without a token, one is generated (print it in the URL `camcap serve` shows),
      because anyone on the network could otherwise watch the captions and drive the model.
      With `generate=False` that is an error instead, for callers that cannot show the token.
    """
    if token:
        return validate_token(token)
    if is_loopback_host(host):
        return generate_token() if loopback and generate else None
    if generate:
        return generate_token()
    raise AccessConfigError(
        f"Listening on {host!r} lets other machines on the network connect, so camcap needs an access token. "
        "Pass --token <secret> (or set CAMCAP_TOKEN), or listen on 127.0.0.1 only."
    )


def url_with_token(url: str, token: str | None) -> str:
    """`url` with `?token=<token>` added (unchanged without a token): the URL to print and open."""
    if not token:
        return url
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), (TOKEN_QUERY, token)]
    return urlunsplit(parts._replace(query=urlencode(query)))
