"""Clocks and the per-frame record of where the time went.

Two clocks, never mixed: `monotonic()` (server-side stage durations, immune to clock changes) and
`wall_ms()` (milliseconds since the Unix epoch, only to compare with times the client stamped).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


def monotonic() -> float:
    """Seconds on the server's monotonic clock; only differences mean anything."""
    return time.perf_counter()


def ms_since(start: float, end: float | None = None) -> float:
    """Milliseconds from `start` to `end` (default: now), both from `monotonic()`."""
    return ((monotonic() if end is None else end) - start) * 1000.0


def wall_ms() -> float:
    """Milliseconds since the Unix epoch, the clock browsers stamp frames with (`Date.now()`)."""
    return time.time() * 1000.0


@dataclass(frozen=True)
class FrameTimings:
    """Milliseconds per stage of one frame's trip through the server.

    `receive_ms` compares the client's clock with the server's, so it is None without a `sent_at`
    and only meaningful when both clocks agree. Every other field is measured on the server.
    The model stages (`preprocess_ms` ... `tokens`) are the backend's own figures; for an item of a
    batch they are the batch's, because every item waited for all of it.
    """

    receive_ms: float | None  # client sent_at -> bytes received (client and server clocks)
    queue_ms: float  # waiting in the stream's slot for the model worker
    image_decode_ms: float  # bytes -> RGB pixels, including any downscale
    preprocess_ms: float
    first_token_ms: float
    decode_ms: float
    encode_ms: float | None
    inference_ms: float  # generate() called -> this item's final caption (the model's whole share)
    total_ms: float  # bytes received -> caption final
    tokens: int
