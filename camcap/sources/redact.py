"""Credentials never leave a source: `user:pass@` and secret-looking query values are redacted.

FFmpeg puts the URL it was given, password included, into its error messages; every text about a
source (log lines, events, metrics labels, errors, the page) passes through `redact_text` with the
source's URL, which removes the exact secrets as well as anything shaped like one.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters whose values are secrets (matched anywhere in the name, case-insensitively):
# token, access_token, apikey, api_key, key, password, passwd, pwd, secret, auth, signature, sig,
# credential, session.
_SECRET_NAMES = re.compile(r"token|key|pass|pwd|secret|auth|sig|cred|session", re.IGNORECASE)
# userinfo in any URL inside a text: scheme://user[:pass]@host
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@")


def redact_url(url: str) -> str:
    """`url` with its user and password, and secret query values, replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(rf"\g<scheme>{MASK}@", url)
    if not parts.scheme or not parts.netloc:
        return url  # a device or a file path: nothing secret in it
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(name, MASK if _SECRET_NAMES.search(name) else value) for name, value in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(url: str) -> list[str]:
    """The secret strings of `url` (user, password, secret query values), as written and decoded."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    if parts.username:
        found.append(parts.username)
    if parts.password:
        found.append(parts.password)
    found += [value for name, value in parse_qsl(parts.query) if _SECRET_NAMES.search(name) and value]
    variants = {variant for secret in found for variant in (secret, unquote(secret), quote(secret, safe=""))}
    # Longest first, so a secret that contains another is removed whole.
    return sorted((variant for variant in variants if len(variant) >= 3), key=len, reverse=True)


def redact_text(text: str, url: str | None = None) -> str:
    """`text` with `url` (and any URL's userinfo) redacted, and `url`'s secrets removed wherever
    they appear on their own."""
    if url:
        text = text.replace(url, redact_url(url))
        for secret in secrets_of(url):
            text = text.replace(secret, MASK)
    return _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
