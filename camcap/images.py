"""Open image *files* for the CLI, with errors that name the file.

The server decodes frames from bytes (`camcap.engine.frames`); this module only deals with paths
a user typed, where the useful error is "which file, and what is wrong with it".
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from camcap.engine.frames import draft_reduced, fit_short_side
from camcap.errors import InvalidImageError

_FORMATS_HINT = "expected an image file such as JPEG, PNG or WebP, or a video file such as MP4"


def open_image(path: str | Path, *, max_short_side: int | None = None) -> Image.Image:
    """Decode the image at `path` into RGB pixels, turned upright as its EXIF orientation says.

    `max_short_side`: downscale (never upscale) so the short side is at most this many pixels,
    the model's `input_size`, the way the server treats uploads (`camcap.engine.frames`): a
    file then gets the caption the live page would get, and a 12-megapixel photo does not cost
    Moondream a dozen crops. Raises `InvalidImageError` naming the file if it is missing,
    unreadable or not an image.
    """
    try:
        with Image.open(path) as image:
            draft_reduced(image, max_short_side)
            # Phone and camera photos are often stored sideways with an orientation tag; the model
            # should see them the way a person does.
            rgb = ImageOps.exif_transpose(image).convert("RGB")
    except Exception as exc:
        raise InvalidImageError(f"{path}: {_describe(exc)}") from exc
    # The server's resize, so a file and an upload give the model the same pixels.
    rgb = fit_short_side(rgb, max_short_side)
    return rgb


def check_image_files(paths: Iterable[str | Path]) -> None:
    """Check that every path is an image Pillow can read, without decoding the pixels.

    Runs before the model is loaded so a typo fails in milliseconds, not after a minute of
    loading; one error lists every bad file. A file whose header is fine but whose data is
    truncated still fails later, in `open_image`, naming the file.
    """
    problems = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as exc:
            problems.append(f"{path}: {_describe(exc)}")
    if len(problems) == 1:
        raise InvalidImageError(problems[0])
    if problems:
        listing = "\n  ".join(problems)
        raise InvalidImageError(f"{len(problems)} files cannot be read as images:\n  {listing}")


def _describe(exc: Exception) -> str:
    """Turn Pillow's and the OS's exceptions into one phrase a user can act on."""
    if isinstance(exc, FileNotFoundError):
        return "no such file."
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not an image file."
    if isinstance(exc, PermissionError):
        return "permission denied; check the file's permissions."
    if isinstance(exc, UnidentifiedImageError):
        return f"not an image camcap can read ({_FORMATS_HINT})."
    if isinstance(exc, Image.DecompressionBombError):
        return f"too large to decode safely ({exc}); resize it first."
    # Truncated or corrupt data: Pillow raises OSError, SyntaxError or ValueError depending on
    # the format, with a message worth keeping.
    return f"cannot decode the image: {exc} ({_FORMATS_HINT})."
