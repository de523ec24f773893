"""Configs and builders of the random-weight checkpoints (see `random_checkpoints`).

Each architecture has a config function (real dimensions, or tiny ones for tests) and a builder
that makes the random model and its processor: a WordLevel tokenizer whose special tokens and
ids match the config (the traps: BLIP's [DEC] bos and [SEP] eos, Florence-2's image token and
577 image positions, Idefics3's image tokens and chat template), and the image processor the
real checkpoint uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from camcap.models._wordlevel import word_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, ProcessorMixin

Built = tuple["PreTrainedModel", "ProcessorMixin"]

# --------------------------------------------------------------------------------------------
# BLIP (Salesforce/blip-image-captioning-*): ViT encoder + BERT decoder with cross-attention.

BLIP_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")


def _blip_config(*, hidden: int, layers: int, heads: int, intermediate: int, vocab: int | None) -> Any:
    from transformers import BlipConfig

    size = vocab or len(_blip_tokenizer(None))
    # BLIP generates from a [DEC] bos and stops on [SEP] (it passes sep as eos to the decoder),
    # so these ids must be the tokenizer's.
    text = dict(
        vocab_size=size,
        hidden_size=hidden,
        encoder_hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        bos_token_id=BLIP_SPECIALS.index("[DEC]"),
        sep_token_id=BLIP_SPECIALS.index("[SEP]"),
        eos_token_id=BLIP_SPECIALS.index("[SEP]"),
        pad_token_id=BLIP_SPECIALS.index("[PAD]"),
    )
    vision = dict(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=384,
        patch_size=16,
    )
    return BlipConfig(text_config=text, vision_config=vision, projection_dim=min(512, hidden))


def _blip_tokenizer(vocab: int | None) -> Any:
    names = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token", "bos_token")
    return word_tokenizer(
        BLIP_SPECIALS, dict(zip(names, BLIP_SPECIALS, strict=True)), size=vocab, template="[CLS] $A [SEP]"
    )


def build_blip(config: Any) -> Built:
    from transformers import BlipForConditionalGeneration, BlipImageProcessorPil, BlipProcessor

    model = BlipForConditionalGeneration(config)
    processor = BlipProcessor(BlipImageProcessorPil(), _blip_tokenizer(config.text_config.vocab_size))
    return model, processor


# --------------------------------------------------------------------------------------------
# GIT (microsoft/git-*): CLIP ViT encoder whose tokens prefix a BERT-style causal decoder.

GIT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _git_config(
    *, hidden: int, layers: int, vision_layers: int, heads: int, intermediate: int, vocab: int | None
) -> Any:
    from transformers import GitConfig

    vision = dict(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=vision_layers,
        num_attention_heads=heads,
        image_size=224,
        patch_size=16,
    )
    return GitConfig(
        vision_config=vision,
        vocab_size=vocab or len(_git_tokenizer(None)),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        # GIT starts from [CLS] and stops at [SEP], like the real checkpoints (ids 101 / 102 there).
        bos_token_id=GIT_SPECIALS.index("[CLS]"),
        eos_token_id=GIT_SPECIALS.index("[SEP]"),
        pad_token_id=GIT_SPECIALS.index("[PAD]"),
    )


def _git_tokenizer(vocab: int | None) -> Any:
    names = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")
    return word_tokenizer(
        GIT_SPECIALS, dict(zip(names, GIT_SPECIALS, strict=True)), size=vocab, template="[CLS] $A [SEP]"
    )


def build_git(config: Any) -> Built:
    from transformers import CLIPImageProcessorPil, GitForCausalLM, GitProcessor

    model = GitForCausalLM(config)
    # CLIP's defaults are GIT base's: shortest edge 224, centre crop 224.
    processor = GitProcessor(CLIPImageProcessorPil(), _git_tokenizer(config.vocab_size))
    return model, processor


# --------------------------------------------------------------------------------------------
# Florence-2 (native in transformers 5): DaViT encoder + BART encoder-decoder, task-token prompts.

FLORENCE_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<image>")
FLORENCE_IMAGE_SIZE = 768


def _florence2_config(
    *, dims: Sequence[int], depths: Sequence[int], d_model: int, layers: int, heads: int, ffn: int, vocab: int | None
) -> Any:
    from transformers import Florence2Config

    text = dict(
        model_type="bart",
        vocab_size=vocab or len(_florence2_tokenizer(None)),
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        max_position_embeddings=1024,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,  # BART starts decoding from </s>
        forced_eos_token_id=None,
    )
    vision = dict(
        embed_dim=list(dims),
        depths=list(depths),
        num_heads=[max(1, d // 32) for d in dims],
        num_groups=[max(1, d // 32) for d in dims],
        projection_dim=d_model,
        drop_path_rate=0.0,
    )
    return Florence2Config(text_config=text, vision_config=vision, image_token_id=FLORENCE_SPECIALS.index("<image>"))


def _florence2_tokenizer(vocab: int | None) -> Any:
    roles = {
        "bos_token": "<s>",
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "image_token": "<image>",  # the processor reads tokenizer.image_token / image_token_id
    }
    return word_tokenizer(FLORENCE_SPECIALS, roles, size=vocab, model_max_length=1024)


def build_florence2(config: Any) -> Built:
    from transformers import CLIPImageProcessorPil, Florence2ForConditionalGeneration, Florence2Processor

    model = Florence2ForConditionalGeneration(config)
    size = FLORENCE_IMAGE_SIZE
    # Florence-2's own preprocessing: a 768x768 square (no crop), ImageNet mean and std.
    image_processor = CLIPImageProcessorPil(
        size={"height": size, "width": size},
        do_center_crop=False,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    # One <image> placeholder per vision token: (768 / 32)^2 patches + 1 pooled token = 577.
    image_processor.image_seq_length = (size // 32) ** 2 + 1  # type: ignore[attr-defined]
    processor = Florence2Processor(image_processor, _florence2_tokenizer(config.text_config.vocab_size))
    return model, processor


# --------------------------------------------------------------------------------------------
# SmolVLM (HuggingFaceTB/SmolVLM-*-Instruct): the Idefics3 architecture, SigLIP + a Llama-style LM.

SMOLVLM_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    "<end_of_utterance>",
    *(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)),
)
# SmolVLM's own chat template (Idefics3 processors ship it in chat_template.jinja).
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _smolvlm_config(
    *,
    vision: dict[str, int],
    text: dict[str, Any],
    scale_factor: int,
    vocab: int | None,
    tie: bool = True,
    patch_size: int = 16,
) -> Any:
    from transformers import Idefics3Config

    # SmolLM2's settings, unless `text` names another decoder (the Moondream-sized build uses Phi).
    decoder: dict[str, Any] = dict(
        model_type="llama", rms_norm_eps=1e-5, rope_theta=100000.0, max_position_embeddings=8192
    )
    text_config = dict(
        **(decoder if "model_type" not in text else {}),
        vocab_size=vocab or len(_smolvlm_tokenizer(None)),
        tie_word_embeddings=tie,
        bos_token_id=SMOLVLM_SPECIALS.index("<|im_start|>"),
        eos_token_id=SMOLVLM_SPECIALS.index("<end_of_utterance>"),
        pad_token_id=SMOLVLM_SPECIALS.index("<|im_end|>"),
        **text,
    )
    return Idefics3Config(
        vision_config=dict(patch_size=patch_size, **vision),
        text_config=text_config,
        scale_factor=scale_factor,
        image_token_id=SMOLVLM_SPECIALS.index("<image>"),
        tie_word_embeddings=tie,
    )


def _smolvlm_tokenizer(vocab: int | None) -> Any:
    roles = {
        "bos_token": "<|im_start|>",
        "eos_token": "<end_of_utterance>",
        "pad_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
    }
    # Decoder-only: prompts are padded on the left so new tokens follow each prompt directly.
    return word_tokenizer(SMOLVLM_SPECIALS, roles, size=vocab, model_max_length=8192, padding_side="left")


def build_smolvlm(config: Any) -> Built:
    from transformers import Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil, Idefics3Processor

    model = Idefics3ForConditionalGeneration(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    vision = config.vision_config
    # SmolVLM's default image splitting upscales a frame to a 2048 px long side and cuts it into
    # 512 px tiles: a 640x480 frame becomes 12 tiles + 1 global image, ~13x the vision and prompt
    # cost (25 s instead of 2.8 s per caption on a CPU). A live caption needs one pass over one
    # 512x512 image, so splitting is off; `hf:` users of a real SmolVLM keep their repo's setting.
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": 4 * vision.image_size},
        max_image_size={"longest_edge": vision.image_size},
    )
    image_seq_len = (vision.image_size // vision.patch_size) ** 2 // config.scale_factor**2
    processor = Idefics3Processor(
        image_processor,
        _smolvlm_tokenizer(config.text_config.vocab_size),
        image_seq_len=image_seq_len,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    return model, processor


def _lively(config: Any) -> Any:
    """Make a tiny random model's output depend on its image, for tests that need to tell apart.

    With the real initialisation (std 0.02, tied input/output embeddings), a 32-wide random
    model ignores its image and repeats one word or ends at once: every frame gets the same (or
    an empty) caption. A larger std and untied embeddings give varied, image-dependent words.
    Compute is unchanged, so the full-size builds keep the real settings.
    """
    for part in (config, getattr(config, "text_config", None), getattr(config, "vision_config", None)):
        if part is not None:
            part.initializer_range = 0.2
            part.tie_word_embeddings = False
    return config


def _tiny_blocks(**extra: int) -> dict[str, int]:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, **extra)


def blip_tiny() -> Any:
    return _lively(_blip_config(hidden=32, layers=2, heads=2, intermediate=64, vocab=None))


def git_tiny() -> Any:
    return _lively(_git_config(hidden=32, layers=2, vision_layers=2, heads=2, intermediate=64, vocab=None))


def florence2_tiny() -> Any:
    dims, depths = (16, 16, 32, 32), (1, 1, 1, 1)
    return _lively(_florence2_config(dims=dims, depths=depths, d_model=32, layers=2, heads=2, ffn=64, vocab=None))


def smolvlm_tiny() -> Any:
    # Keeps the real 512 px image and 4x pixel shuffle (64 image tokens), so frames and prompts
    # are shaped as for the real model; only the widths and depths shrink.
    vision, text = _tiny_blocks(image_size=512), _tiny_blocks(num_key_value_heads=1)
    return _lively(_smolvlm_config(vision=vision, text=text, scale_factor=4, vocab=None))


def blip_base() -> Any:
    return _blip_config(hidden=768, layers=12, heads=12, intermediate=3072, vocab=30524)


def git_base() -> Any:
    return _git_config(hidden=768, layers=6, vision_layers=12, heads=12, intermediate=3072, vocab=30522)


def smolvlm_256m() -> Any:
    # SigLIP base/16 at 512 px, SmolLM2-135M (30 layers, 9 heads, 3 KV heads), 4x pixel shuffle.
    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=512)
    text = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9)
    text["num_key_value_heads"] = 3
    # The real model's output layer is its own, not tied to the input embeddings: 28M of its
    # 256M parameters.
    return _smolvlm_config(vision=vision, text=text, scale_factor=4, vocab=49280, tie=False)


def moondream_sized() -> Any:
    """Moondream 2's compute without its code (remote code cannot be had offline): its vision
    tower, SigLIP so400m at 378 px with 14 px patches (729 image tokens, no pixel shuffle), and
    its decoder, Phi-1.5 (24 layers, 2048 wide, 32 heads, partial rotary, 51,200 words), joined
    by the Idefics3 architecture's connector. Moondream 2 runs the vision tower on 2 crops of a
    frame up to 378 px on its short side (one more pass than this build), then the same 729
    tokens through the same decoder, so its time per token and prefill are this build's."""
    vision = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16)
    text = dict(
        model_type="phi",
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=24,
        num_attention_heads=32,
        partial_rotary_factor=0.5,
        max_position_embeddings=2048,
    )
    return _smolvlm_config(
        vision=dict(image_size=378, **vision), text=text, scale_factor=1, vocab=51200, tie=False, patch_size=14
    )


def moondream_sized_tiny() -> Any:
    """`moondream_sized` with 32-wide, 2-layer blocks and the same 378 px / 14 px geometry: the
    build's wiring (Phi decoder behind Idefics3, 729 image tokens) tested in seconds."""
    vision = _tiny_blocks(image_size=378)
    text = dict(model_type="phi", **_tiny_blocks(), partial_rotary_factor=0.5, max_position_embeddings=2048)
    return _lively(_smolvlm_config(vision=vision, text=text, scale_factor=1, vocab=None, patch_size=14))
