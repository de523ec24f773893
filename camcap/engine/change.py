"""Change gating: has the scene changed since the frame a stream's caption describes?

Each frame gets a *signature* where it is decoded (off the event loop): a 64x48 thumbnail of its
grey levels, each cell the average of ~64 pixels, so camera noise and JPEG artefacts mostly
average out. Two frames differ by the percentage of cells whose grey level moved by more than
`CELL_LEVELS`. Counting changed cells rather than averaging all differences is what separates a
small object from noise: the mean absolute difference of a cup (0.5 % of the frame) being
removed, 0.55 grey levels, is below that of two shots of a dim room, 0.80, while the share of
changed cells is 0.65 % against 0.00 %. Measurements: `camcap.engine.options`.

A `ChangeGate` holds, per stream, the last frame handed to the model (its caption may still be in
progress): a new frame that barely differs from it, with the same task, need not be captioned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageChops

if TYPE_CHECKING:
    from camcap.engine.events import Frame
    from camcap.engine.options import StreamOptions
    from camcap.models.base import Task

# A cell must move by more than this many grey levels (0..255) to count as changed: above the
# noise left in a cell of a dim, noisy frame (sigma 8 per pixel gives ~1 level per cell).
CELL_LEVELS = 8
# Fine enough that an object of 1 % of the frame spans several cells (a coarser grid lets the
# two halves of a moving object cancel out in one cell), coarse enough that each cell averages
# ~64 pixels of a 512x384 frame, which divides camera noise by ~8.
SIGNATURE_SIZE = (64, 48)


@dataclass(frozen=True, eq=False)
class FrameSignature:
    """A frame reduced to what change gating compares: a small greyscale thumbnail."""

    thumbnail: Image.Image  # mode "L", SIGNATURE_SIZE


def signature(image: Image.Image) -> FrameSignature:
    """The change signature of `image` (about 0.25 ms for 512x384; call it off the event loop)."""
    grey = image.convert("L")
    # BOX averages every pixel of a cell: the averaging is what cancels the noise.
    return FrameSignature(grey.resize(SIGNATURE_SIZE, Image.Resampling.BOX))


def difference(a: FrameSignature, b: FrameSignature) -> float:
    """How much of the picture changed between two frames, in percent (0 .. 100): the share of
    thumbnail cells whose grey level moved by more than `CELL_LEVELS`."""
    histogram = ImageChops.difference(a.thumbnail, b.thumbnail).histogram()  # 256 bins, one per level
    return 100.0 * sum(histogram[CELL_LEVELS + 1 :]) / sum(histogram)


@dataclass(frozen=True)
class Reference:
    """The frame a stream's latest caption describes (or will, once it is written)."""

    seq: int
    signature: FrameSignature
    task: Task
    taken_at: float  # monotonic(), when the model took it


class ChangeGate:
    """One stream's memory of its last captioned frame. Not thread-safe: the scheduler's lock
    guards it."""

    def __init__(self) -> None:
        self.reference: Reference | None = None

    def check(self, frame: Frame, options: StreamOptions, now: float) -> tuple[Reference, float] | None:
        """(reference, difference) if `frame` need not be captioned, else None."""
        reference = self.reference
        if options.change_threshold <= 0 or reference is None or frame.signature is None:
            return None
        if frame.task != reference.task:
            return None  # a new question deserves an answer even about the same picture
        if options.max_unchanged_s > 0 and now - reference.taken_at >= options.max_unchanged_s:
            return None
        value = difference(frame.signature, reference.signature)
        return (reference, value) if value < options.change_threshold else None

    def remember(self, frame: Frame, taken_at: float) -> None:
        """`frame` goes to the model: later frames are compared with it."""
        if frame.signature is None:
            self.reference = None  # nothing to compare with: the next frame is captioned
        else:
            self.reference = Reference(frame.seq, frame.signature, frame.task, taken_at)

    def forget(self, seq: int | None = None) -> None:
        """Drop the reference (only if it is frame `seq`, when given): its caption will not come,
        or the stream's settings changed, so the next frame must be captioned."""
        if seq is None or (self.reference is not None and self.reference.seq == seq):
            self.reference = None
