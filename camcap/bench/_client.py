"""The bench's clients: a live stream (as the page drives `/v1/stream`) and a multipart poster.

Times are taken on the client with `time.perf_counter()`; the header's `captured_at` and
`sent_at` use the wall clock in milliseconds, as the page's do, so the server's `receive_ms`
means the same thing it means for a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from camcap.bench._base64_route import base64_frame_message
from camcap.bench._frames import pack_frame

# Browsers offer permessage-deflate, so the bench's clients do too; camcap's server declines it
# (server/app.py `uvicorn_options`), uvicorn's default would accept it.
BROWSER_COMPRESSION = "deflate"
_READY_TIMEOUT_S = 60.0


def wall_ms() -> float:
    """Milliseconds since the Unix epoch: the clock the page stamps frames with."""
    return time.time() * 1000.0


@dataclass
class Reply:
    """What became of one frame sent on a stream."""

    seq: int
    sent: float  # perf_counter() once the message was handed to the socket
    kind: str = ""  # "caption", "error", "replaced" (a newer frame took its slot), or a newer event type
    first_token: float | None = None
    done: float | None = None  # perf_counter() when its final event arrived
    event: dict[str, Any] = field(default_factory=dict)  # the final event as received
    size: int = 0  # bytes (or characters) of the message sent

    @property
    def captioned(self) -> bool:
        return self.kind == "caption"

    def server_ms(self, name: str) -> float | None:
        """A stage timing the server reported in the caption event (None if there is none)."""
        timings = self.event.get("timings") or {}
        value = timings.get(name)
        return None if value is None else float(value)


class StreamClient:
    """One `/v1/stream` connection: binary (or base64 JSON) frames out, JSON events in.

    A reader task files every event under its frame's `seq`; `reply(seq)` waits for the frame's
    final event. A caption for frame n also settles every earlier frame still open as
    "replaced": the server keeps one waiting frame per stream, and answers only the newest.
    """

    def __init__(self, connection: ClientConnection, *, base64: bool) -> None:
        self._connection = connection
        self._base64 = base64
        self._replies: dict[int, Reply] = {}
        self._open: set[int] = set()  # seqs sent and not answered yet
        self._waiters: dict[int, asyncio.Future[Reply]] = {}
        self._ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())
        self.ready: dict[str, Any] = {}  # the server's `ready` event, once `open` returns
        self.events_received = 0

    @classmethod
    async def open(
        cls, url: str, *, base64: bool = False, compression: str | None = BROWSER_COMPRESSION
    ) -> StreamClient:
        """Connect and wait for the server's `ready` event."""
        connection = await connect(url, compression=compression, max_size=None)
        client = cls(connection, base64=base64)
        try:
            client.ready = await asyncio.wait_for(asyncio.shield(client._ready), _READY_TIMEOUT_S)
        except BaseException:
            await client.close()
            raise
        return client

    async def send(self, seq: int, jpeg: bytes, *, captured_at: float) -> Reply:
        """Send one frame; returns its `Reply`, which fills in as events arrive."""
        if self._base64:
            message: str | bytes = base64_frame_message(seq, jpeg, captured_at=captured_at, sent_at=wall_ms())
        else:
            message = pack_frame(seq, jpeg, captured_at=captured_at, sent_at=wall_ms())
        reply = Reply(seq, sent=0.0, size=len(message))
        self._replies[seq] = reply
        self._open.add(seq)
        self._waiters[seq] = asyncio.get_running_loop().create_future()
        await self._connection.send(message)
        reply.sent = time.perf_counter()
        return reply

    async def reply(self, seq: int, timeout: float | None = None) -> Reply:
        """Wait for frame `seq`'s final event."""
        return await asyncio.wait_for(asyncio.shield(self._waiters[seq]), timeout)

    def replies(self) -> list[Reply]:
        return list(self._replies.values())

    async def close(self) -> None:
        await self._connection.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader

    async def _read(self) -> None:
        try:
            async for raw in self._connection:
                now = time.perf_counter()
                self.events_received += 1
                self._on_event(json.loads(raw), now)
        except Exception as exc:  # the connection failed: nobody waiting may hang
            self._fail(exc)
        else:
            self._fail(ConnectionError("The server closed the stream."))

    def _on_event(self, event: dict[str, Any], now: float) -> None:
        kind, seq = event.get("type"), event.get("seq")
        if kind == "ready":
            if not self._ready.done():
                self._ready.set_result(event)
            return
        if seq is None:
            if kind == "error":  # about the stream, not a frame (e.g. the server is closing)
                self._fail(RuntimeError(f"The server reported: {event.get('code')}: {event.get('message')}"))
            return
        reply = self._replies.get(seq)
        if reply is None:
            return
        if kind == "token":
            if reply.first_token is None:
                reply.first_token = now
            return
        # Any other event with a seq is that frame's last word (caption, error, or a kind added
        # since this was written, such as a frame skipped as unchanged).
        self._settle(reply, str(kind), now, event)
        if kind == "caption":
            for older in [open_seq for open_seq in self._open if open_seq < seq]:
                self._settle(self._replies[older], "replaced", now, {})

    def _settle(self, reply: Reply, kind: str, now: float, event: dict[str, Any]) -> None:
        reply.kind, reply.done, reply.event = kind, now, event
        self._open.discard(reply.seq)
        waiter = self._waiters.get(reply.seq)
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    def _fail(self, exc: Exception) -> None:
        if not self._ready.done():
            self._ready.set_exception(exc)
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(exc)


class CaptionPoster:
    """`POST /v1/caption` as multipart/form-data on one kept-alive connection (blocking: call it
    on a thread). The answer includes the server's stage timings, like a caption event."""

    # uvicorn closes a connection idle for 5 s (its timeout_keep_alive).
    _IDLE_S = 4.0

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self._used = 0.0

    def keep_alive(self) -> None:
        """Reconnect now if the server may have closed the idle connection: a client posting
        frame after frame never lets it idle, so a bench that interleaves other transports
        between its posts must not charge it for reconnecting. Call before timing a `post`."""
        if time.perf_counter() - self._used > self._IDLE_S:
            self._connection.close()
            self._connection.connect()

    def post(self, jpeg: bytes) -> tuple[dict[str, Any], float, int]:
        """Send one image; returns the JSON answer, perf_counter() when it had arrived, and the
        size of the request body."""
        boundary = uuid.uuid4().hex
        body = b"".join(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="frame.jpg"\r\n'.encode(),
                b"Content-Type: image/jpeg\r\n\r\n",
                jpeg,
                f"\r\n--{boundary}--\r\n".encode(),
            )
        )
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        try:
            response = self._request(body, headers)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # Closed by the server after all (see keep_alive): a browser sends the request again on
            # a new connection, and so does this client. The failed try is counted.
            self._connection.close()
            response = self._request(body, headers)
        data = response.read()
        done = self._used = time.perf_counter()
        if response.status != 200:
            raise RuntimeError(f"POST /v1/caption answered {response.status}: {data[:300]!r}")
        return json.loads(data), done, len(body)

    def _request(self, body: bytes, headers: dict[str, str]) -> http.client.HTTPResponse:
        self._connection.request("POST", "/v1/caption", body=body, headers=headers)
        return self._connection.getresponse()

    def close(self) -> None:
        self._connection.close()
