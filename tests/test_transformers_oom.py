"""A batch that runs out of GPU memory: the transformers backend hands the allocator's cache back,
the scheduler answers the frame with an error, and the next frame is captioned.

No GPU here: the real random-weight model runs on the CPU, its `generate` is made to raise the
error torch raises on a full GPU, and `torch.cuda.empty_cache` (what the backend's handler calls)
is replaced by a recorder. The handler itself runs unchanged.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from PIL import Image

from camcap.engine.events import Frame, FrameCaption, FrameError, TokenDelta
from camcap.engine.scheduler import Scheduler
from camcap.models.base import Task
from camcap.models.options import ModelOptions
from camcap.models.registry import create_captioner
from camcap.models.transformers import TransformersCaptioner
from camcap.server.messages import ErrorCode

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOKENS = 3
WAIT = 120.0  # seconds; a loaded CPU runs the tiny model slowly, a broken scheduler never answers


def test_an_out_of_memory_batch_releases_the_cuda_cache_and_the_next_frame_runs(model_cache: Path, monkeypatch):
    options = ModelOptions(cache_dir=model_cache, max_new_tokens=TOKENS, min_new_tokens=TOKENS)
    captioner = create_captioner("random:blip-tiny", options)
    assert isinstance(captioner, TransformersCaptioner)
    captioner.setup()
    model = captioner._loaded.model  # type: ignore[union-attr]
    real_generate = model.generate
    released: list[str] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: released.append("empty_cache"))

    def full_gpu(**kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    async def main() -> None:
        scheduler = Scheduler(captioner)
        scheduler.start()
        try:
            stream = scheduler.open_stream()
            monkeypatch.setattr(model, "generate", full_gpu)
            stream.submit(Frame(seq=0, image=Image.new("RGB", (64, 48), (200, 30, 30)), task=Task.caption()))
            error = await asyncio.wait_for(stream.next_event(), WAIT)
            assert isinstance(error, FrameError) and (error.seq, error.code) == (0, ErrorCode.MODEL_ERROR)
            assert "OutOfMemoryError" in error.message and "out of memory" in error.message
            assert released == ["empty_cache"], "the failed batch's memory was not handed back"

            monkeypatch.setattr(model, "generate", real_generate)  # the memory is free again
            stream.submit(Frame(seq=1, image=Image.new("RGB", (64, 48), (30, 30, 200)), task=Task.caption()))
            event = await asyncio.wait_for(stream.next_event(), WAIT)
            while isinstance(event, TokenDelta):
                event = await asyncio.wait_for(stream.next_event(), WAIT)
            assert isinstance(event, FrameCaption) and event.seq == 1
            assert event.timings.tokens == TOKENS
            assert released == ["empty_cache"], "only a failure releases the cache"
        finally:
            await asyncio.to_thread(scheduler.close)

    try:
        asyncio.run(main())
    finally:
        captioner.close()
