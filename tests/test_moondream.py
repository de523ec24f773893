"""Moondream 2 backend: the adapter, its pinning, tiling, offline errors and the transformers-5 fix.

Moondream's weights and remote code cannot be downloaded here. The adapter is driven through
`StandInMoondream`, a test double with the method signatures of Moondream's model API, injected
with `MoondreamCaptioner._from_model`. The loading path runs for real on small remote-code models
written by these tests: one with the buffer layout and constructor habits of Moondream's code.
"""

from __future__ import annotations

import json
import math
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from camcap.errors import ModelNotAvailableError
from camcap.models import moondream
from camcap.models._moondream_compat import (
    load_with_compat,
    moondream_buffer_recipes,
    restore_non_persistent_buffers,
    transformers_major,
)
from camcap.models._moondream_load import load_moondream
from camcap.models._moondream_tiling import crop_count
from camcap.models.base import Caption, Task, TaskKind, Token
from camcap.models.moondream import DEFAULT_REVISION, MoondreamCaptioner, _trimmed, preferred_input_size
from camcap.models.options import ModelOptions
from camcap.models.registry import create_captioner

TRANSFORMERS_5 = transformers_major() >= 5


# --- a stand-in for Moondream's model object -------------------------------------------------


class Encoded:
    """What StandInMoondream.encode_image returns (Moondream returns an `EncodedImage`)."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image


class StandInMoondream:
    """TEST DOUBLE with the signatures of Moondream 2's API (revision 2025-06-21): records calls,
    streams `pieces`, returns raw `objects` / `points` as Moondream does (normalised, unclamped)."""

    def __init__(
        self,
        pieces: tuple[str, ...] = ("A ", "dog ", "on ", "a ", "sofa."),
        objects: list[dict[str, Any]] | None = None,
        points: list[dict[str, Any]] | None = None,
    ) -> None:
        self.pieces = pieces
        self.objects = objects or []
        self.points = points or []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.encoded: list[Image.Image] = []
        self.pulled = 0
        self.streams: list[Iterator[str]] = []
        self.streams_closed = 0

    def encode_image(self, image: Image.Image | Encoded) -> Encoded:
        if isinstance(image, Encoded):
            return image
        self.encoded.append(image)
        return Encoded(image)

    def _stream(self) -> Iterator[str]:
        # Keeps a reference, as a model holding decode state might: then only an explicit close(),
        # not garbage collection, stops the stream.
        stream = self._pieces()
        self.streams.append(stream)
        return stream

    def _pieces(self) -> Iterator[str]:
        try:
            for piece in self.pieces:
                self.pulled += 1
                yield piece
        finally:
            self.streams_closed += 1

    def caption(self, image: Any, length: str = "normal", stream: bool = False, settings: Any = None) -> dict[str, Any]:
        self.calls.append(("caption", {"image": image, "length": length, "stream": stream, "settings": settings}))
        return {"caption": self._stream() if stream else "".join(self.pieces)}

    def query(
        self, image: Any = None, question: Any = None, stream: bool = False, settings: Any = None
    ) -> dict[str, Any]:
        self.calls.append(("query", {"image": image, "question": question, "stream": stream, "settings": settings}))
        return {"answer": self._stream() if stream else "".join(self.pieces)}

    def detect(self, image: Any, object: str, settings: Any = None) -> dict[str, Any]:  # `object`: Moondream's name
        self.calls.append(("detect", {"image": image, "object": object}))
        return {"objects": self.objects}

    def point(self, image: Any, object: str, settings: Any = None) -> dict[str, Any]:
        self.calls.append(("point", {"image": image, "object": object}))
        return {"points": self.points}


def frame(size: tuple[int, int] = (640, 480), colour: str = "red") -> Image.Image:
    return Image.new("RGB", size, colour)


def run(captioner: MoondreamCaptioner, requests: list[tuple[Image.Image, Task]]) -> list[Token | Caption]:
    return list(captioner.generate(requests))


def captions(events: list[Token | Caption]) -> list[Caption]:
    return [e for e in events if isinstance(e, Caption)]


# --- specs and revisions ----------------------------------------------------------------------


def test_default_spec_pins_the_default_revision() -> None:
    captioner = create_captioner("moondream2")
    assert isinstance(captioner, MoondreamCaptioner)
    assert captioner.revision == DEFAULT_REVISION == "2025-06-21"


def test_spec_with_revision_pins_that_revision() -> None:
    captioner = create_captioner("moondream2@abc")
    assert isinstance(captioner, MoondreamCaptioner)
    assert captioner.revision == "abc"


def test_required_downloads_follow_the_revision() -> None:
    default, tokenizer = moondream.required_downloads()
    assert (default.repo_id, default.revision) == ("vikhyatk/moondream2", DEFAULT_REVISION)
    assert tokenizer.repo_id == "moondream/starmie-v1"
    assert moondream.required_downloads("abc")[0].revision == "abc"


def test_offline_setup_names_the_model_its_size_and_the_pull_command(tmp_path: Path) -> None:
    captioner = create_captioner("moondream2", ModelOptions(cache_dir=tmp_path))
    with pytest.raises(ModelNotAvailableError) as error:
        captioner.setup()
    message = str(error.value)
    assert "vikhyatk/moondream2" in message
    assert f"{moondream.APPROX_SIZE_GB:g} GB" in message
    assert "`camcap pull moondream2`" in message


def test_offline_setup_of_another_revision_names_its_spec(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match=r"moondream2@abc.*camcap pull moondream2@abc"):
        create_captioner("moondream2@abc", ModelOptions(cache_dir=tmp_path)).setup()


def test_info_is_known_only_after_setup() -> None:
    captioner = MoondreamCaptioner()
    with pytest.raises(RuntimeError, match="setup"):
        _ = captioner.info
    with pytest.raises(RuntimeError, match="setup"):
        captioner.generate([(frame(), Task.caption())])


def test_close_releases_the_model() -> None:
    captioner = MoondreamCaptioner._from_model(StandInMoondream())
    captioner.close()
    with pytest.raises(RuntimeError, match="setup"):
        captioner.generate([(frame(), Task.caption())])


def test_info_describes_the_model() -> None:
    info = MoondreamCaptioner._from_model(StandInMoondream()).info
    assert info.backend == "moondream"
    assert info.name == "moondream2"
    assert info.revision == DEFAULT_REVISION
    assert set(info.tasks) == {TaskKind.CAPTION, TaskKind.QUERY, TaskKind.DETECT, TaskKind.POINT}
    assert info.max_batch == 1


# --- task mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize("length", ["short", "normal", "long"])
def test_caption_lengths_map_to_moondream_caption(length: str) -> None:
    model = StandInMoondream()
    captioner = MoondreamCaptioner._from_model(model, ModelOptions(max_new_tokens=12))
    image = frame()
    events = run(captioner, [(image, Task.caption(length))])  # type: ignore[arg-type]
    [(name, kwargs)] = model.calls
    assert name == "caption"
    assert kwargs["length"] == length
    assert kwargs["stream"] is True
    assert kwargs["settings"]["max_tokens"] == 12
    assert isinstance(kwargs["image"], Encoded) and kwargs["image"].image is image
    assert captions(events)[0].text == "A dog on a sofa."


def test_query_maps_to_moondream_query_with_the_question() -> None:
    model = StandInMoondream(pieces=("Two ", "cats."))
    events = run(MoondreamCaptioner._from_model(model), [(frame(), Task.query("How many cats?"))])
    [(name, kwargs)] = model.calls
    assert (name, kwargs["question"], kwargs["stream"]) == ("query", "How many cats?", True)
    assert captions(events)[0].text == "Two cats."


def test_detect_returns_clamped_boxes_and_a_count() -> None:
    model = StandInMoondream(
        objects=[
            {"x_min": 0.1, "y_min": 0.2, "x_max": 0.4, "y_max": 0.9},
            {"x_min": -0.05, "y_min": 0.5, "x_max": 0.3, "y_max": 1.2},  # overhangs the frame
            {"x_min": 1.2, "y_min": 0.1, "x_max": 1.5, "y_max": 0.3},  # wholly outside: dropped
            {"x_min": 0.2, "y_min": "nan", "x_max": 0.3, "y_max": 0.4},  # not finite: dropped
            {"x": 0.5},  # not a box: dropped
        ]
    )
    [caption] = captions(run(MoondreamCaptioner._from_model(model), [(frame(), Task.detect(" person "))]))
    assert model.calls == [("detect", {"image": model.calls[0][1]["image"], "object": "person"})]
    assert caption.text == "2 × person"
    assert [(b.x_min, b.y_min, b.x_max, b.y_max) for b in caption.boxes] == [(0.1, 0.2, 0.4, 0.9), (0.0, 0.5, 0.3, 1.0)]
    assert caption.points == ()


def test_point_returns_clamped_points() -> None:
    model = StandInMoondream(points=[{"x": 0.25, "y": 0.75}, {"x": 1.3, "y": -0.2}, {"x": None, "y": 0.1}])
    [caption] = captions(run(MoondreamCaptioner._from_model(model), [(frame(), Task.point("cup"))]))
    assert model.calls[0][0] == "point"
    assert caption.text == "2 × cup"
    assert [(p.x, p.y) for p in caption.points] == [(0.25, 0.75), (1.0, 0.0)]
    assert caption.boxes == ()


def test_nothing_found_is_zero_of_the_target() -> None:
    [caption] = captions(run(MoondreamCaptioner._from_model(StandInMoondream()), [(frame(), Task.detect("cat"))]))
    assert (caption.text, caption.boxes) == ("0 × cat", ())


# --- streaming, timings, reuse, cancellation --------------------------------------------------


@pytest.mark.parametrize(
    "task",
    [Task.caption("short"), Task.query("What is it?"), Task.detect("dog"), Task.point("dog")],
    ids=lambda task: task.kind.value,
)
def test_streamed_deltas_join_to_the_final_text(task: Task) -> None:
    model = StandInMoondream(
        pieces=("  A ", "dog", " ", "", "on a ", "sofa. \n"), objects=[{"x_min": 0, "y_min": 0, "x_max": 1, "y_max": 1}]
    )
    events = run(MoondreamCaptioner._from_model(model), [(frame(), task)])
    [caption] = captions(events)
    deltas = [e.text for e in events if isinstance(e, Token)]
    assert deltas, "every task streams at least one delta"
    assert "".join(deltas) == caption.text
    if task.kind in (TaskKind.CAPTION, TaskKind.QUERY):
        assert caption.text == "A dog on a sofa."


@given(st.lists(st.text(alphabet=" \nab.", max_size=6), max_size=8))
def test_trimmed_stream_equals_the_stripped_text(pieces: list[str]) -> None:
    out = list(_trimmed(pieces))
    assert "".join(out) == "".join(pieces).strip()
    assert all(out), "no empty deltas"


def test_timings_split_encoding_from_generation() -> None:
    [caption] = captions(run(MoondreamCaptioner._from_model(StandInMoondream()), [(frame(), Task.caption())]))
    timings = caption.timings
    assert timings.encode_ms is not None
    assert timings.total_ms >= timings.preprocess_ms + timings.encode_ms + timings.first_token_ms
    assert timings.tokens == 5  # the stand-in has no tokenizer: one per streamed piece
    assert caption.extras == {"crops": 9, "encode_reused": False}


def test_two_tasks_on_one_frame_encode_it_once() -> None:
    model = StandInMoondream(objects=[{"x_min": 0.1, "y_min": 0.1, "x_max": 0.2, "y_max": 0.2}])
    image = frame()
    events = run(MoondreamCaptioner._from_model(model), [(image, Task.caption()), (image, Task.detect("dog"))])
    assert model.encoded == [image]
    first, second = captions(events)
    assert (first.index, second.index) == (0, 1)
    assert (first.extras["encode_reused"], second.extras["encode_reused"]) == (False, True)
    # Both tasks were given the same encoding.
    assert model.calls[0][1]["image"] is model.calls[1][1]["image"]


def test_different_frames_are_encoded_separately() -> None:
    model = StandInMoondream()
    one, two = frame(colour="red"), frame(colour="blue")
    run(MoondreamCaptioner._from_model(model), [(one, Task.caption()), (two, Task.caption())])
    assert model.encoded == [one, two]


def test_closing_the_iterator_stops_the_model_stream() -> None:
    model = StandInMoondream(pieces=tuple(f"word{i} " for i in range(50)))
    captioner = MoondreamCaptioner._from_model(model)
    events = captioner.generate([(frame(), Task.caption("long"))])
    assert isinstance(next(events), Token)
    events.close()
    assert model.streams_closed == 1
    assert model.pulled < 5
    # The model is free again for the next frame.
    assert captions(run(captioner, [(frame(), Task.caption())]))


def test_a_second_generation_cannot_interleave_with_an_open_one() -> None:
    captioner = MoondreamCaptioner._from_model(StandInMoondream())
    first = captioner.generate([(frame(), Task.caption())])
    next(first)
    with pytest.raises(RuntimeError, match="one generation at a time"):
        next(captioner.generate([(frame(), Task.caption())]))
    first.close()


# --- tiling and frame size --------------------------------------------------------------------


@given(st.integers(1, 378), st.integers(1, 4000), st.booleans())
def test_a_short_side_up_to_378_costs_two_crops(short: int, other: int, portrait: bool) -> None:
    long_side = max(short, other)
    width, height = (short, long_side) if portrait else (long_side, short)
    assert crop_count(width, height) == 2


@pytest.mark.parametrize(
    ("size", "crops"),
    [((640, 480), 9), ((504, 378), 2), ((859, 644), 9), ((1145, 644), 9), ((860, 645), 13), ((1008, 756), 13)],
)
def test_crop_counts_follow_moondream_tiling(size: tuple[int, int], crops: int) -> None:
    assert crop_count(*size) == crops


@given(st.integers(1, 5000), st.integers(1, 5000))
def test_never_more_than_twelve_local_crops(width: int, height: int) -> None:
    assert 2 <= crop_count(width, height) <= 13


def test_detail_chooses_the_frame_size() -> None:
    assert preferred_input_size("low") == 378
    assert preferred_input_size("high") == 644
    high = MoondreamCaptioner._from_model(StandInMoondream(), ModelOptions(detail="high")).info
    low = MoondreamCaptioner._from_model(StandInMoondream(), ModelOptions(detail="low")).info
    assert (low.input_size, high.input_size) == (378, 644)
    # "high" costs what a raw 640x480 webcam frame costs, with real pixels instead of upscaled ones.
    assert crop_count(round(644 * 4 / 3), 644) == crop_count(640, 480) == 9


# --- the transformers 5 loading fix -----------------------------------------------------------


def rotary_table(dim: int, end: int, theta: float = 10000.0) -> torch.Tensor:
    """Moondream's rotary table definition, written out independently of camcap's copy."""
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    angles = torch.arange(end, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)


def prefix_mask(size: int, prefix: int) -> torch.Tensor:
    mask = torch.tril(torch.ones(1, 1, size, size, dtype=torch.bool))
    mask[..., :prefix, :prefix] = True
    return mask


class TinyBuffersConfig(PretrainedConfig):
    model_type = "camcap-tiny-buffers"

    def __init__(self, dim: int = 8, max_context: int = 16, prefix: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim, self.max_context, self.prefix = dim, max_context, prefix


class TinyBuffersModel(PreTrainedModel):
    """Reproduces Moondream's habits: buffers computed in __init__, non-persistent, no post_init()."""

    config_class = TinyBuffersConfig

    def __init__(self, config: TinyBuffersConfig) -> None:
        super().__init__(config)
        self.proj = nn.Linear(config.dim, config.dim)
        self.register_buffer("freqs_cis", rotary_table(config.dim, config.max_context), persistent=False)
        self.register_buffer("attn_mask", prefix_mask(config.max_context, config.prefix), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[1]
        scores = (self.proj(x) @ x.transpose(1, 2)).masked_fill(~self.attn_mask[0, 0, :size, :size], -1e9)
        return scores.softmax(-1) @ x + self.freqs_cis[:size, :, 0].sum(-1, keepdim=True)


def tiny_recipes(model: TinyBuffersModel) -> dict[str, Any]:
    config = model.config
    return {
        "freqs_cis": lambda owner, name: rotary_table(config.dim, config.max_context),
        "attn_mask": lambda owner, name: prefix_mask(config.max_context, config.prefix),
    }


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TinyBuffersModel]:
    torch.manual_seed(0)
    reference = TinyBuffersModel(TinyBuffersConfig()).eval()
    folder = tmp_path_factory.mktemp("tiny-buffers")
    reference.save_pretrained(folder)
    return folder, reference


@pytest.mark.skipif(not TRANSFORMERS_5, reason="the bug is specific to transformers 5")
def test_transformers_5_breaks_the_reproducer_without_the_fix(tiny_checkpoint: tuple[Path, TinyBuffersModel]) -> None:
    folder, reference = tiny_checkpoint
    with pytest.raises(AttributeError, match="all_tied_weights_keys"):
        TinyBuffersModel.from_pretrained(folder)

    class OnlyPostInit(TinyBuffersModel):
        def __init__(self, config: TinyBuffersConfig) -> None:
            super().__init__(config)
            self.post_init()

    loaded = OnlyPostInit.from_pretrained(folder)
    assert torch.equal(loaded.proj.weight, reference.proj.weight)  # the checkpoint did load...
    assert not torch.equal(loaded.attn_mask, reference.attn_mask)  # ...but the buffers did not
    assert not torch.equal(loaded.freqs_cis, reference.freqs_cis)


def test_the_fix_loads_the_reproducer_correctly(tiny_checkpoint: tuple[Path, TinyBuffersModel]) -> None:
    folder, reference = tiny_checkpoint
    loaded = load_with_compat(TinyBuffersModel, folder, recipes_for=tiny_recipes, device="cpu", dtype=torch.float32)
    assert torch.equal(loaded.attn_mask, reference.attn_mask)
    assert torch.equal(loaded.freqs_cis, reference.freqs_cis)
    x = torch.randn(1, 6, 8)
    with torch.no_grad():
        assert torch.allclose(loaded(x), reference(x))
    assert not loaded.training


def test_the_fix_keeps_each_buffer_in_its_definition_dtype(tiny_checkpoint: tuple[Path, TinyBuffersModel]) -> None:
    folder, _ = tiny_checkpoint
    loaded = load_with_compat(TinyBuffersModel, folder, recipes_for=tiny_recipes, device="cpu", dtype=torch.bfloat16)
    assert loaded.proj.weight.dtype == torch.bfloat16
    assert loaded.freqs_cis.dtype == torch.float32  # rotary precision as the constructor made it
    assert loaded.attn_mask.dtype == torch.bool


def test_a_buffer_without_a_recipe_is_an_error_not_garbage(tiny_checkpoint: tuple[Path, TinyBuffersModel]) -> None:
    model = TinyBuffersModel(TinyBuffersConfig())
    with pytest.raises(RuntimeError, match=r"'freqs_cis'.*not know how to rebuild"):
        restore_non_persistent_buffers(model, {"attn_mask": tiny_recipes(model)["attn_mask"]}, strict=True)
    with pytest.raises(RuntimeError, match="shape"):
        restore_non_persistent_buffers(model, {"attn_mask": lambda owner, name: torch.ones(2, 2)}, strict=False)


# A remote-code repo shaped like vikhyatk/moondream2, small enough to write here: an HfMoondream
# that never calls post_init(), a MoondreamModel that fetches its tokenizer from the Hub in
# __init__, and both of Moondream's non-persistent buffers. Its rotary theta differs from
# Moondream's, so the test can tell that the model's own definition was used.
REMOTE_CODE = {
    "config.py": """
        from dataclasses import dataclass, field

        @dataclass(frozen=True)
        class TextConfig:
            dim: int = 16
            n_heads: int = 2
            max_context: int = 32
            vocab_size: int = 12

        @dataclass(frozen=True)
        class VisionConfig:
            crop_size: int = 42
            enc_patch_size: int = 14

        @dataclass(frozen=True)
        class MoondreamConfig:
            text: TextConfig = field(default_factory=TextConfig)
            vision: VisionConfig = field(default_factory=VisionConfig)
        """,
    "rope.py": """
        import torch

        def precompute_freqs_cis(dim, end, theta=500.0, dtype=torch.float32):
            freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=dtype)[: (dim // 2)] / dim))
            freqs = torch.arange(end, dtype=dtype).unsqueeze(1) * freqs.unsqueeze(0)
            freqs = torch.exp(1j * freqs)
            return torch.stack([freqs.real, freqs.imag], dim=-1)
        """,
    "text.py": """
        import torch
        import torch.nn as nn
        from .rope import precompute_freqs_cis

        def build_text_model(config, dtype):
            text = nn.ModuleDict({"proj": nn.Linear(config.dim, config.dim, dtype=dtype)})
            text.wte = nn.Parameter(torch.empty(config.vocab_size, config.dim, dtype=dtype))
            freqs_cis = precompute_freqs_cis(config.dim // (2 * config.n_heads), config.max_context)
            text.register_buffer("freqs_cis", freqs_cis, persistent=False)
            return text
        """,
    "moondream.py": """
        import torch
        import torch.nn as nn
        from tokenizers import Tokenizer
        from .text import build_text_model

        class MoondreamModel(nn.Module):
            def __init__(self, config, dtype=torch.bfloat16, setup_caches=True):
                super().__init__()
                self.config = config
                self.tokenizer = Tokenizer.from_pretrained("moondream/starmie-v1")
                self.text = build_text_model(config.text, dtype)
                size = config.text.max_context
                attn_mask = torch.tril(torch.ones(1, 1, size, size, dtype=torch.bool))
                patch_w = config.vision.crop_size // config.vision.enc_patch_size
                attn_mask[..., : 1 + patch_w**2, : 1 + patch_w**2] = 1
                self.register_buffer("attn_mask", attn_mask, persistent=False)
        """,
    "hf_moondream.py": """
        from transformers import PreTrainedModel, PretrainedConfig
        from .config import MoondreamConfig
        from .moondream import MoondreamModel

        class HfConfig(PretrainedConfig):
            _auto_class = "AutoConfig"
            model_type = "moondream1"

        class HfMoondream(PreTrainedModel):
            _auto_class = "AutoModelForCausalLM"
            config_class = HfConfig

            def __init__(self, config):
                super().__init__(config)
                self.model = MoondreamModel(MoondreamConfig(), setup_caches=False)
        """,
}


@pytest.fixture
def moondream_like_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """A folder laid out like a Moondream snapshot, a starmie-like tokenizer folder, and the weights.
    transformers copies remote code into its modules cache: that cache is redirected to tmp_path."""
    import transformers.dynamic_module_utils as dynamic
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [name for name in sys.modules if name.split(".")[0] == "transformers_modules"]:
        monkeypatch.delitem(sys.modules, name)

    snapshot = tmp_path / "moondream_like"
    snapshot.mkdir()
    for name, source in REMOTE_CODE.items():
        (snapshot / name).write_text(textwrap.dedent(source), encoding="utf-8")
    config = {"model_type": "moondream1", "architectures": ["HfMoondream"]}
    config["auto_map"] = {"AutoConfig": "hf_moondream.HfConfig", "AutoModelForCausalLM": "hf_moondream.HfMoondream"}
    (snapshot / "config.json").write_text(json.dumps(config), encoding="utf-8")
    torch.manual_seed(1)
    # bfloat16, like Moondream's checkpoint.
    weights = {
        "model.text.wte": torch.randn(12, 16, dtype=torch.bfloat16),
        "model.text.proj.weight": torch.randn(16, 16, dtype=torch.bfloat16),
        "model.text.proj.bias": torch.randn(16, dtype=torch.bfloat16),
    }
    save_file(weights, str(snapshot / "model.safetensors"))

    tokenizer_folder = tmp_path / "starmie"
    tokenizer_folder.mkdir()
    vocab = {"[UNK]": 0, "a": 1, "dog": 2, "camcap-local-tokenizer": 3}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tokenizer_folder / "tokenizer.json"))
    yield snapshot, tokenizer_folder, weights
    for name in [name for name in sys.modules if name.split(".")[0] == "transformers_modules"]:
        del sys.modules[name]


def test_load_moondream_runs_moondream_shaped_remote_code_correctly(
    moondream_like_snapshot: tuple[Path, Path, dict[str, torch.Tensor]],
) -> None:
    snapshot, tokenizer_folder, weights = moondream_like_snapshot
    model = load_moondream(
        snapshot,
        code_source=snapshot,
        code_revision=None,
        cache_dir=None,
        hub_tokenizers={"moondream/starmie-v1": tokenizer_folder},
        device="cpu",
        dtype="float32",
    )
    inner = model.model
    assert type(model).__name__ == "HfMoondream"
    assert torch.equal(inner.text.proj.weight, weights["model.text.proj.weight"].float())
    # The remote code builds its layers in bfloat16 whatever from_pretrained is told; camcap asked for float32.
    assert inner.text.wte.dtype == torch.float32
    # The tokenizer came from the local folder, not the Hub.
    assert inner.tokenizer.token_to_id("camcap-local-tokenizer") == 3
    # Both non-persistent buffers hold their definitions, the rotary table from the model's own rope.py.
    assert torch.equal(inner.attn_mask, prefix_mask(32, 1 + 3 * 3))
    assert torch.allclose(inner.text.freqs_cis, rotary_table(16 // (2 * 2), 32, theta=500.0))
    assert not torch.allclose(inner.text.freqs_cis, rotary_table(16 // (2 * 2), 32))


def test_without_the_tokenizer_redirect_the_remote_code_reaches_for_the_hub(
    moondream_like_snapshot: tuple[Path, Path, dict[str, torch.Tensor]],
) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    snapshot, _, _ = moondream_like_snapshot
    with pytest.raises(LocalEntryNotFoundError):
        load_moondream(
            snapshot,
            code_source=snapshot,
            code_revision=None,
            cache_dir=None,
            hub_tokenizers={},
            device="cpu",
            dtype="float32",
        )


def test_moondream_recipes_cover_the_older_text_level_mask() -> None:
    """Revisions before 2025 kept the mask on `text`, sized by TextConfig.prefix_attn."""

    class Config:
        text = type("Text", (), {"dim": 8, "n_heads": 2, "max_context": 16, "prefix_attn": 4})()
        vision = type("Vision", (), {"crop_size": 42, "enc_patch_size": 14})()

    inner = nn.Module()
    inner.config = Config()
    inner.text = nn.ModuleDict({"proj": nn.Linear(8, 8)})
    inner.text.register_buffer("attn_mask", torch.zeros(1, 1, 16, 16, dtype=torch.bool), persistent=False)
    inner.text.register_buffer("freqs_cis", torch.zeros(16, 1, 2), persistent=False)
    model = nn.Module()
    model.model = inner

    restored = restore_non_persistent_buffers(model, moondream_buffer_recipes(model), strict=True)
    assert sorted(restored) == ["model.text.attn_mask", "model.text.freqs_cis"]
    assert torch.equal(inner.text.attn_mask, prefix_mask(16, 4))
    assert torch.allclose(inner.text.freqs_cis, rotary_table(2, 16))
    assert not math.isnan(float(inner.text.freqs_cis.sum()))
