"""What a `camcap bench` run measures, and how much of it: one frozen options object."""

from __future__ import annotations

from dataclasses import dataclass, replace

from camcap.config import Settings
from camcap.engine.options import DEFAULT_CHANGE_THRESHOLD
from camcap.models.options import Detail

# In the order they run. Each is a module of this package with a `run(context)` function.
SCENARIOS = (
    "overhead", "transports", "freshness", "frame_size", "batch_scaling", "streams", "gating", "stale_cut",
    "video_file", "live_source", "scale_out",
)  # fmt: skip
# Scenarios that never use the bench's own model (scale_out drives stand-in engines through openai:):
# run alone, they load the small SMOKE_MODEL rather than the default one.
MODEL_FREE_SCENARIOS = ("scale_out",)
SMOKE_MODEL = "random:blip-tiny"


@dataclass(frozen=True)
class BenchOptions:
    """How much of each scenario to run. The defaults size a CPU run of a base-size model to a
    few minutes; `BenchOptions.smoke()` shrinks everything to seconds (CI)."""

    # Model and server settings (model, device, dtype, cache, batch size...). The bench fixes the
    # caption length on top: min_new_tokens == max_new_tokens == new_tokens.
    settings: Settings
    new_tokens: int = 10
    scenarios: tuple[str, ...] = SCENARIOS
    warmup: int = 2  # untimed captions before each measured series (first calls allocate)
    pairs: int = 12  # overhead: interleaved (direct model, full path) pairs
    transport_reps: int = 8  # transports: frames per transport
    seconds: float = 20.0  # freshness: how long the camera runs, per design
    fps: float = 30.0  # freshness: camera rate
    interval_s: float = 3.0  # freshness: the fixed-interval design's period
    sizes: tuple[int, ...] = (224, 384, 512, 768)  # frame_size: short sides, px (4:3 frames)
    size_reps: int = 2  # frame_size: captions per size and path
    # frame_size: more `detail` settings to time directly, each on its own copy of the model
    # ("high" turns on SmolVLM's image splitting).
    details: tuple[Detail, ...] = ()
    streams: tuple[int, ...] = (1, 2, 4, 8)  # streams: concurrent stream counts (batch_scaling: batch sizes)
    captions_per_stream: int = 3  # streams: measured captions per stream, after one warm-up (batch_scaling: rounds)
    # streams: batching windows (ms) to try with batching on; 0 = take whatever waits at once.
    batch_windows: tuple[float, ...] = (0.0, 50.0)
    # gating: change thresholds (% of the picture) to compare; 0 = gating off.
    change_thresholds: tuple[float, ...] = (0.0, DEFAULT_CHANGE_THRESHOLD, 1.0)
    seed: int = 0  # the synthetic scene's
    # scale_out: cameras, replica counts, captions per camera each run lasts for, and the stand-in
    # engine's step time (fixed + per item x batch, ms) and max batch (camcap/scale/stand_in.py).
    scale_cameras: int = 32
    scale_replicas: tuple[int, ...] = (1, 2, 4)
    # 6 captions per camera and a 150 + 15 x batch ms step keep 4 replicas' load on the front end
    # (one process: 32 cameras, the scheduler, JPEG, HTTP, SSE) far below what a loaded 2-core
    # machine sustains; faster steps measured the machine instead (docs/benchmarks.md).
    scale_captions: int = 6
    scale_fixed_ms: float = 150.0
    scale_per_item_ms: float = 15.0
    scale_max_batch: int = 8

    def __post_init__(self) -> None:
        unknown = [name for name in self.scenarios if name not in SCENARIOS]
        if unknown or not self.scenarios:
            raise ValueError(
                f"Unknown scenario {', '.join(unknown) or '(none)'}, expected some of: {', '.join(SCENARIOS)}."
            )
        counts = {
            "new_tokens": self.new_tokens,
            "pairs": self.pairs,
            "transport_reps": self.transport_reps,
            "size_reps": self.size_reps,
            "captions_per_stream": self.captions_per_stream,
            "scale_cameras": self.scale_cameras,
            "scale_captions": self.scale_captions,
            "scale_max_batch": self.scale_max_batch,
        }
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}.")
        if self.warmup < 0 or self.seconds <= 0 or self.fps <= 0 or self.interval_s <= 0:
            raise ValueError("warmup must be >= 0, and seconds, fps and interval_s > 0.")
        if not self.sizes or min(self.sizes) < 16 or not self.streams or min(self.streams) < 1:
            raise ValueError("sizes must be at least 16 px and stream counts at least 1.")
        scale_costs = (self.scale_fixed_ms, self.scale_per_item_ms)
        if not self.scale_replicas or min(self.scale_replicas) < 1 or min(scale_costs) < 0:
            raise ValueError("scale_out needs replica counts of at least 1 and step costs >= 0.")
        if any(window < 0 for window in self.batch_windows) or any(t < 0 for t in self.change_thresholds):
            raise ValueError("batch windows and change thresholds must be >= 0.")
        for detail in self.details:
            if detail not in ("low", "high"):
                raise ValueError(f"Invalid detail {detail!r}, expected low or high.")

    @property
    def model_settings(self) -> Settings:
        """The settings every captioner and server of the run uses: a fixed caption length."""
        return self.settings.model_copy(
            update={"max_new_tokens": self.new_tokens, "min_new_tokens": self.new_tokens, "open_browser": False}
        )

    @classmethod
    def smoke(cls, settings: Settings, **changes: object) -> BenchOptions:
        """Every scenario at its smallest: seconds with a tiny model (`SMOKE_MODEL` is the one the
        CLI picks). Proves the bench works; its numbers mean nothing."""
        base = cls(
            settings=settings,
            new_tokens=3,
            warmup=1,
            pairs=2,
            transport_reps=1,
            seconds=1.0,
            interval_s=0.5,
            sizes=(64, 160),
            size_reps=1,
            streams=(1, 2),
            captions_per_stream=1,
            scale_cameras=4,
            scale_replicas=(1, 2),
            scale_captions=2,
            scale_fixed_ms=50.0,
            scale_per_item_ms=10.0,
            scale_max_batch=2,
        )
        return replace(base, **changes)  # type: ignore[arg-type]
