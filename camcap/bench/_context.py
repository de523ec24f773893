"""What every scenario shares: the loaded model, the synthetic camera, and how to time the model.

The captioner is loaded once per run; the direct-model baseline and every server the bench
starts use that same object, so "model time" and "full path" are the same weights, same
threads, same process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from camcap.bench._frames import Scene, encode_jpeg
from camcap.bench._server import BenchServer
from camcap.bench.options import BenchOptions
from camcap.config import Settings
from camcap.engine.frames import decode_image
from camcap.models.base import Caption, Captioner, ModelInfo, Task

CAMERA_FRAMES = 48  # distinct pictures in the camera's loop (1.6 s at 30 fps)


@dataclass
class BenchContext:
    options: BenchOptions
    settings: Settings  # options.model_settings: fixed caption length
    captioner: Captioner
    progress: Callable[[str], None] = print
    task: Task = field(default_factory=Task.caption)
    camera: list[Image.Image] = field(default_factory=list)  # 640x480 pictures of a moving scene

    def __post_init__(self) -> None:
        if not self.camera:
            scene = Scene(seed=self.options.seed)
            self.camera = [scene.frame(index) for index in range(CAMERA_FRAMES)]
        self._camera_jpegs: list[bytes] = []

    @property
    def camera_jpegs(self) -> list[bytes]:
        """The camera's pictures encoded as the page would, once, for clients whose own encoding
        should not be timed (it happens in another process in real use)."""
        if not self._camera_jpegs:
            self._camera_jpegs = [self.encode(picture) for picture in self.camera]
        return self._camera_jpegs

    @property
    def info(self) -> ModelInfo:
        return self.captioner.info

    def picture(self, index: int) -> Image.Image:
        return self.camera[index % len(self.camera)]

    def encode(self, picture: Image.Image) -> bytes:
        """The page's encode: short side to the model's input size, JPEG at quality 0.8."""
        return encode_jpeg(picture, self.info.input_size)

    def footage(self, seconds: float) -> list[bytes]:
        """`seconds` of camera frames, all different and encoded as the page would: for clients that
        send every frame (the camera's loop of CAMERA_FRAMES pictures would repeat one, and change
        gating would rightly answer the repeat `unchanged`)."""
        scene = Scene(seed=self.options.seed)
        return [self.encode(scene.frame(index)) for index in range(max(1, int(seconds * self.options.fps)))]

    def decoded(self, jpeg: bytes) -> Image.Image:
        """The pixels the server hands the model for these bytes (same decode, same downscale)."""
        return decode_image(jpeg, max_short_side=self.info.input_size).image

    def server(self, *, deflate: bool = False, **changes: object) -> BenchServer:
        """A fresh app around the shared model, with `changes` applied to the run's settings
        (`deflate`: see `BenchServer`)."""
        # Room for every client a scenario opens at once, plus a few whose connections are still
        # closing from the previous run: the bench measures the model, not the stream limit.
        room = max(self.settings.max_streams, max(self.options.streams) + 4)
        settings = self.settings.model_copy(update={"max_streams": room, **changes})
        return BenchServer(self.captioner, settings, deflate=deflate)

    def direct(self, image: Image.Image, captioner: Captioner | None = None) -> tuple[float, Caption]:
        """One caption straight from the model: (wall ms, the Caption). Blocking."""
        elapsed, (caption,) = self.direct_batch([image], captioner)
        return elapsed, caption

    def direct_batch(
        self, images: list[Image.Image], captioner: Captioner | None = None
    ) -> tuple[float, list[Caption]]:
        """`images` as one batch straight from the model: (wall ms, their Captions in order). Blocking."""
        captioner = captioner or self.captioner
        start = time.perf_counter()
        captions = [
            event
            for event in captioner.generate([(image, self.task) for image in images])
            if isinstance(event, Caption)
        ]
        elapsed = (time.perf_counter() - start) * 1000.0
        if len(captions) != len(images):
            raise RuntimeError(
                f"{captioner.info.name} gave {len(captions)} captions for {len(images)} images; a bug in its backend."
            )
        return elapsed, sorted(captions, key=lambda caption: caption.index)

    def warm_up(self, captioner: Captioner | None = None) -> None:
        """Untimed captions: the first calls of a fresh model allocate and are slower."""
        image = self.decoded(self.encode(self.picture(0)))
        for _ in range(self.options.warmup):
            self.direct(image, captioner)
