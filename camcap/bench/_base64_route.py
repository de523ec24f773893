"""The design many peers use, for comparison only: frames as base64 inside JSON text messages.

A client sends `{"type": "frame", "seq": ..., "captured_at": ..., "sent_at": ..., "image":
"<base64 JPEG>"}`. This route parses the JSON and decodes the base64 on the event loop, as such
servers do, then hands the frame to camcap's own `/v1/stream` endpoint, so everything after
that point is identical to the binary transport. The extra cost measured is exactly the text
transport's: a third more bytes on the wire, encoding on the client, parsing on the server.
(Re-wrapping the bytes in camcap's envelope adds one copy of a few tens of kB: microseconds.)
"""

from __future__ import annotations

import base64
import binascii
import json
import struct

from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from camcap.server import websocket
from camcap.server.messages import FRAME_MAGIC


class Base64StreamRoute:
    """An ASGI app: `/v1/stream`, but frames arrive as base64 JSON text instead of binary."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_frames() -> Message:
            message = await receive()
            text = message.get("text") if message["type"] == "websocket.receive" else None
            if text is None or not text.startswith('{"type": "frame"'):
                return message  # config messages and disconnects go through unchanged
            return {"type": "websocket.receive", "bytes": _to_binary(text)}

        await websocket.stream_endpoint(WebSocket(scope, receive=receive_frames, send=send))


def _to_binary(text: str) -> bytes:
    """A base64 JSON frame as camcap's binary envelope. A malformed one becomes bytes that the
    endpoint answers with `bad_frame`, as it would a malformed binary frame."""
    try:
        payload = json.loads(text)
        image = base64.b64decode(payload.pop("image"), validate=True)
        payload.pop("type")
    except (ValueError, KeyError, TypeError, binascii.Error):
        return FRAME_MAGIC
    header = json.dumps(payload).encode()
    return FRAME_MAGIC + struct.pack(">I", len(header)) + header + image


def base64_frame_message(seq: int, jpeg: bytes, *, captured_at: float, sent_at: float) -> str:
    """The client's side: one frame as a base64 JSON text message."""
    image = base64.b64encode(jpeg).decode("ascii")
    # "type" first: the route tells frames from configs by that prefix without parsing twice.
    return json.dumps({"type": "frame", "seq": seq, "captured_at": captured_at, "sent_at": sent_at, "image": image})
