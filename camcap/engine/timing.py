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


#: The longest a frame can believably take from the client's `sent_at` to the server, in ms. A
#: receive time outside 0..this says the two clocks disagree (or the client lies): not a duration.
MAX_RECEIVE_MS = 60_000.0


def receive_ms(sent_at: float | None, received_wall_ms: float) -> float | None:
    """The frame's upload time (client `sent_at` -> received), or None when it cannot be believed.

    A client's clock is not the server's, and a hostile client can stamp anything: `sent_at: 0`
    would add 56 years to a sum. Only a time within 0..MAX_RECEIVE_MS is a measurement.
    """
    if sent_at is None:
        return None
    elapsed = received_wall_ms - sent_at
    return elapsed if 0.0 <= elapsed <= MAX_RECEIVE_MS else None


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
