"""Frame envelopes and image decoding: camcap.engine.frames."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import threading
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from camcap.engine import frames
from camcap.engine.frames import (
    FrameLimits,
    FrameTooLargeError,
    InvalidFrameError,
    decode_image,
    decode_image_off_loop,
    sniff_format,
    split_frame,
)
from camcap.errors import InvalidImageError
from camcap.server.messages import FRAME_MAGIC, MAX_FRAME_HEADER_BYTES


def encode(
    fmt: str, size: tuple[int, int] = (64, 48), colour: tuple[int, ...] = (200, 30, 40), mode: str = "RGB"
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, fmt)
    return buffer.getvalue()


def pack(header: object, image: bytes, length: int | None = None) -> bytes:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return FRAME_MAGIC + struct.pack(">I", len(raw) if length is None else length) + raw + image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming `width` x `height` in its IHDR, with 4 bytes of (garbage) pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"\x00" * 4)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# --- the envelope --------------------------------------------------------------------------------


def test_bare_image_bytes_have_no_header():
    jpeg = encode("JPEG")
    assert split_frame(jpeg) == (None, jpeg)


def test_header_is_parsed_and_the_image_follows_it():
    jpeg = encode("JPEG")
    header, image = split_frame(pack({"seq": 7, "captured_at": 1.5, "sent_at": 2.5}, jpeg))
    assert header is not None
    assert (header.seq, header.captured_at, header.sent_at) == (7, 1.5, 2.5)
    assert image == jpeg


@pytest.mark.parametrize(
    ("message", "words"),
    [
        (FRAME_MAGIC + b"\x00\x00", "only 6 bytes"),
        (pack({"seq": 1}, b"", length=500), "claims 500 bytes"),
        (pack(b"x" * (MAX_FRAME_HEADER_BYTES + 1), b""), f"at most {MAX_FRAME_HEADER_BYTES}"),
        (pack(b"{not json", b"\xff\xd8\xff"), "not UTF-8 JSON"),
        (pack(b"\xff\xfe", b""), "not UTF-8 JSON"),
        (pack({"seq": -1}, b""), "seq"),
        (pack({"captured_at": 1}, b""), "seq: Field required"),
        (pack({"seq": 1, "colour": "red"}, b""), "colour"),
        (pack([1, 2], b""), "header is not valid"),
        (pack(b"[" * 3000, b""), "not UTF-8 JSON"),
    ],
)
def test_malformed_header_is_a_frame_error_naming_the_problem(message, words):
    with pytest.raises(InvalidFrameError, match=r"header|bytes") as info:
        split_frame(message)
    assert words in str(info.value)


# --- formats -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "name"), [("JPEG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WEBP")])
def test_formats_are_recognised_by_magic_bytes(fmt, name):
    assert sniff_format(encode(fmt)) == name


def test_other_bytes_are_no_format():
    assert sniff_format(b"GIF89a....") is None
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVE") is None
    assert sniff_format(b"") is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_decode_gives_rgb_pixels_of_the_right_size_and_colour(fmt):
    decoded = decode_image(encode(fmt, size=(64, 48), colour=(200, 30, 40)))
    assert decoded.format == fmt
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == decoded.source_size == (64, 48)
    red, green, blue = decoded.image.getpixel((10, 10))
    assert abs(red - 200) < 12 and abs(green - 30) < 12 and abs(blue - 40) < 12
    assert decoded.decode_ms >= 0


@pytest.mark.parametrize(("mode", "colour"), [("RGBA", (1, 2, 3, 128)), ("L", 77), ("P", 3), ("I;16", 1000)])
def test_png_of_any_mode_becomes_rgb(mode, colour):
    assert decode_image(encode("PNG", mode=mode, colour=colour)).image.mode == "RGB"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_frames_are_downscaled_to_the_models_short_side(fmt):
    decoded = decode_image(encode(fmt, size=(640, 480)), max_short_side=240)
    assert decoded.image.size == (320, 240)
    assert decoded.source_size == (640, 480)


def test_small_frames_are_never_upscaled():
    assert decode_image(encode("JPEG", size=(100, 50)), max_short_side=384).image.size == (100, 50)


def test_exif_orientation_turns_the_image_upright():
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.new("RGB", (64, 32), (0, 0, 255)).save(buffer, "JPEG", exif=exif)
    assert decode_image(buffer.getvalue()).image.size == (32, 64)


# --- refusals ------------------------------------------------------------------------------------


def test_empty_frame_is_refused():
    with pytest.raises(InvalidImageError, match="empty"):
        decode_image(b"")


def test_non_image_is_refused_naming_what_was_expected():
    with pytest.raises(InvalidImageError, match=r"not an image.*JPEG, PNG or WebP"):
        decode_image(b"hello, this is text")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_image_is_refused(fmt):
    data = encode(fmt, size=(320, 240))
    with pytest.raises(InvalidImageError, match=fmt):
        decode_image(data[: len(data) // 2])


def test_truncated_jpeg_says_so():
    data = encode("JPEG", size=(320, 240))
    with pytest.raises(InvalidImageError, match="truncated"):
        decode_image(data[:-2])


def test_garbage_after_magic_bytes_is_refused():
    with pytest.raises(InvalidImageError):
        decode_image(b"\xff\xd8\xff" + b"\x00" * 200)


def test_too_many_bytes_is_refused_before_decoding():
    data = encode("PNG", size=(64, 48))
    with pytest.raises(FrameTooLargeError, match=f"{len(data)} bytes, over the limit of 100"):
        decode_image(data, FrameLimits(max_bytes=100))


def test_pixel_limit_is_checked_from_the_header_without_decoding(monkeypatch):
    # Pillow's process-wide guard is disabled: camcap's own limit must still refuse the frame.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(FrameTooLargeError, match="100000x100000"):
        decode_image(png_header_only(100_000, 100_000))


def test_pixel_limit_applies_to_small_limits_too():
    with pytest.raises(FrameTooLargeError, match="64x48 = 3072 pixels"):
        decode_image(encode("JPEG", size=(64, 48)), FrameLimits(max_pixels=3071))
    assert decode_image(encode("JPEG", size=(64, 48)), FrameLimits(max_pixels=3072)).image.size == (64, 48)


def test_a_pillow_decompression_bomb_error_is_a_frame_too_large(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # someone lowered it process-wide
    with pytest.raises(FrameTooLargeError):
        decode_image(encode("PNG", size=(64, 48)))


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        FrameLimits(max_bytes=0)


@settings(max_examples=150, deadline=None)
@given(
    prefix=st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x10\x00\x00\x00WEBP", b""]),
    body=st.binary(max_size=300),
)
def test_arbitrary_bytes_either_decode_or_raise_invalid_image(prefix, body):
    try:
        decoded = decode_image(prefix + body, FrameLimits(max_pixels=1_000_000))
    except InvalidImageError:
        return
    assert decoded.image.mode == "RGB"


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_envelopes_either_split_or_raise_invalid_frame(body):
    try:
        header, _ = split_frame(FRAME_MAGIC + body)
    except InvalidFrameError:
        return
    assert header is not None and header.seq >= 0


# --- off the event loop --------------------------------------------------------------------------


def test_decode_runs_off_the_event_loop(monkeypatch):
    threads = []
    real = frames.decode_image

    def spy(*args, **kwargs):
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(frames, "decode_image", spy)

    async def main():
        decoded = await decode_image_off_loop(encode("JPEG"), FrameLimits(), max_short_side=24)
        return threading.get_ident(), decoded

    loop_thread, decoded = asyncio.run(asyncio.wait_for(main(), 10))
    assert decoded.image.size == (32, 24)
    assert threads and threads[0] != loop_thread
