"""Frames as they arrive: split the wire header from the image, then validate and decode it.

Every frame is untrusted bytes from the network, so the checks run cheapest first: byte count,
magic bytes, then the pixel count read from the image *header* (Pillow's `Image.open` is lazy),
and only then the full decode. The limits are passed in explicitly; Pillow's process-wide
`Image.MAX_IMAGE_PIXELS` is nobody's configuration and is never relied on.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import math
import struct
from dataclasses import dataclass

import anyio.to_thread
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import ValidationError

from camcap.engine.change import FrameSignature, signature
from camcap.engine.timing import monotonic, ms_since
from camcap.errors import CamcapError, InvalidImageError
from camcap.server.messages import FRAME_MAGIC, MAX_FRAME_HEADER_BYTES, FrameHeader, describe_validation_error

_HEADER_LENGTH = struct.Struct(">I")
_FORMATS_HINT = "expected JPEG, PNG or WebP image bytes"


class InvalidFrameError(CamcapError, ValueError):
    """The binary envelope around an image (the `FRAME_MAGIC` header) is malformed."""


class FrameTooLargeError(InvalidImageError):
    """The image is over the server's byte or pixel limit."""


@dataclass(frozen=True)
class FrameLimits:
    """What one frame may cost before it is refused."""

    max_bytes: int = 8 * 1024 * 1024
    # Checked from the header, before any pixel is decoded: a 100-byte PNG can claim 100k x 100k.
    max_pixels: int = 4096 * 3072  # a 12-megapixel photo; camcap.config.Settings.max_frame_pixels

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise ValueError(f"Frame limits must be positive, got {self}.")


@dataclass(frozen=True)
class DecodedImage:
    """An RGB image ready for the model, and what it took to get it."""

    image: Image.Image
    format: str  # "JPEG", "PNG" or "WEBP": what the bytes were
    source_size: tuple[int, int]  # (width, height) as sent, before any downscale
    decode_ms: float  # including the signature, when one was asked for
    signature: FrameSignature | None = None  # for change gating (engine/change.py)


def split_frame(message: bytes) -> tuple[FrameHeader | None, bytes]:
    """Split a binary WebSocket message into its optional header and the image bytes.

    A message that does not start with `FRAME_MAGIC` is taken as bare image bytes. Raises
    `InvalidFrameError` when the magic is there but what follows is not a valid header.
    """
    if not message.startswith(FRAME_MAGIC):
        return None, message
    start = len(FRAME_MAGIC) + _HEADER_LENGTH.size
    if len(message) < start:
        raise InvalidFrameError(
            f"The frame starts with {FRAME_MAGIC!r} but is only {len(message)} bytes; expected "
            f"{FRAME_MAGIC!r}, a 4-byte big-endian header length, the JSON header, then the image."
        )
    (length,) = _HEADER_LENGTH.unpack_from(message, len(FRAME_MAGIC))
    if length > MAX_FRAME_HEADER_BYTES or start + length > len(message):
        raise InvalidFrameError(
            f"The frame header claims {length} bytes but the message has {len(message) - start} after "
            f"the length field (and at most {MAX_FRAME_HEADER_BYTES} are allowed); write the length as a "
            "big-endian uint32 of the UTF-8 JSON header."
        )
    raw = message[start : start + length]
    try:
        header = FrameHeader.model_validate(json.loads(raw.decode("utf-8")))
    except ValidationError as exc:
        problem = describe_validation_error(exc)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        problem = f"not UTF-8 JSON ({_first_line(exc)})"
    else:
        return header, message[start + length :]
    raise InvalidFrameError(
        f"The frame header is not valid: {problem}. Expected UTF-8 JSON such as "
        '{"seq": 12, "captured_at": 1730000000000.0, "sent_at": 1730000000003.5}.'
    )


def sniff_format(data: bytes) -> str | None:
    """The Pillow format name the magic bytes announce ("JPEG", "PNG", "WEBP"), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_image(
    data: bytes, limits: FrameLimits | None = None, *, max_short_side: int | None = None, with_signature: bool = False
) -> DecodedImage:
    """Validate and decode image bytes into an upright RGB image.

    `max_short_side`: downscale so the short side is at most this many pixels (the model's
    `input_size`; never upscales). Pages already send frames that size; this bounds what an
    HTTP upload of a 12-megapixel photo costs, and lets libjpeg decode at a reduced scale.
    `with_signature`: also compute the frame's change signature, here, while the pixels are hot
    and the caller is off the event loop.

    Raises `InvalidImageError` (empty, not an image, truncated, corrupt) or its subclass
    `FrameTooLargeError` (over a limit). Blocking CPU work: call it off the event loop.
    """
    start = monotonic()
    opened = open_image(data, limits, max_short_side=max_short_side)
    return finish_decode(opened, start, max_short_side=max_short_side, with_signature=with_signature)


@dataclass(frozen=True)
class OpenedImage:
    """An image whose header was read and checked, not yet decoded (`open_image`)."""

    image: Image.Image
    format: str
    source_size: tuple[int, int]

    @property
    def decode_pixels(self) -> int:
        """Pixels the decoder will produce: after JPEG draft mode, fewer than the source's."""
        return self.image.width * self.image.height


def open_image(data: bytes, limits: FrameLimits | None = None, *, max_short_side: int | None = None) -> OpenedImage:
    """The cheap half of `decode_image`: bytes, magic and header checked, JPEG draft mode chosen.
    Raises as `decode_image` does; reads no pixel."""
    limits = limits or FrameLimits()
    if not data:
        raise InvalidImageError(f"The frame is empty (0 bytes); {_FORMATS_HINT}.")
    if len(data) > limits.max_bytes:
        raise FrameTooLargeError(
            f"The frame is {len(data)} bytes, over the limit of {limits.max_bytes}; send a smaller "
            "image (resize it to the model's input_size, or lower the JPEG quality)."
        )
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidImageError(f"The frame is not an image (it starts with {data[:8].hex(' ')}); {_FORMATS_HINT}.")

    try:
        # formats=[fmt]: only the decoder the magic bytes named may look at these bytes.
        image = Image.open(io.BytesIO(data), formats=[fmt])
        width, height = image.size
    except Image.DecompressionBombError as exc:
        raise FrameTooLargeError(f"The {fmt} frame is too large to decode: {exc}") from None
    except Exception as exc:
        # UnidentifiedImageError's text names a BytesIO object, which helps nobody.
        problem = "Pillow does not recognise it" if isinstance(exc, UnidentifiedImageError) else _first_line(exc)
        raise InvalidImageError(f"The {fmt} frame's header cannot be read ({problem}); {_FORMATS_HINT}.") from None
    if width * height > limits.max_pixels:
        raise FrameTooLargeError(
            f"The frame is {width}x{height} = {width * height} pixels, over the limit of {limits.max_pixels}; "
            "resize it before sending (the model's input_size is all it needs)."
        )
    try:
        draft_reduced(image, max_short_side)
    except Exception as exc:
        raise InvalidImageError(f"The {fmt} frame cannot be decoded ({_first_line(exc)}).") from None
    return OpenedImage(image=image, format=fmt, source_size=(width, height))


def finish_decode(
    opened: OpenedImage, start: float, *, max_short_side: int | None = None, with_signature: bool = False
) -> DecodedImage:
    """The costly half of `decode_image`: decode, turn upright, convert to RGB, shrink.
    `start`: when decoding began (`monotonic()`), for `decode_ms`."""
    image, fmt = opened.image, opened.format
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # phone photos are often stored sideways
        rgb = image if image.mode == "RGB" else image.convert("RGB")
    except Exception as exc:
        # Pillow signals bad data with OSError, SyntaxError, ValueError and others, by format.
        raise InvalidImageError(
            f"The {fmt} frame cannot be decoded ({_first_line(exc)}); it is truncated or corrupt. "
            "Send the complete image bytes."
        ) from None

    rgb = fit_short_side(rgb, max_short_side)
    frame_signature = signature(rgb) if with_signature else None
    return DecodedImage(
        image=rgb, format=fmt, source_size=opened.source_size, decode_ms=ms_since(start), signature=frame_signature
    )


class DecodeBudget:
    """Pixels being decoded at once, all clients together. A frame waits until its pixels fit (one
    larger than the whole budget waits to have it alone), so memory for decoding stays bounded
    however many large frames arrive together, and small frames pass beside a large one.

    Decoding costs memory per pixel before any downscale (4 bytes a pixel for RGBA, then an RGB
    copy): 24 frames of 16 megapixels decoded at once took a server from 0.7 to 2.9 GB.
    Used from the event loop only.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"max_decode_pixels must be positive, got {capacity}.")
        self.capacity = capacity
        self.in_use = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self, pixels: int) -> int:
        """Wait until `pixels` fit; returns what was taken (pass it to `release`)."""
        need = min(pixels, self.capacity)
        while self.in_use + need > self.capacity:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
        self.in_use += need
        return need

    def release(self, taken: int) -> None:
        self.in_use -= taken
        for waiter in self._waiters:  # each looks again whether it fits now
            if not waiter.done():
                waiter.set_result(None)


async def decode_image_off_loop(
    data: bytes,
    limits: FrameLimits | None = None,
    *,
    max_short_side: int | None = None,
    with_signature: bool = False,
    budget: DecodeBudget | None = None,
) -> DecodedImage:
    """`decode_image` on worker threads, so the event loop keeps serving other sockets.

    `budget`: the server's `DecodeBudget`; the header is checked first, then the decode waits
    for its pixels (after JPEG draft mode) to fit.
    """
    if budget is None:
        call = functools.partial(
            decode_image, data, limits, max_short_side=max_short_side, with_signature=with_signature
        )
        return await anyio.to_thread.run_sync(call)
    start = monotonic()
    opened = await anyio.to_thread.run_sync(functools.partial(open_image, data, limits, max_short_side=max_short_side))
    finish = functools.partial(
        finish_decode, opened, start, max_short_side=max_short_side, with_signature=with_signature
    )
    taken = await budget.acquire(opened.decode_pixels)
    try:
        return await anyio.to_thread.run_sync(finish)
    finally:
        budget.release(taken)


def draft_reduced(image: Image.Image, max_short_side: int | None) -> None:
    """Before decoding: let libjpeg decode a JPEG at 1/2, 1/4 or 1/8 scale when the image will be
    shrunk anyway, for a fraction of the cost. Draft never goes below the size asked for, so
    `fit_short_side` still sets the exact size."""
    width, height = image.size
    if max_short_side is None or min(width, height) <= max_short_side or image.format != "JPEG":
        return
    scale = max_short_side / min(width, height)
    image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))


def fit_short_side(rgb: Image.Image, max_short_side: int | None) -> Image.Image:
    """Downscale (never upscale) so the short side is at most `max_short_side` pixels. Frames,
    uploads and the CLI's files all pass through here, so the model sees the same pixels from each."""
    short = min(rgb.size)
    if max_short_side is None or short <= max_short_side:
        return rgb
    factor = max_short_side / short
    size = (max(1, round(rgb.width * factor)), max(1, round(rgb.height * factor)))
    return rgb.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (pydantic's run to a dozen lines)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
