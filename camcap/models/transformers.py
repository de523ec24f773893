"""The transformers backend: any image-to-text model transformers runs natively.

`hf:<repo-or-folder>` and `random:<arch>` specs both end here. The model is loaded with
`AutoProcessor` and the Auto model classes; what differs between architectures is only how a
task becomes a prompt, which `camcap.models._prompts` decides (and documents) per architecture.

Generation runs on a worker thread so tokens can be yielded while the model works; closing the
iterator early sets an event that a stopping criterion checks after every decoding step.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camcap.errors import ModelNotAvailableError, UnknownModelSpecError
from camcap.models._prompts import PromptStyle, florence2_boxes, input_size, prompt_style
from camcap.models._quiet import quiet_load
from camcap.models._streaming import BatchStreamer, CancelCriteria, RowDone, RowText, StreamEvent
from camcap.models.base import Box, Caption, Captioner, Event, ModelInfo, Request, TaskKind, Timings, Token
from camcap.models.demo import is_demo_checkpoint
from camcap.models.device import choose_device
from camcap.models.hub import resolve_snapshot
from camcap.models.options import ModelOptions
from camcap.models.random_checkpoints import is_random_checkpoint
from camcap.models.registry import hub_cache_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, ProcessorMixin

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8
# Tried in order. transformers 5 maps BLIP, GIT, Florence-2 and Idefics3 to ImageTextToText;
# the others keep 4.x (Vision2Seq) and plain causal LMs loadable.
_AUTO_CLASSES = ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM")


@dataclass
class _Loaded:
    """What `setup()` produced; replaced as a whole, never mutated."""

    model: PreTrainedModel
    processor: ProcessorMixin
    style: PromptStyle
    stop_ids: frozenset[int]
    device: str
    dtype: Any  # torch.dtype


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_FINISHED = object()


class TransformersCaptioner(Captioner):
    """A captioner backed by a transformers model and its processor.

    `source` is a local folder or a Hub repository id. The constructor does no I/O; `setup()`
    finds the weights (cache first; downloads only if `options.allow_download`), loads them on
    the device `choose_device` picks, and works out the tasks and input size from the model.
    """

    def __init__(
        self,
        source: str | Path | Callable[[], Path],
        options: ModelOptions,
        *,
        name: str,
        random_weights: bool = False,
        revision: str | None = None,
    ) -> None:
        self.source = source
        self.options = options
        self.name = name
        self.random_weights = random_weights
        self.revision = revision
        self._loaded: _Loaded | None = None
        self._info: ModelInfo | None = None
        # One generation at a time: two would only compete for the same device.
        self._lock = threading.Lock()

    @property
    def model(self) -> PreTrainedModel | None:
        """The loaded transformers model (None before `setup()`), for tools and tests."""
        return None if self._loaded is None else self._loaded.model

    @property
    def processor(self) -> ProcessorMixin | None:
        """The loaded processor (None before `setup()`)."""
        return None if self._loaded is None else self._loaded.processor

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise RuntimeError(f"The model {self.name!r} is not loaded yet; call setup() first.")
        return self._info

    def setup(self) -> None:
        """Load the processor and the model onto the chosen device. Calling it again does nothing."""
        if self._loaded is not None:
            return
        import torch
        from transformers import AutoProcessor

        started = time.perf_counter()
        folder = self._resolve()
        choice = choose_device(self.options.device, self.options.dtype)
        logger.info("Loading %s on %s (%s): %s", self.name, choice.device, choice.dtype, choice.reason)
        dtype = getattr(torch, choice.dtype)
        with quiet_load():  # a local folder by now: no download bar to hide
            processor = AutoProcessor.from_pretrained(folder)
            model = _load_model(folder, dtype, self.name)
        model.to(torch.device(choice.device))  # type: ignore[arg-type]  # transformers mistypes `to`
        model.eval()
        if self.options.compile:
            compile_decoding(model, choice.device, self.name)

        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None:
            raise UnknownModelSpecError(
                f"{self.name}: {folder} has no tokenizer beside its image processor, so captions cannot be "
                "decoded. Save the processor with its tokenizer (processor.save_pretrained) into that folder."
            )
        style = prompt_style(model, processor)
        # Decoder-only models continue the prompt, so a batch's prompts must end together.
        tokenizer.padding_side = "left" if style.left_padding else "right"
        if model.generation_config.pad_token_id is None:
            pad = tokenizer.pad_token_id
            model.generation_config.pad_token_id = (
                pad if pad is not None else _first(model.generation_config.eos_token_id)
            )
        loaded = _Loaded(model, processor, style, _stop_ids(model), choice.device, dtype)
        self._info = ModelInfo(
            name=self.name,
            backend="transformers",
            device=choice.device,
            dtype=choice.dtype,
            tasks=style.tasks,
            input_size=input_size(processor.image_processor, self.options.detail),
            max_batch=self.options.max_batch or DEFAULT_MAX_BATCH,
            # A random checkpoint loaded as hf:<folder> is still random: say so.
            random_weights=self.random_weights or is_random_checkpoint(folder),
            revision=self.revision,
            demo=is_demo_checkpoint(folder),
        )
        self._loaded = loaded
        logger.info("Loaded %s from %s in %.1f s.", self.name, folder, time.perf_counter() - started)

    def generate(self, requests: Sequence[Request]) -> Iterator[Event]:
        """Caption a batch; see `Captioner.generate`. Every task is checked before any work."""
        info = self.info
        for _, task in requests:
            info.check_task(task)
        return self._generate(list(requests))

    def close(self) -> None:
        """Drop the model; its device memory is freed once nothing else refers to it."""
        loaded, self._loaded = self._loaded, None
        if loaded is not None and loaded.device.startswith("cuda"):
            import torch

            del loaded
            torch.cuda.empty_cache()

    # ----------------------------------------------------------------------------------------

    def _resolve(self) -> Path:
        if callable(self.source):  # a folder that must be built first (random: checkpoints)
            return self.source()
        source = Path(self.source).expanduser()
        if source.is_dir():
            return source
        text = str(self.source)
        if _looks_like_path(text):
            raise ModelNotAvailableError(
                f"The model folder {text} does not exist. Give the folder that holds config.json "
                "(e.g. one written by save_pretrained), or a Hub repository id such as hf:org/name."
            )
        return resolve_snapshot(
            text,
            revision=self.revision,
            cache_dir=hub_cache_dir(self.options),
            allow_download=self.options.allow_download,
            spec=self.name,
        )

    def _generate(self, requests: list[Request]) -> Iterator[Event]:
        if not requests:
            return
        loaded = self._loaded
        if loaded is None:
            raise RuntimeError(f"The model {self.name!r} was closed.")
        random_weights = self.info.random_weights
        start = time.perf_counter()
        inputs = self._preprocess(loaded, requests)
        preprocess_ms = _ms(start, time.perf_counter())

        events: queue.SimpleQueue[StreamEvent | _Failed | object] = queue.SimpleQueue()
        cancel = threading.Event()
        streamer = BatchStreamer(
            lambda ids: loaded.processor.tokenizer.decode(ids, skip_special_tokens=True),
            len(requests),
            loaded.stop_ids,
            events.put,
        )
        started: list[float] = []
        worker = threading.Thread(
            target=self._work,
            args=(loaded, inputs, streamer, cancel, events, started),
            name=f"camcap-generate-{self.name}",
            daemon=True,
        )
        worker.start()
        # Detection rows answer in location tokens, not words: nothing is streamed for them, and
        # their final text says what was found (as Moondream's does), with the boxes beside it.
        detecting = {row for row, (_, task) in enumerate(requests) if task.kind is TaskKind.DETECT}
        try:
            remaining = len(requests)
            while remaining:
                event = events.get()
                if isinstance(event, RowText):
                    if event.row not in detecting:
                        yield Token(event.row, event.text)
                elif isinstance(event, RowDone):
                    remaining -= 1
                    first = streamer.first_token_at or event.finished_at
                    task = requests[event.row][1]
                    text = event.text
                    boxes: tuple[Box, ...] = ()
                    if event.row in detecting:
                        boxes = self._boxes(loaded, event.ids, task.target or "")
                        text = f"{len(boxes)} × {(task.target or '').strip()}"
                        yield Token(event.row, text)
                    yield Caption(
                        index=event.row,
                        text=text,
                        task=task,
                        boxes=boxes,
                        timings=Timings(
                            preprocess_ms=preprocess_ms,
                            first_token_ms=_ms(started[0], first),
                            decode_ms=_ms(first, event.finished_at),
                            total_ms=_ms(start, time.perf_counter()),
                            tokens=event.tokens,
                        ),
                        extras={"random_weights": True} if random_weights else {},
                    )
                elif isinstance(event, _Failed):
                    raise event.error
                elif event is _FINISHED:
                    raise RuntimeError(f"{self.name}: generation ended with {remaining} item(s) unfinished; a bug.")
        finally:
            # Normal end, error, or the consumer closed us early (GeneratorExit): in every case
            # the worker must stop and be gone before we return, so nothing outlives the call.
            cancel.set()
            worker.join()

    def _work(
        self,
        loaded: _Loaded,
        inputs: Any,
        streamer: BatchStreamer,
        cancel: threading.Event,
        events: queue.SimpleQueue[StreamEvent | _Failed | object],
        started: list[float],
    ) -> None:
        import torch
        from transformers import StoppingCriteriaList

        options = self.options
        kwargs: dict[str, Any] = dict(
            max_new_tokens=options.max_new_tokens,
            # Greedy: captions are reproducible, and streaming does not work with beam search.
            do_sample=False,
            num_beams=1,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([CancelCriteria(cancel)]),
        )
        if options.min_new_tokens is not None:
            kwargs["min_new_tokens"] = options.min_new_tokens
        try:
            with self._lock, torch.inference_mode():
                started.append(time.perf_counter())
                if not cancel.is_set():
                    loaded.model.generate(**inputs, **kwargs)  # type: ignore[operator]
                if not streamer.finished:
                    streamer.end()  # cancelled before the first step: close every row
        except BaseException as exc:  # handed to the consumer thread, which raises it
            if isinstance(exc, torch.OutOfMemoryError):
                # The failed batch's activations sit in the allocator's cache: hand them back so
                # the next frame can run instead of failing the same way.
                torch.cuda.empty_cache()
            events.put(_Failed(exc))
        else:
            events.put(_FINISHED)

    @staticmethod
    def _boxes(loaded: _Loaded, ids: Sequence[int], target: str) -> tuple[Box, ...]:
        """A detection row's boxes: its ids decoded with the location tokens kept."""
        raw = loaded.processor.tokenizer.decode(list(ids), skip_special_tokens=False)
        return florence2_boxes(raw, target)

    def _preprocess(self, loaded: _Loaded, requests: list[Request]) -> Any:
        images = [image if image.mode == "RGB" else image.convert("RGB") for image, _ in requests]
        tasks = [task for _, task in requests]
        inputs = loaded.style.encode(loaded.processor, images, tasks, detail=self.options.detail)
        return inputs.to(device=loaded.device, dtype=loaded.dtype)


def compile_decoding(model: PreTrainedModel, device: str, name: str) -> bool:
    """`--compile`, done the way transformers compiles generation: with a static KV cache,
    `generate()` runs the decoding steps through `torch.compile` (CUDA graphs). Each new batch
    size compiles once, on its first caption. Returns whether it was turned on; where it cannot
    be (not CUDA, or a decoder without static-cache support), it says why and runs uncompiled.
    """
    from transformers import CompileConfig, PreTrainedModel

    if not device.startswith("cuda"):
        logger.warning("--compile: %s runs uncompiled on %s (the transformers backend compiles on CUDA).", name, device)
        return False
    # Multimodal wrappers (Idefics3, LLaVA...) leave the flag unset while their decoder (Llama,
    # Phi...) sets it: any part that can run compiled with a static cache will do.
    parts = [part for part in model.modules() if isinstance(part, PreTrainedModel)]
    if not any(getattr(part, "_can_compile_fullgraph", False) for part in parts):
        logger.warning("--compile: %s's decoder has no static-cache support; running uncompiled.", name)
        return False
    model.generation_config.cache_implementation = "static"
    # fullgraph=False: a wrapper's image-merging code may break the graph; the decoder still compiles.
    model.generation_config.compile_config = CompileConfig(fullgraph=False)
    logger.info("--compile: %s decodes with a static cache through torch.compile.", name)
    return True


def _load_model(folder: Path, dtype: Any, name: str) -> PreTrainedModel:
    import transformers

    errors = []
    for class_name in _AUTO_CLASSES:
        auto_class = getattr(transformers, class_name, None)
        if auto_class is None:
            continue  # not in this transformers version
        try:
            return auto_class.from_pretrained(folder, dtype=dtype)
        except ValueError as exc:
            if "Unrecognized configuration class" not in str(exc):
                raise
            errors.append(class_name)
    raise UnknownModelSpecError(
        f"{name}: transformers {transformers.__version__} has no image-to-text model class for the checkpoint "
        f"in {folder} (tried {', '.join(errors)}). camcap runs models that transformers supports natively "
        "(e.g. BLIP, GIT, Florence-2, SmolVLM/Idefics3); remote-code models are not loaded."
    )


def _stop_ids(model: PreTrainedModel) -> frozenset[int]:
    """The ids that end a caption: the generation config's eos, plus BLIP's [SEP] (BLIP's generate
    passes sep as eos to its decoder, whatever the config says)."""
    ids = set(_as_list(model.generation_config.eos_token_id))
    text_config = getattr(model.config, "text_config", None)
    if model.config.model_type == "blip" and text_config is not None:
        ids.update(_as_list(text_config.sep_token_id))
    return frozenset(ids)


def _as_list(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)


def _first(value: int | list[int] | None) -> int | None:
    values = _as_list(value)
    return values[0] if values else None


def _looks_like_path(text: str) -> bool:
    """Repository ids are `name` or `org/name`; anything else that is not a folder is a typo'd path."""
    return text.startswith(("/", "./", "../", "~", "\\")) or text.count("/") > 1 or ":" in text


def _ms(start: float, end: float) -> float:
    return max(0.0, (end - start) * 1000)
