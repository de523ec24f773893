"""A camera on the client's clock, and the ways a client can feed it to `/v1/stream`.

- `paced`: the page's live mode: grab the newest picture, send it, wait for its answer
  (caption, unchanged or error), repeat;
- `push`: send every camera frame at the camera's rate, whatever the server does;
- `every`: one frame every N seconds.

Each returns a `LiveRun`: when every frame was captured and what became of it. Ages count from
the camera's capture (a picture the page grabs is up to one camera frame old already).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from camcap.bench._client import Reply, StreamClient, wall_ms
from camcap.bench._context import BenchContext

_STALENESS_STEP_S = 0.01


class Camera:
    """Frame k is captured at `start + k / fps` and shows `picture(k)`."""

    def __init__(self, fps: float, picture: Callable[[int], Image.Image]) -> None:
        self.fps = fps
        self.picture = picture
        self.start = time.perf_counter()

    def at(self, index: int) -> float:
        return self.start + index / self.fps

    def latest(self) -> int:
        return int((time.perf_counter() - self.start) * self.fps)


@dataclass
class LiveRun:
    """One client's run: what it sent, when each frame was captured, and every answer."""

    start: float
    end: float = 0.0
    sent: int = 0
    captions: list[tuple[float, float]] = field(default_factory=list)  # (captured, caption final), perf s
    kinds: Counter[str] = field(default_factory=Counter)  # answers by kind: caption, unchanged, error:<code>...
    inference_ms: list[float] = field(default_factory=list)  # the server's, per caption
    model_ms: list[float] = field(default_factory=list)  # direct model calls (in-process designs)
    replies: list[Reply] = field(default_factory=list)
    captured: dict[int, float] = field(default_factory=dict)  # seq -> capture time
    backlog: int = 0  # frames still waiting when the run ended (queue design)

    def collect(self, client: StreamClient) -> None:
        """File every answer the client received."""
        self.replies = sorted(client.replies(), key=lambda reply: reply.seq)
        for reply in self.replies:
            kind = reply.kind or "unanswered"
            if kind == "error":
                kind = f"error:{reply.event.get('code')}"
            self.kinds[kind] += 1
            if reply.captioned and reply.done is not None:
                self.captions.append((self.captured[reply.seq], reply.done))
                self.inference_ms.append(reply.server_ms("inference_ms") or 0.0)

    def ages_ms(self) -> list[float]:
        return [(done - captured) * 1000 for captured, done in self.captions]

    def rate(self) -> float:
        """Captions per second over the run."""
        return len(self.captions) / (self.end - self.start) if self.end > self.start else 0.0

    def staleness_ms(self) -> list[float]:
        """The displayed caption's age (ms), sampled every 10 ms from the first caption to the end
        of the run: a caption stays up until the next one replaces it."""
        shown = sorted(self.captions, key=lambda caption: caption[1])
        if not shown:
            return []
        finals = [done for _, done in shown]
        samples = []
        moment = finals[0]
        while moment <= self.end:
            captured, _ = shown[bisect.bisect_right(finals, moment) - 1]
            samples.append((moment - captured) * 1000)
            moment += _STALENESS_STEP_S
        return samples


async def paced(context: BenchContext, url: str, camera: Camera, seconds: float) -> LiveRun:
    """The page's live mode: the next frame is grabbed when the previous one is answered."""
    client = await StreamClient.open(url)
    run = LiveRun(camera.start)
    deadline = camera.start + seconds
    try:
        while time.perf_counter() < deadline:
            index = camera.latest()
            run.captured[run.sent] = camera.at(index)
            jpeg = context.encode(camera.picture(index))
            await client.send(run.sent, jpeg, captured_at=_wall(camera.at(index)))
            await client.reply(run.sent)
            run.sent += 1
    finally:
        await client.close()
    run.end = time.perf_counter()
    run.collect(client)
    return run


async def push(context: BenchContext, url: str, camera: Camera, seconds: float, jpegs: list[bytes]) -> LiveRun:
    """Every camera frame is sent at the camera's rate: `jpegs` (see `BenchContext.footage`),
    encoded beforehand, since encoding 30 frames a second here would take CPU from the model
    that a browser, a process of its own, would not take."""
    client = await StreamClient.open(url)
    run = LiveRun(camera.start)
    count = max(1, int(seconds * camera.fps))
    try:
        for index in range(count):
            await asyncio.sleep(max(0.0, camera.at(index) - time.perf_counter()))
            run.captured[index] = camera.at(index)
            await client.send(index, jpegs[index % len(jpegs)], captured_at=_wall(camera.at(index)))
        run.sent = count
        await client.reply(count - 1)  # the last frame is always answered: nothing replaces it
    finally:
        await client.close()
    run.end = time.perf_counter()
    run.collect(client)
    return run


async def every(context: BenchContext, url: str, camera: Camera, seconds: float, interval: float) -> LiveRun:
    """One frame every `interval` seconds, whatever the model does."""
    client = await StreamClient.open(url)
    run = LiveRun(camera.start)
    try:
        while run.sent * interval < seconds:
            await asyncio.sleep(max(0.0, camera.start + run.sent * interval - time.perf_counter()))
            index = camera.latest()
            run.captured[run.sent] = camera.at(index)
            jpeg = context.encode(camera.picture(index))
            await client.send(run.sent, jpeg, captured_at=_wall(camera.at(index)))
            run.sent += 1
        await client.reply(run.sent - 1)
    finally:
        await client.close()
    run.end = time.perf_counter()
    run.collect(client)
    return run


def _wall(moment: float) -> float:
    """A perf_counter() moment on the wall clock, in ms (the header's captured_at)."""
    return wall_ms() - (time.perf_counter() - moment) * 1000
