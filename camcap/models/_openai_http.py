"""The HTTP side of the `openai:` backend: one client, its retries, and errors that say what to do.

Built on httpx (and httpx-sse for the event stream) rather than the official `openai` package,
because camcap must control exactly what leaves the machine: the `openai` client reads
OPENAI_API_KEY, OPENAI_ORG_ID and OPENAI_PROJECT_ID from the environment when it is not given
them (a user's OpenAI key would reach whatever server `openai:` names) and adds `X-Stainless-*`
headers describing the OS, CPU and Python to every request. Its retries also stop where the
response begins, and a live stream needs one more rule: a stream that drops before its first token
is retried, one that drops after is reported (its tokens are already on the page). See docs/openai.md.

Retried, with exponential backoff (or the server's `Retry-After`, capped): 429, 5xx, connections
refused or dropped before the first token. Not retried: timeouts (a slow server only gets slower
with more requests; the stream's next frame asks again anyway), 400, 401/403 and 404.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse

from camcap import __version__
from camcap.errors import RemoteModelError

logger = logging.getLogger(__name__)

#: Retries after the first try, for 429, 5xx and connections that fail before the first token.
MAX_RETRIES = 2
#: The first backoff; each retry doubles it (plus up to 25 % jitter so streams do not retry in step).
BACKOFF_S = 0.5
#: A server's `Retry-After` is honoured up to this: a live frame is worthless after longer.
MAX_RETRY_AFTER_S = 10.0
_ERROR_TEXT_CHARS = 300


@dataclass(frozen=True)
class StreamEnd:
    """The end of one streamed completion."""

    finish_reason: str | None
    completion_tokens: int | None  # the server's own count (`usage`), when it sends one


class _Retryable(Exception):
    """A failure worth another try; `error` is what the caller sees if no try is left."""

    def __init__(self, error: RemoteModelError, retry_after_s: float | None = None) -> None:
        super().__init__(str(error))
        self.error, self.retry_after_s = error, retry_after_s


class OpenAIHTTP:
    """A thread-safe client for one OpenAI-compatible server (`base_url` ends in `/v1`, usually).

    `api_key` is sent as `Authorization: Bearer` and nowhere else; errors never quote it.
    """

    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float, max_connections: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.has_key = bool(api_key)
        headers = {"User-Agent": f"camcap/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            headers=headers,
            # connect: a server that is down should fail fast; read: the longest pause between two
            # pieces of an answer (the first token of a busy server included).
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    # --- GET /models ---------------------------------------------------------------------------

    def list_models(self) -> list[str]:
        """The ids the server lists at `GET /models`. Raises `RemoteModelError` naming the fix."""
        url = f"{self.base_url}/models"
        try:
            response = self._client.get(url)
        except httpx.HTTPError as exc:
            raise RemoteModelError(self._unreachable(exc)) from None
        if response.status_code != 200:
            error = self._status_error(response, what="list its models")
            raise error.error if isinstance(error, _Retryable) else error
        try:
            data = response.json()["data"]
            return [str(model["id"]) for model in data]
        except (ValueError, KeyError, TypeError):
            raise RemoteModelError(
                f"{url} answered, but not with an OpenAI model list ({_snippet(response.text)!r}). "
                f"Is {self.base_url} an OpenAI-compatible API? Its base URL usually ends in /v1."
            ) from None

    # --- POST /chat/completions, streamed ----------------------------------------------------------

    def stream_chat(self, body: dict[str, Any]) -> Iterator[str | StreamEnd]:
        """Text deltas as the server streams them, then one `StreamEnd`. Retries per the module
        docstring; raises `RemoteModelError`. Closing the iterator closes the connection, which
        OpenAI-compatible servers take as "stop generating"."""
        attempt = 0
        while True:
            began = False
            try:
                for item in self._stream_once(body):
                    began = began or isinstance(item, str)
                    yield item
                return
            except _Retryable as exc:
                if attempt >= MAX_RETRIES:
                    raise RemoteModelError(f"{exc.error}. Gave up after {attempt + 1} tries.") from None
                wait = exc.retry_after_s if exc.retry_after_s is not None else _backoff(attempt)
                logger.info("Retrying in %.1f s: %s", wait, exc.error)
            except httpx.TimeoutException:
                raise RemoteModelError(
                    f"The server at {self.base_url} did not answer within {self.timeout_s:g} s "
                    "(CAMCAP_OPENAI_TIMEOUT_S). It may be overloaded; lower --max-inflight, or raise the timeout."
                ) from None
            except httpx.TransportError as exc:
                if began:
                    raise RemoteModelError(
                        f"The connection to {self.base_url} dropped in the middle of the answer ({_reason(exc)}); "
                        "this frame has no caption, the next frame tries again."
                    ) from None
                if attempt >= MAX_RETRIES:
                    raise RemoteModelError(f"{self._unreachable(exc)} Gave up after {attempt + 1} tries.") from None
                wait = _backoff(attempt)
                logger.info("Retrying in %.1f s: %s", wait, _reason(exc))
            attempt += 1
            time.sleep(wait)

    def _stream_once(self, body: dict[str, Any]) -> Iterator[str | StreamEnd]:
        url = f"{self.base_url}/chat/completions"
        with connect_sse(self._client, "POST", url, json=body) as source:
            response = source.response
            if response.status_code != 200:
                response.read()
                raise self._status_error(response, what="caption the frame")
            if "text/event-stream" not in response.headers.get("content-type", ""):
                # A server that ignores `stream: true` answers with the whole completion at once.
                response.read()
                yield from _whole_completion(response, url)
                return
            finish: str | None = None
            tokens: int | None = None
            done = False
            try:
                for event in source.iter_sse():
                    if event.data.strip() == "[DONE]":
                        done = True
                        break
                    chunk = _json_object(event.data, url)
                    if isinstance(chunk.get("error"), dict | str):
                        # vLLM and others report a failure after the 200 as an event of its own.
                        raise RemoteModelError(f"The server failed mid-answer: {_error_message(chunk)}")
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield text
                        finish = choice.get("finish_reason") or finish
                    usage = chunk.get("usage")
                    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                        tokens = usage["completion_tokens"]
            except SSEError as exc:
                raise RemoteModelError(f"{url} sent a broken event stream: {exc}") from None
            if not done:
                # OpenAI-compatible servers end every stream with [DONE]; without it the answer was cut.
                raise httpx.RemoteProtocolError("the event stream ended before data: [DONE]")
            yield StreamEnd(finish, tokens)

    # --- errors --------------------------------------------------------------------------------

    def _status_error(self, response: httpx.Response, *, what: str) -> RemoteModelError | _Retryable:
        """The error for a non-200 answer: `_Retryable` for 429 and 5xx, else the final error."""
        status = response.status_code
        said = _error_message_of(response)
        where = f"{self.base_url} (HTTP {status})"
        if status in (401, 403):
            fix = (
                "Set CAMCAP_OPENAI_API_KEY to a key it accepts"
                if self.has_key
                else "It needs an API key: set CAMCAP_OPENAI_API_KEY (read from the environment only)"
            )
            return RemoteModelError(f"The server refused camcap's API key, {where}: {said}. {fix}.")
        if status == 404:
            return RemoteModelError(
                f"Not found at {where}: {said}. Check the URL (the base URL usually ends in /v1, e.g. "
                "openai:http://127.0.0.1:8000/v1#<model>) and the model name after '#'."
            )
        if status == 429:
            return _Retryable(RemoteModelError(f"The server is busy, {where}: {said}"), _retry_after(response))
        if status >= 500:
            return _Retryable(RemoteModelError(f"The server failed, {where}: {said}"), _retry_after(response))
        return RemoteModelError(
            f"The server would not {what}, {where}: {said}. A text-only model refuses images: serve a "
            "vision-language model (docs/openai.md lists some)."
        )

    def _unreachable(self, exc: httpx.HTTPError) -> str:
        return (
            f"Cannot reach an OpenAI-compatible server at {self.base_url} ({_reason(exc)}). Is it running? "
            "Check the address and port in the openai: spec (docs/openai.md)."
        )


def _whole_completion(response: httpx.Response, url: str) -> Iterator[str | StreamEnd]:
    answer = _json_object(response.text, url)
    choice = (answer.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") or ""
    if text:
        yield text
    usage = answer.get("usage") or {}
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    yield StreamEnd(choice.get("finish_reason"), tokens if isinstance(tokens, int) else None)


def _json_object(text: str, url: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise RemoteModelError(f"{url} answered with something that is not OpenAI's JSON: {_snippet(text)!r}")
    return value


def _error_message_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return _snippet(response.text) or response.reason_phrase
    return _error_message(body) if isinstance(body, dict) else _snippet(response.text)


def _error_message(body: dict[str, Any]) -> str:
    """The message of OpenAI's `{"error": {"message"}}`, camcap's `{"detail"}`, or the body."""
    error = body.get("error")
    if isinstance(error, dict) and error.get("message"):
        return _snippet(str(error["message"]))
    for key in ("detail", "message", "error"):
        if isinstance(body.get(key), str):
            return _snippet(body[key])
    return _snippet(json.dumps(body))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value)))
    except ValueError:
        return None  # absent, or an HTTP date: the backoff decides


def _backoff(attempt: int) -> float:
    return BACKOFF_S * 2**attempt * (1 + random.random() / 4)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_TEXT_CHARS else text[: _ERROR_TEXT_CHARS - 1] + "…"
