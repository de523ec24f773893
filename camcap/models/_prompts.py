"""How a task becomes model input, per architecture, and which tasks each one honestly supports.

BLIP (captioning checkpoints)  CAPTION. Its text input is a caption *prefix* ("a picture of"),
    not a question; BLIP's VQA is a different head (BlipForQuestionAnswering) we do not load.
    Lengths all give the model's one caption style.
GIT                            CAPTION, QUERY. GIT's VQA checkpoints (git-base-vqav2,
    git-base-textvqa) are this same class, prompted with "[CLS] question"; a captioning
    checkpoint accepts a question too, but answers it poorly. Lengths give the same caption.
Florence-2                     CAPTION: short/normal/long are its <CAPTION>, <DETAILED_CAPTION>
    and <MORE_DETAILED_CAPTION> tasks. DETECT: its <OD> task (object detection), keeping the
    objects whose category names the target. Its prompts are a fixed set of task tokens; the
    released checkpoints have no free-question task, so no QUERY.
Chat models (a chat template: SmolVLM, Idefics3, ...)  CAPTION (an instruction per length),
    QUERY (the question as the user turn).
Other encoder-decoders (e.g. VisionEncoderDecoder)     CAPTION from the image alone; with a chat
    template on the tokenizer (camcap's own `demo:shapes`), CAPTION and QUERY: the rendered
    prompt is the decoder's start and the answer follows it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from camcap.errors import UnknownModelSpecError
from camcap.models.base import Box, CaptionLength, Task, TaskKind

if TYPE_CHECKING:
    from PIL import Image
    from transformers import BatchFeature, PreTrainedModel, ProcessorMixin

CHAT_INSTRUCTIONS: dict[CaptionLength, str] = {
    "short": "Describe this image in a few words.",
    "normal": "Describe this image in one sentence.",
    "long": "Describe this image in detail.",
}
FLORENCE2_TASKS: dict[CaptionLength, str] = {
    "short": "<CAPTION>",
    "normal": "<DETAILED_CAPTION>",
    "long": "<MORE_DETAILED_CAPTION>",
}
FLORENCE2_DETECT = "<OD>"
CAPTION_ONLY = (TaskKind.CAPTION,)
CAPTION_AND_QUERY = (TaskKind.CAPTION, TaskKind.QUERY)
CAPTION_AND_DETECT = (TaskKind.CAPTION, TaskKind.DETECT)
# Florence-2 writes each object as its category name then four location tokens, x1 y1 x2 y2, each
# a bin of 1/1000 of the image's width or height: "car<loc_52><loc_335><loc_900><loc_780>".
_FLORENCE2_OBJECT = re.compile(r"([^<>]*?)\s*<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>")
_FLORENCE2_BINS = 1000


@dataclass(frozen=True)
class PromptStyle:
    """One way of turning (images, tasks) into a processor call."""

    kind: str  # "image", "git", "florence2", "chat", "decoder-chat"
    tasks: tuple[TaskKind, ...]
    left_padding: bool  # decoder-only models pad prompts on the left

    def encode(
        self, processor: ProcessorMixin, images: Sequence[Image.Image], tasks: Sequence[Task], *, detail: str
    ) -> BatchFeature:
        """Build the model inputs (as torch tensors) for one batch."""
        images = list(images)
        if self.kind == "image":
            return processor(images=images, return_tensors="pt")
        if self.kind == "git":
            # GIT reads "[CLS] question" after the image tokens; a caption is "[CLS]" alone.
            cls = processor.tokenizer.cls_token
            texts = [f"{cls} {task.question}" if task.kind is TaskKind.QUERY else cls for task in tasks]
            return processor(images=images, text=texts, add_special_tokens=False, padding=True, return_tensors="pt")
        if self.kind == "florence2":
            texts = [
                FLORENCE2_DETECT if task.kind is TaskKind.DETECT else FLORENCE2_TASKS[task.length] for task in tasks
            ]
            return processor(images=images, text=texts, padding=True, return_tensors="pt")
        if self.kind == "decoder-chat":
            # The encoder sees the image; the decoder continues the rendered prompt.
            from transformers import BatchFeature

            template = chat_template(processor)
            texts = [
                processor.apply_chat_template(_conversation(task), add_generation_prompt=True, chat_template=template)
                for task in tasks
            ]
            prompts = processor.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
            pixels = processor.image_processor(images, return_tensors="pt")
            return BatchFeature(
                {
                    "pixel_values": pixels["pixel_values"],
                    "decoder_input_ids": prompts["input_ids"],
                    "decoder_attention_mask": prompts["attention_mask"],
                }
            )
        if self.kind == "chat":
            template = chat_template(processor)
            texts = [
                processor.apply_chat_template(_conversation(task), add_generation_prompt=True, chat_template=template)
                for task in tasks
            ]
            kwargs: dict[str, Any] = {}
            splitting = getattr(processor.image_processor, "do_image_splitting", None)
            if splitting is not None:  # Idefics3 / SmolVLM
                if detail == "low" and splitting:
                    kwargs["do_image_splitting"] = False  # one pass over one image, not 13 tiles
                    splitting = False
                if not splitting:
                    # Without tiles these processors still first scale the frame to `size` (a 2048 px
                    # long side, meant for tiling), then squash it to one `max_image_size` square.
                    # The first resize only costs time (~15x the rest of the preprocessing, and the
                    # picture resampled twice): skip it, keep the square.
                    kwargs["do_resize"] = False
            return processor(images=images, text=texts, padding=True, return_tensors="pt", **kwargs)
        raise AssertionError(f"unknown prompt style {self.kind!r}")


def prompt_style(model: PreTrainedModel, processor: ProcessorMixin) -> PromptStyle:
    """Choose the prompt style for a loaded model (see the module docstring for why each)."""
    model_type = model.config.model_type
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    if model_type == "blip":
        return PromptStyle("image", CAPTION_ONLY, left_padding=False)
    if model_type == "git":
        return PromptStyle("git", CAPTION_AND_QUERY, left_padding=True)
    if model_type == "florence2":
        return PromptStyle("florence2", CAPTION_AND_DETECT, left_padding=False)
    if getattr(processor, "chat_template", None):
        return PromptStyle("chat", CAPTION_AND_QUERY, left_padding=not encoder_decoder)
    if encoder_decoder and chat_template(processor):
        # A VisionEncoderDecoder whose tokenizer has a chat template (camcap's demo:shapes) was
        # trained to continue its prompts in the decoder; left padding keeps prompts' ends aligned.
        return PromptStyle("decoder-chat", CAPTION_AND_QUERY, left_padding=True)
    if encoder_decoder:
        return PromptStyle("image", CAPTION_ONLY, left_padding=False)
    raise UnknownModelSpecError(
        f"camcap does not know how to prompt a {model_type!r} model: it has no chat template and is not "
        "one of BLIP, GIT, Florence-2. Use a chat (instruct) checkpoint, or one of those architectures."
    )


def chat_template(processor: ProcessorMixin) -> str | None:
    """The processor's chat template, or its tokenizer's: some processor classes (TrOCRProcessor,
    GitProcessor) drop one of their own when loaded, so demo:shapes keeps it with its tokenizer."""
    template = getattr(processor, "chat_template", None)
    if template is None:
        template = getattr(getattr(processor, "tokenizer", None), "chat_template", None)
    return template if isinstance(template, str) else None


def input_size(image_processor: Any, detail: str = "low") -> int:
    """The short side (px) the image processor resizes a frame to: sending more is wasted."""
    splitting = getattr(image_processor, "do_image_splitting", None)
    tile = _edge(getattr(image_processor, "max_image_size", None), "longest_edge")
    if splitting is not None and tile:
        # Idefics3 / SmolVLM: without splitting the frame becomes one tile-sized square; with it,
        # the frame is upscaled to `size.longest_edge` and cut into tiles.
        if splitting and detail == "high":
            return _edge(image_processor.size, "longest_edge") or tile
        return tile
    size = getattr(image_processor, "size", None)
    shortest = _edge(size, "shortest_edge")
    if shortest:
        return shortest
    height, width = _edge(size, "height"), _edge(size, "width")
    if height and width:
        return min(height, width)
    longest = _edge(size, "longest_edge")
    if longest:
        return longest
    raise UnknownModelSpecError(f"Cannot tell the input size of {type(image_processor).__name__} (size={size!r}).")


def _edge(size: Any, key: str) -> int | None:
    """Read `key` from a size that may be a dict or transformers' SizeDict."""
    if size is None:
        return None
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value else None


def _conversation(task: Task) -> Any:
    """One user turn: the image, then the instruction or the question."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": _instruction(task)}]}]


def _instruction(task: Task) -> str:
    if task.kind is TaskKind.QUERY:
        return task.question or ""
    return CHAT_INSTRUCTIONS[task.length]


def florence2_boxes(text: str, target: str) -> tuple[Box, ...]:
    """The boxes of an <OD> answer (decoded with its special tokens) whose category is `target`.

    A category matches when it names the target, ignoring case and a plural "s" ("person" finds
    "person" and "persons"). Coordinates are each bin's centre, as Florence-2's processor
    dequantises them, normalised to 0..1.
    """
    wanted = _singular(target)
    boxes = []
    for match in _FLORENCE2_OBJECT.finditer(text.replace("<s>", "").replace("</s>", "").replace("<pad>", "")):
        if _singular(match.group(1)) != wanted:
            continue
        x1, y1, x2, y2 = ((int(value) + 0.5) / _FLORENCE2_BINS for value in match.groups()[1:])
        boxes.append(Box(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)))
    return tuple(boxes)


def _singular(name: str) -> str:
    words = name.strip().lower()
    return words[:-1] if words.endswith("s") and not words.endswith("ss") else words
