"""Random-weight checkpoints: built offline, deterministic, atomic, loadable as plain HF folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from camcap.errors import UnknownModelSpecError
from camcap.models import random_checkpoints
from camcap.models.random_checkpoints import MARKER, RANDOM_ARCHITECTURES, ensure_checkpoint, is_random_checkpoint

TINY = ["blip-tiny", "git-tiny", "florence2-tiny", "smolvlm-tiny", "moondream-sized-tiny"]
# Parameter counts of the real models (millions), with a margin: the builds must cost the same.
FULL_SIZE_PARAMS_M = {
    "blip-base": (215, 250),
    "git-base": (170, 185),
    "smolvlm-256m": (245, 265),
    # Moondream 2 is 1.86 B: SigLIP so400m (~413 M) + Phi-1.5 (~1.42 B) + its projection.
    "moondream-sized": (1800, 1900),
}


def digest(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def test_the_required_architectures_are_registered_with_descriptions() -> None:
    assert set(TINY) | set(FULL_SIZE_PARAMS_M) <= set(RANDOM_ARCHITECTURES)
    for name, arch in RANDOM_ARCHITECTURES.items():
        assert arch.description
        assert arch.tiny == (arch.approx_size_gb is None), name
        assert arch.tiny == name.endswith("-tiny")


@pytest.mark.parametrize("name", TINY)
def test_a_tiny_checkpoint_is_a_plain_hugging_face_folder(name: str, model_cache: Path) -> None:
    folder = ensure_checkpoint(name, model_cache / "random")
    assert folder == model_cache / "random" / name
    assert is_random_checkpoint(folder)
    assert sum(path.stat().st_size for path in folder.iterdir()) < 5_000_000
    # The stock loaders read it, offline, with no camcap code involved.
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    # Every id the model can emit decodes to something: vocabulary sizes agree.
    assert model.get_output_embeddings() is None or model.get_output_embeddings().out_features == len(
        processor.tokenizer
    )
    assert model.config.get_text_config().vocab_size == len(processor.tokenizer)


def test_a_checkpoint_is_built_once_and_then_reused(tmp_path: Path) -> None:
    folder = ensure_checkpoint("blip-tiny", tmp_path)
    marker = (folder / MARKER).stat().st_mtime_ns
    assert ensure_checkpoint("blip-tiny", tmp_path) == folder
    assert (folder / MARKER).stat().st_mtime_ns == marker
    assert [path.name for path in tmp_path.iterdir()] == ["blip-tiny"]  # no staging folder left


def test_builds_are_deterministic(tmp_path: Path) -> None:
    torch.manual_seed(1234)
    first = digest(ensure_checkpoint("git-tiny", tmp_path / "a"))
    second = digest(ensure_checkpoint("git-tiny", tmp_path / "b"))
    assert first == second
    assert "model.safetensors" in first


def test_building_leaves_the_callers_random_state_alone(tmp_path: Path) -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    ensure_checkpoint("blip-tiny", tmp_path)
    assert torch.equal(torch.rand(3), expected)


def test_an_interrupted_build_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash_after_weights(name: str, folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(random_checkpoints, "build_checkpoint", crash_after_weights)
    with pytest.raises(KeyboardInterrupt):
        ensure_checkpoint("blip-tiny", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_outdated_build_is_replaced(tmp_path: Path) -> None:
    folder = ensure_checkpoint("blip-tiny", tmp_path)
    marker = json.loads((folder / MARKER).read_text())
    (folder / MARKER).write_text(json.dumps({**marker, "fingerprint": "from-an-older-builder"}))
    (folder / "stale.txt").write_text("from an older build")
    assert ensure_checkpoint("blip-tiny", tmp_path) == folder
    assert not (folder / "stale.txt").exists()
    assert json.loads((folder / MARKER).read_text()) == marker
    assert [path.name for path in tmp_path.iterdir()] == ["blip-tiny"]


def test_an_unknown_architecture_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelSpecError) as error:
        ensure_checkpoint("blip-huge", tmp_path)
    assert "blip-tiny" in str(error.value)
    assert not (tmp_path / "blip-huge").exists()


@pytest.mark.parametrize("name", sorted(FULL_SIZE_PARAMS_M))
def test_full_size_configs_have_the_real_models_size(name: str) -> None:
    # On the meta device: shapes only, no memory, no weights written.
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(RANDOM_ARCHITECTURES[name].config())
    millions = sum(parameter.numel() for parameter in model.parameters()) / 1e6
    low, high = FULL_SIZE_PARAMS_M[name]
    assert low <= millions <= high


@pytest.mark.parametrize(
    ("name", "side", "image_tokens"),
    [
        ("smolvlm-tiny", 512, 64),  # one 512 px pass, 4x pixel shuffle: 32 x 32 / 16
        ("moondream-sized-tiny", 378, 729),  # one 378 px crop, as Moondream's: 27 x 27, none merged
    ],
)
def test_a_frame_is_one_image_pass_not_cut_into_tiles(
    name: str, side: int, image_tokens: int, model_cache: Path
) -> None:
    from PIL import Image

    processor = AutoProcessor.from_pretrained(ensure_checkpoint(name, model_cache / "random"))
    assert processor.image_processor.do_image_splitting is False
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}],
        add_generation_prompt=True,
    )
    inputs = processor(images=[Image.new("RGB", (640, 480))], text=[prompt], return_tensors="pt")
    assert tuple(inputs["pixel_values"].shape) == (1, 1, 3, side, side)
    assert (inputs["input_ids"] == processor.image_token_id).sum() == image_tokens


def test_the_moondream_sized_build_has_moondreams_vision_tower_and_decoder() -> None:
    config = RANDOM_ARCHITECTURES["moondream-sized"].config()
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    vision, text = config.vision_config, config.text_config
    # SigLIP so400m at 378 px, 14 px patches: 27 x 27 = 729 image tokens, none merged away.
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size) == (1152, 27, 378, 14)
    assert config.scale_factor == 1
    # Phi-1.5: 24 layers of 2048, 32 heads, half the head rotated, 51,200 words.
    assert (text.model_type, text.hidden_size, text.num_hidden_layers) == ("phi", 2048, 24)
    assert text.num_attention_heads == 32
    assert (text.rope_parameters["partial_rotary_factor"], text.vocab_size) == (0.5, 51200)
    assert type(model.model.text_model).__name__ == "PhiModel"
    vision_millions = sum(parameter.numel() for parameter in model.model.vision_model.parameters()) / 1e6
    assert 400 <= vision_millions <= 430
