"""Frame size: what a bigger frame costs, to justify sending frames at the model's input size.

For each short side S (4:3 frames of the same synthetic scene):

- model at S: `generate` on an S-sized picture as is, no downscale first: what the model's own
  processor makes of a bigger or smaller frame (resize, or tiles: SmolVLM splits a frame into
  many tiles when splitting is on, which `detail="high"` asks for);
- full path at S: the client sends the S-sized JPEG without resizing it; the server decodes it
  and downscales it to the model's input size: what the extra bytes cost on the way.

`details` adds rows for other `detail` settings, each on its own copy of the model (loaded for
this scenario, then closed), model times only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from camcap.bench._client import StreamClient, wall_ms
from camcap.bench._context import BenchContext
from camcap.bench._frames import Scene, encode_jpeg
from camcap.bench._stats import median, summary
from camcap.bench.report import ScenarioResult, Table
from camcap.models import random_checkpoints
from camcap.models.base import Captioner
from camcap.models.options import ModelOptions
from camcap.models.registry import camcap_cache_dir, create_captioner


@dataclass
class _Size:
    """Timings (ms) for one frame size."""

    kilobytes: float  # the JPEG sent, at this size
    model: list[float] = field(default_factory=list)
    first_token: list[float] = field(default_factory=list)
    full: list[float] = field(default_factory=list)
    inference: list[float] = field(default_factory=list)  # the server's, for each full-path frame
    decode: list[float] = field(default_factory=list)

    def path_overhead(self) -> list[float]:
        """Full path - the server's inference for the same frame: what the frame's size costs on
        the way, free of the model's run-to-run spread."""
        return [full - inference for full, inference in zip(self.full, self.inference, strict=True)]

    def row(self, detail: str, size: int) -> list[object]:
        overhead = median(self.path_overhead()) if self.full else None
        decode = median(self.decode) if self.decode else None
        return [detail, size, self.kilobytes, median(self.model), median(self.first_token), overhead, decode]

    def data(self) -> dict[str, object]:
        return {
            "jpeg_kB": self.kilobytes,
            "model_ms": summary(self.model),
            "first_token_ms": summary(self.first_token),
            "full_path_ms": summary(self.full),
            "path_overhead_ms": summary(self.path_overhead()),
            "server_decode_ms": summary(self.decode),
        }


def run(context: BenchContext) -> ScenarioResult:
    o = context.options
    info = context.info
    context.progress(f"  frame_size: short sides {', '.join(map(str, o.sizes))} px, {o.size_reps} captions each")
    # A different moment of the scene for each caption: the same picture twice in a row would be
    # answered `unchanged` by change gating, not captioned.
    pictures = {
        size: [Scene((round(size * 4 / 3), size), seed=o.seed).frame(7 + 5 * rep) for rep in range(o.size_reps)]
        for size in o.sizes
    }
    table = Table(
        ["detail", "short side px", "JPEG kB", "model ms", "first token ms", "path overhead ms", "server decode ms"]
    )
    main_detail = context.settings.detail
    with context.server() as server:
        sizes = asyncio.run(_with_server(context, server.url("/v1/stream"), pictures))
    table.rows += [result.row(main_detail, size) for size, result in sizes.items()]
    data: dict[str, object] = {
        main_detail: {"input_size": info.input_size, "sizes": {str(k): v.data() for k, v in sizes.items()}}
    }
    notes: list[str] = []
    for detail in o.details:
        if detail == main_detail:
            continue
        context.progress(f"  frame_size: loading a second copy of the model with detail={detail}")
        options = replace(context.settings.model_options(), detail=detail)
        with contextlib.ExitStack() as stack:
            spec = context.settings.model
            released = _as_released(spec, options, stack) if detail == "high" else None
            if released is not None:
                spec = f"hf:{released}"
                notes.append(
                    f"detail high on {context.settings.model}: a copy of the checkpoint with image splitting on, "
                    "as SmolVLM's released processors ship it (the random build turns it off)."
                )
            other = stack.enter_context(create_captioner(spec, options))
            context.warm_up(other)
            sizes = {size: _model_only(context, other, series) for size, series in pictures.items()}
            data[detail] = {"input_size": other.info.input_size, "sizes": {str(k): v.data() for k, v in sizes.items()}}
        table.rows += [result.row(detail, size) for size, result in sizes.items()]
    notes += [
        f"The model's input size is {info.input_size} px (short side): the page sends frames that size, and the "
        "server downscales larger uploads to it before the model.",
        "'model ms' feeds the frame to the model as is (medians). 'path overhead ms' sends it as is, lets the "
        "server downscale it, and subtracts the server's inference time for that frame: the cost of the bytes. "
        "First token time is mostly the vision encoder: it grows with the pixels (or tiles) the model's "
        "processor makes of the frame.",
    ]
    return ScenarioResult("frame_size", "Frame size: latency vs the frame sent", table, data, [], notes)


async def _with_server(context: BenchContext, url: str, pictures: dict[int, list[Image.Image]]) -> dict[int, _Size]:
    """Model alone and full path, alternating, for every size."""
    results: dict[int, _Size] = {}
    client = await StreamClient.open(url)
    try:
        seq = 0
        for size, series in pictures.items():
            result = results[size] = _Size(round(len(encode_jpeg(series[0], None)) / 1024, 1))
            for rep, picture in enumerate(series):
                if rep % 2 == 0:
                    await asyncio.to_thread(_time_model, context, context.captioner, picture, result)
                seq += 1
                start = time.perf_counter()
                await client.send(seq, encode_jpeg(picture, None), captured_at=wall_ms())  # as is, whatever its size
                reply = await client.reply(seq)
                if not reply.captioned or reply.done is None:
                    raise RuntimeError(f"Frame {seq} was not captioned: {reply.kind} {reply.event}")
                result.full.append((reply.done - start) * 1000)
                result.inference.append(reply.server_ms("inference_ms") or 0.0)
                result.decode.append(reply.server_ms("image_decode_ms") or 0.0)
                if rep % 2 == 1:
                    await asyncio.to_thread(_time_model, context, context.captioner, picture, result)
    finally:
        await client.close()
    return results


def _as_released(spec: str, options: ModelOptions, stack: contextlib.ExitStack) -> Path | None:
    """For a random SmolVLM/Idefics3 checkpoint, a temporary copy whose processor splits images
    as the released checkpoints' do; None for any other model (its own settings are used).

    The random builds turn splitting off (it is what the page's default detail does anyway), so
    without this, detail high would time the same single 512 px pass as detail low.
    """
    if not spec.startswith("random:"):
        return None
    folder = random_checkpoints.ensure_checkpoint(spec[len("random:") :], camcap_cache_dir(options) / "random")
    config_path = folder / "processor_config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return None
    image = config.get("image_processor", {})
    if image.get("do_image_splitting") is not False:
        return None  # not a splitting processor, or splitting already on
    copy = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="camcap-bench-split-")))
    for item in folder.iterdir():
        if item.name != config_path.name:
            (copy / item.name).symlink_to(item)  # the weights are not copied
    image["do_image_splitting"] = True
    (copy / config_path.name).write_text(json.dumps(config, indent=2))
    return copy


def _model_only(context: BenchContext, captioner: Captioner, series: list[Image.Image]) -> _Size:
    result = _Size(round(len(encode_jpeg(series[0], None)) / 1024, 1))
    for picture in series:
        _time_model(context, captioner, picture, result)
    return result


def _time_model(context: BenchContext, captioner: Captioner, picture: Image.Image, result: _Size) -> None:
    elapsed, caption = context.direct(picture, captioner)
    result.model.append(elapsed)
    result.first_token.append(caption.timings.first_token_ms)
