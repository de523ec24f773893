"""Access tokens: when a server needs one, making and checking one, comparing one, and the URL that carries it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camcap.errors import AccessConfigError
from camcap.server.tokens import MIN_TOKEN_CHARS, check_bind_safety, generate_token, tokens_match, url_with_token
from tests.test_security import TOKEN

# --- the bind decision --------------------------------------------------------------------------


def test_loopback_bind_needs_no_token() -> None:
    assert check_bind_safety("127.0.0.1", None) is None
    assert check_bind_safety("localhost", None, generate=False) is None


def test_wide_bind_generates_a_fresh_token() -> None:
    first, second = check_bind_safety("0.0.0.0", None), check_bind_safety("192.168.1.20", "")
    assert first and second and first != second
    assert len(first) >= MIN_TOKEN_CHARS


def test_wide_bind_without_generation_says_what_to_do() -> None:
    with pytest.raises(AccessConfigError, match="--token"):
        check_bind_safety("0.0.0.0", None, generate=False)


def test_a_given_token_is_kept_wherever_the_server_listens() -> None:
    assert check_bind_safety("127.0.0.1", TOKEN) == TOKEN
    assert check_bind_safety("0.0.0.0", TOKEN, generate=False) == TOKEN


@pytest.mark.parametrize("token", ["short", "has spaces in it, sixteen+", "semi;colon;is;not;ok;here"])
def test_weak_or_unquotable_tokens_are_refused(token: str) -> None:
    with pytest.raises(AccessConfigError, match=r"secrets\.token_urlsafe"):
        check_bind_safety("0.0.0.0", token)


def test_generated_tokens_are_valid_and_unique() -> None:
    tokens = {generate_token() for _ in range(20)}
    assert len(tokens) == 20
    assert all(check_bind_safety("0.0.0.0", token) == token for token in tokens)


def test_url_with_token() -> None:
    assert url_with_token("http://192.168.1.20:8000/", "abc") == "http://192.168.1.20:8000/?token=abc"
    assert url_with_token("http://h:1/?x=1", "abc") == "http://h:1/?x=1&token=abc"
    assert url_with_token("http://127.0.0.1:8000/", None) == "http://127.0.0.1:8000/"


# --- comparison ---------------------------------------------------------------------------------


@given(st.text(max_size=80))
def test_token_comparison_accepts_only_the_exact_token(supplied: str) -> None:
    assert tokens_match(supplied, TOKEN) is (supplied == TOKEN)
    assert tokens_match(TOKEN, TOKEN)
    assert not tokens_match(None, TOKEN)
