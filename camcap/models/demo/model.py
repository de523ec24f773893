"""The architecture of `demo:shapes` and how its checkpoint folder is written.

A VisionEncoderDecoder: a small ViT encodes the frame, a small GPT-2 with cross-attention writes
the answer after a prompt (a caption instruction or a question). It trains several times faster
here than GIT of the same size (measured: GIT stayed blind for 1,100 steps where this learns
colours in a few hundred), and its encoder runs once per frame however many prompts follow.
The tokenizer carries a chat template, so camcap prompts it in the chat style
(`_prompts.prompt_style`): caption lengths and queries reach the model as trained.

The image processor squashes the frame to a square without cropping: a centre crop would cut the
left and right sides off a 4:3 frame, and "left" and "right" are half of what the model says.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camcap.models.demo import MARKER, language

if TYPE_CHECKING:
    from transformers import TrOCRProcessor, VisionEncoderDecoderModel


@dataclass(frozen=True)
class Shape:
    """The sizes that matter, so the training script can name them on its command line."""

    image_size: int = 96
    patch_size: int = 8  # a 12 x 12 grid: a small shape spans several patches, so its outline shows
    vision_width: int = 128
    vision_layers: int = 4
    text_width: int = 128
    text_layers: int = 2
    heads: int = 4


def build(shape: Shape) -> tuple[VisionEncoderDecoderModel, TrOCRProcessor]:
    """A freshly initialised model and its processor (the caller seeds torch first)."""
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTModel,
    )

    tokenizer = language.tokenizer()
    specials = language.SPECIALS
    start, end, pad = specials.index("[CLS]"), specials.index("[SEP]"), specials.index("[PAD]")
    encoder_config = ViTConfig(
        hidden_size=shape.vision_width,
        num_hidden_layers=shape.vision_layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.vision_width * 4,
        image_size=shape.image_size,
        patch_size=shape.patch_size,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    decoder_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=shape.text_width,
        n_layer=shape.text_layers,
        n_head=shape.heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        add_cross_attention=True,
        is_decoder=True,
        bos_token_id=start,
        eos_token_id=end,
        pad_token_id=pad,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder_config, decoder_config)
    config.decoder_start_token_id = start
    config.pad_token_id = pad
    config.eos_token_id = end
    model = VisionEncoderDecoderModel(
        config=config,
        encoder=ViTModel(encoder_config),  # with its (unused) pooler, as from_pretrained builds it
        decoder=GPT2LMHeadModel(decoder_config),
    )
    _sincos_positions(model.encoder.embeddings.position_embeddings, shape.image_size // shape.patch_size)
    for name, value in (
        ("decoder_start_token_id", start),
        ("pad_token_id", pad),
        ("eos_token_id", end),
        ("bos_token_id", start),
    ):
        setattr(model.generation_config, name, value)
    return model, processor(shape.image_size, tokenizer)


def _sincos_positions(table: Any, grid: int, scale: float = 0.3) -> None:
    """Start the encoder's position embeddings as a 2-D sine-cosine table (as MAE does) instead of
    small random numbers: measured here, learned-from-noise positions left the model unable to
    tell left from right after 2,000 steps while it already knew every colour."""
    import torch

    width = table.shape[-1]
    quarter = width // 4
    frequencies = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    axes = torch.meshgrid(
        torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32), indexing="ij"
    )
    parts = []
    for axis in (axes[1].flatten(), axes[0].flatten()):  # column (x), then row (y)
        angles = axis[:, None] * frequencies[None, :]
        parts += [angles.sin(), angles.cos()]
    values = torch.cat(parts, dim=1) * scale  # (grid * grid, 4 * quarter)
    with torch.no_grad():
        table[0, 0].zero_()  # the [CLS] token's position
        table[0, 1:, : values.shape[1]] = values
        table[0, 1:, values.shape[1] :] = 0


def processor(image_size: int, tokenizer: Any) -> TrOCRProcessor:
    from transformers import TrOCRProcessor, ViTImageProcessorPil

    image_processor = ViTImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    # The tokenizer keeps the chat template (a processor of this class drops its own on loading).
    tokenizer.chat_template = language.CHAT_TEMPLATE
    return TrOCRProcessor(image_processor, tokenizer)


def save(model: VisionEncoderDecoderModel, processor: TrOCRProcessor, folder: Path, report: dict[str, Any]) -> None:
    """Write the checkpoint the way camcap loads it (`from_pretrained` on the folder), with its marker."""
    from transformers.utils import logging as hf_logging

    folder.mkdir(parents=True, exist_ok=True)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    (folder / MARKER).write_text(json.dumps(report, indent=2) + "\n")


def load(folder: Path) -> tuple[VisionEncoderDecoderModel, TrOCRProcessor, dict[str, Any]]:
    """A saved checkpoint to train further: its weights, its processor and its marker."""
    from transformers import TrOCRProcessor, VisionEncoderDecoderModel

    folder = Path(folder)
    net = VisionEncoderDecoderModel.from_pretrained(folder)
    loaded = TrOCRProcessor.from_pretrained(folder)
    marker = json.loads((folder / MARKER).read_text())
    return net, processor(model_size(marker), loaded.tokenizer), marker


def model_size(marker: dict[str, Any]) -> int:
    return int(marker["shape"]["image_size"])


def shape_of(report: dict[str, Any]) -> Shape:
    return Shape(**report["shape"])


def describe(shape: Shape) -> dict[str, Any]:
    return asdict(shape)
