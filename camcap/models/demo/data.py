"""Training and evaluation items for `demo:shapes`: scenes through camcap's own frame path.

Every image goes the way a webcam frame goes in camcap: drawn at a camera size, shrunk to the
model's input size on its short side (`engine.frames.fit_short_side`, as the page and the server
do), and JPEG-encoded at about the page's quality. The model is trained on what it will see.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from PIL import Image

from camcap.engine.frames import fit_short_side
from camcap.models._prompts import chat_template
from camcap.models.demo import language
from camcap.models.demo.scenes import COLOURS, SHAPES, Truth, draw_scene, jpeg_round_trip, random_scene

PAGE_JPEG_QUALITY = 80  # the page's default (controls.js: quality 0.8)
# Camera frame sizes (width, height) training draws at: mostly 4:3 like webcams, some 16:9,
# square and portrait, and some larger than the input size so the shrink is part of training.
_CAMERA_SIZES = ((128, 96), (128, 96), (128, 96), (171, 96), (96, 96), (96, 128), (256, 192), (192, 108))
TASK_WEIGHTS: dict[str, float] = {
    "short": 0.10,
    "normal": 0.28,
    "long": 0.10,
    "yesno": 0.26,
    "colour": 0.08,
    "count": 0.08,
    "position": 0.10,
}


@dataclass(frozen=True)
class Item:
    image: Image.Image
    truth: Truth
    example: language.Example


def camcap_frame(image: Image.Image, input_size: int, quality: int | None = PAGE_JPEG_QUALITY) -> Image.Image:
    """What camcap hands the model for a camera frame: short side shrunk to `input_size`, JPEG'd."""
    image = fit_short_side(image, input_size)
    return image if quality is None else jpeg_round_trip(image, quality)


def training_items(rng: random.Random, input_size: int, count: int, *, per_scene: int = 2) -> list[Item]:
    """`count` items, `per_scene` questions about each drawn scene (drawing costs as much as a step)."""
    items: list[Item] = []
    while len(items) < count:
        spec = random_scene(rng)
        image, truth = draw_scene(spec, rng.choice(_CAMERA_SIZES))
        quality = rng.choice((None, rng.randint(60, 95), PAGE_JPEG_QUALITY))
        image = camcap_frame(image, input_size, quality)
        tasks = rng.choices(tuple(TASK_WEIGHTS), weights=tuple(TASK_WEIGHTS.values()), k=per_scene)
        items += [Item(image, truth, language.example(truth, task, rng)) for task in tasks]
    return items[:count]


class Encoder:
    """Turns items into training tensors: each distinct image once (`pixel_values`), and per item
    the decoder sequence (the prompt as the chat template renders it, left-padded as camcap pads
    batched prompts, then the answer and [SEP], right-padded), `scene` (which image it is about)
    and `targets` (the next token where it is part of the answer, else -100)."""

    def __init__(self, processor: Any, patch_size: int = 0, *, lead: int = 0, seed: int = 0) -> None:
        self.processor = processor
        self.patch_size = patch_size  # > 0: also label each patch with the shape over it
        # > 0: each row starts after 0..lead pads of its own instead of lining its answer up with the
        # batch's longest prompt. GPT-2 numbers positions from the first column, pads included, so a
        # model trained only with prompts right-aligned in mixed batches learns each prompt at one
        # offset and garbles it at another: camcap batches one kind of prompt (no pads) or mixed ones.
        self.lead = lead
        self._rng = random.Random(seed)
        self.tokenizer = processor.tokenizer
        self._prompts: dict[str, list[int]] = {}

    def prompt_ids(self, prompt: str) -> list[int]:
        ids = self._prompts.get(prompt)
        if ids is None:
            conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            text = self.processor.apply_chat_template(
                conversation, add_generation_prompt=True, chat_template=chat_template(self.processor)
            )
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            self._prompts[prompt] = ids
        return ids

    def answer_ids(self, answer: str) -> list[int]:
        return [*self.tokenizer(answer, add_special_tokens=False)["input_ids"], self.tokenizer.sep_token_id]

    def batch(self, items: list[Item]) -> dict[str, Any]:
        import torch

        images: dict[int, int] = {}
        for item in items:
            images.setdefault(id(item.image), len(images))
        firsts = {images[id(item.image)]: item.image for item in items}
        prompts = [self.prompt_ids(item.example.prompt) for item in items]
        answers = [self.answer_ids(item.example.answer) for item in items]
        p, a = max(map(len, prompts)), max(map(len, answers))
        # Where each row's prompt starts: right-aligned on the longest prompt, or `lead` jitter.
        starts = [self._rng.randint(0, self.lead) if self.lead else p - len(prompt) for prompt in prompts]
        ends = [start + len(prompt) for start, prompt in zip(starts, prompts, strict=True)]
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(items), max(ends) + a), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        targets = torch.full_like(ids, -100)
        for row, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
            start, p = starts[row], ends[row]
            ids[row, start:p] = torch.tensor(prompt)
            ids[row, p : p + len(answer)] = torch.tensor(answer)
            mask[row, start : p + len(answer)] = 1
            # Position t predicts token t + 1: the answer's tokens are predicted from p - 1 on.
            targets[row, p - 1 : p - 1 + len(answer)] = torch.tensor(answer)
        pixels = self.processor.image_processor([firsts[i] for i in range(len(firsts))], return_tensors="pt")
        truths = {images[id(item.image)]: item.truth for item in items}
        grid = self.processor.image_processor.size["height"] // self.patch_size if self.patch_size else 0
        return {
            "pixel_values": pixels["pixel_values"],
            "scene": torch.tensor([images[id(item.image)] for item in items]),
            "decoder_input_ids": ids,
            "decoder_attention_mask": mask,
            "targets": targets,
            "patch_labels": torch.stack([patch_labels(truths[i], grid) for i in range(len(truths))]) if grid else None,
        }


PATCH_CLASSES = 1 + len(COLOURS) * len(SHAPES)  # background, then every (colour, shape)
SIDE_CLASSES = 3  # left, centre, right third of the frame


def patch_labels(truth: Truth, grid: int) -> Any:
    """For a grid x grid patch image: which (colour, shape) covers each patch's centre (0: none),
    and which third of the frame the patch is in; shape (2, grid * grid).

    A training-only signal (an auxiliary head reads it off the encoder's patch tokens): it tells
    the encoder early what to look for and to keep where it is, long before the captions alone
    would. Boxes are the shapes' boxes before the camera's slight warp, so a label can be a
    patch off at an edge.
    """
    import torch

    labels = torch.zeros(grid * grid, dtype=torch.long)
    width, height = truth.size
    # Which third of the frame each patch is in: the sides the captions name.
    sides = torch.tensor([min(2, col * 3 // grid) for _ in range(grid) for col in range(grid)])
    colours, shapes = list(COLOURS), list(SHAPES)
    for obj in truth.objects:
        x0, y0, x1, y1 = obj.box
        value = 1 + colours.index(obj.colour) * len(shapes) + shapes.index(obj.shape)
        for row in range(grid):
            for col in range(grid):
                cx, cy = (col + 0.5) / grid * width, (row + 0.5) / grid * height
                if x0 <= cx <= x1 and y0 <= cy <= y1:
                    labels[row * grid + col] = value
    return torch.stack([labels, sides])


def forward(model: Any, batch: dict[str, Any], patch_head: Any = None) -> Any:
    """Decoder logits for a batch (and the patch head's logits if given): the encoder runs once per image."""
    encoded = model.encoder(pixel_values=batch["pixel_values"]).last_hidden_state
    patches = None if patch_head is None else patch_head(encoded[:, 1:])
    if getattr(model, "enc_to_dec_proj", None) is not None:
        encoded = model.enc_to_dec_proj(encoded)
    logits = model.decoder(
        input_ids=batch["decoder_input_ids"],
        attention_mask=batch["decoder_attention_mask"],
        encoder_hidden_states=encoded[batch["scene"]],
        use_cache=False,
    ).logits
    return logits if patch_head is None else (logits, patches)
