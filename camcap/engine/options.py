"""Per-stream real-time policies: change gating and the stale-work cut.

The server's defaults come from `Settings.stream_options()`; a stream's `config` message may
override `change_threshold` and `cut_stale` for that stream alone. The scheduler reads a stream's
options on its worker thread, so a stream's options are replaced whole, never mutated.
"""

from __future__ import annotations

from dataclasses import dataclass

# Chosen from measurements: `python -m tests.test_gating` (Pillow 13; a synthetic, camera-like
# 512x384 scene shot with Gaussian sensor noise and JPEG-encoded; the measure is
# camcap.engine.change.difference, the percentage of the picture that changed):
#   same scene, two shots      noise sigma 2, 3, 4 or 8 + JPEG q80                 0.00
#                              noise sigma 4, JPEG q30 or q60 vs q95               0.00
#                              298x224 frames (input_size 224), sigma 4 or 8       0.00
#   small real changes         a phone (0.2 % of the frame) is removed             0.26
#                              a cup (0.5 %) moves 2 % / 5 % of the width          0.36 / 0.98
#                              the cup is removed / a hand enters at the edge      0.65 / 1.27
#                              a low-contrast figure (15 % of the frame, 12 levels) 17.55
#   other                      the whole picture 2 % / 5 % brighter                0.00 / 25.91
#   (above the threshold: a    the camera shakes by 1 px                           1.04
#    caption too many, never   298x224 frames, very dark (sigma 12 / 16)           0.20 / 1.53
#    one too few)
# 0.2 catches the smallest change measured (0.26) while sensor noise up to sigma 8 stays at 0.
# Signature 0.25 ms per 512x384 frame (on the decode thread), difference 0.01 ms.
DEFAULT_CHANGE_THRESHOLD = 0.2
# A forced caption at least this often even when nothing seems to change: a change too small to
# cross the threshold (or a model that answers differently the second time) is never stale longer.
DEFAULT_MAX_UNCHANGED_S = 30.0
# How much newer (capture time) a waiting frame must be before a generation in progress is cut.
DEFAULT_STALE_AFTER_MS = 500.0


@dataclass(frozen=True)
class StreamOptions:
    """What the scheduler may skip or cut for one stream."""

    # Skip a frame when less than this percentage of the picture changed since the stream's last
    # captioned frame (camcap.engine.change.difference); 0 turns change gating off.
    change_threshold: float = DEFAULT_CHANGE_THRESHOLD
    # Caption anyway once the last captioned frame is this old, in seconds; 0: never force.
    max_unchanged_s: float = DEFAULT_MAX_UNCHANGED_S
    # Stop a generation in progress when a frame of the same stream waits that was captured more
    # than `stale_after_ms` later and shows a changed scene; the newer frame is captioned instead.
    cut_stale: bool = False
    stale_after_ms: float = DEFAULT_STALE_AFTER_MS

    def __post_init__(self) -> None:
        if not 0 <= self.change_threshold <= 100:
            raise ValueError(
                f"change_threshold is a percentage of the picture, 0 (off) to 100; got {self.change_threshold}."
            )
        if self.max_unchanged_s < 0 or self.stale_after_ms < 0:
            raise ValueError(
                "max_unchanged_s and stale_after_ms must be >= 0, "
                f"got {self.max_unchanged_s} and {self.stale_after_ms}."
            )

    @property
    def needs_signature(self) -> bool:
        """Whether frames of the stream need a change signature (computed where they are decoded)."""
        return self.change_threshold > 0 or self.cut_stale
