"""The transformers backend beyond the shared contract: loading, prompts, streaming, cancellation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from camcap.errors import ModelNotAvailableError
from camcap.models._prompts import CHAT_INSTRUCTIONS, florence2_boxes
from camcap.models._streaming import BatchStreamer, RowDone, RowText, StreamEvent
from camcap.models.base import CAPTION_LENGTHS, Box, Caption, Task, TaskKind, Token
from camcap.models.options import ModelOptions
from camcap.models.random_checkpoints import ensure_checkpoint
from camcap.models.registry import create_captioner
from camcap.models.transformers import TransformersCaptioner

pytestmark = pytest.mark.usefixtures("one_torch_thread")

Load = Callable[[str], TransformersCaptioner]
FRAME = Image.new("RGB", (640, 480), (40, 120, 200))


@pytest.fixture(scope="module")
def load(model_cache: Path) -> Iterator[Load]:
    """Load each tiny architecture once for this module: `load("git-tiny")`."""
    loaded: dict[str, TransformersCaptioner] = {}

    def get(name: str) -> TransformersCaptioner:
        if name not in loaded:
            captioner = create_captioner(f"random:{name}", ModelOptions(cache_dir=model_cache, max_new_tokens=4))
            assert isinstance(captioner, TransformersCaptioner)
            captioner.setup()
            loaded[name] = captioner
        return loaded[name]

    yield get
    for captioner in loaded.values():
        captioner.close()


def prompt_text(captioner: TransformersCaptioner, tasks: list[Task]) -> list[str]:
    """The text of the prompts the backend builds for `tasks`, image placeholders removed."""
    processor = captioner.processor
    assert processor is not None
    inputs = captioner._loaded.style.encode(processor, [FRAME] * len(tasks), tasks, detail="low")  # type: ignore[union-attr]
    return processor.tokenizer.batch_decode(inputs["input_ids"], skip_special_tokens=True)


# ---- BatchStreamer -------------------------------------------------------------------------


def stream(steps: list[list[int]], stop_ids: frozenset[int] = frozenset({0})) -> list[StreamEvent]:
    """Feed a prompt and then `steps` (one token per row each) to a BatchStreamer."""
    words = {1: "a", 2: "dog", 3: "runs", 4: "far", 5: "walk", 6: "ing"}

    def decode(ids: object) -> str:
        # "ing" continues the word before it, like a WordPiece "##ing".
        return " ".join(words[i] for i in ids).replace(" ing", "ing")  # type: ignore[attr-defined]

    rows = len(steps[0])
    events: list[StreamEvent] = []
    streamer = BatchStreamer(decode, rows, stop_ids, events.append)
    streamer.put(torch.full((rows, 3), 9))  # the prompt comes first, and is not generated text
    for step in steps:
        streamer.put(torch.tensor(step))
    streamer.end()
    return events


def test_streamer_holds_back_the_last_word_until_it_is_complete() -> None:
    events = stream([[1], [5], [6], [4]])
    deltas = [event.text for event in events if isinstance(event, RowText)]
    assert deltas == ["a", " walking", " far"]
    assert events[-1] == RowDone(0, "a walking far", 4, events[-1].finished_at, (1, 5, 6, 4))  # type: ignore[union-attr]


def test_streamer_splits_rows_and_ends_each_at_its_stop_token() -> None:
    # Row 1 stops at step 2 and is then padded with 0 by generate: padding is not its tokens.
    events = stream([[1, 2], [2, 0], [3, 0], [4, 0]])
    done = {event.row: event for event in events if isinstance(event, RowDone)}
    assert (done[0].text, done[0].tokens) == ("a dog runs far", 4)
    assert (done[1].text, done[1].tokens) == ("dog", 2)
    row1 = [event for event in events if event.row == 1]
    assert isinstance(row1[-1], RowDone) and events.index(row1[-1]) < events.index(done[0])
    for row in (0, 1):
        assert "".join(e.text for e in events if isinstance(e, RowText) and e.row == row) == done[row].text


def test_streamer_rejects_a_step_of_the_wrong_batch_size() -> None:
    streamer = BatchStreamer(lambda ids: "", 2, frozenset(), lambda event: None)
    streamer.put(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="expected 2 tokens"):
        streamer.put(torch.zeros(3, dtype=torch.long))


# ---- Loading -------------------------------------------------------------------------------


def test_constructing_a_captioner_touches_nothing(tmp_path: Path) -> None:
    captioner = TransformersCaptioner(tmp_path / "missing", ModelOptions(cache_dir=tmp_path), name="hf:x")
    assert captioner.model is None
    with pytest.raises(RuntimeError, match="setup"):
        captioner.info  # noqa: B018 - the property is the thing under test
    assert list(tmp_path.iterdir()) == []


def test_hf_folder_spec_loads_a_saved_checkpoint(model_cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = ensure_checkpoint("git-tiny", model_cache / "random")
    caplog.set_level(logging.INFO, logger="camcap.models.transformers")
    with create_captioner(f"hf:{folder}", ModelOptions(cache_dir=model_cache, max_new_tokens=3)) as captioner:
        assert captioner.info.name == f"hf:{folder}"
        assert captioner.info.random_weights  # still flagged: the folder was built at random
        assert isinstance(captioner.caption(FRAME), Caption)
    assert "on cpu (float32)" in caplog.text
    assert "no CUDA or MPS device" in caplog.text


def test_an_uncached_hub_model_says_how_to_fetch_it(tmp_path: Path) -> None:
    captioner = create_captioner("hf:camcap-tests/not-cached", ModelOptions(cache_dir=tmp_path))
    with pytest.raises(ModelNotAvailableError) as error:
        captioner.setup()
    assert "camcap pull hf:camcap-tests/not-cached" in str(error.value)


def test_a_missing_folder_is_reported_as_a_folder(tmp_path: Path) -> None:
    captioner = create_captioner(f"hf:{tmp_path}/no/such/model", ModelOptions(cache_dir=tmp_path))
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        captioner.setup()


@pytest.mark.parametrize(
    ("name", "size", "tasks"),
    [
        ("blip-tiny", 384, (TaskKind.CAPTION,)),
        ("git-tiny", 224, (TaskKind.CAPTION, TaskKind.QUERY)),
        ("florence2-tiny", 768, (TaskKind.CAPTION, TaskKind.DETECT)),
        ("smolvlm-tiny", 512, (TaskKind.CAPTION, TaskKind.QUERY)),
    ],
)
def test_input_size_and_tasks_follow_the_architecture(load: Load, name: str, size: int, tasks: tuple) -> None:
    info = load(name).info
    assert info.input_size == size
    assert info.tasks == tasks
    assert info.max_batch == 8


def test_max_batch_option_overrides_the_default(model_cache: Path) -> None:
    with create_captioner("random:blip-tiny", ModelOptions(cache_dir=model_cache, max_batch=2)) as captioner:
        assert captioner.info.max_batch == 2


# ---- Prompts -------------------------------------------------------------------------------


def test_florence2_lengths_use_its_three_caption_tasks(load: Load) -> None:
    short, normal, long = prompt_text(load("florence2-tiny"), [Task.caption(length) for length in CAPTION_LENGTHS])
    assert short == "what does the image describe ?"
    assert normal.startswith("describe in detail what is shown")
    assert long.startswith("describe with [unk] paragraph") or long.startswith("describe with a paragraph")


def test_florence2_detects_with_its_object_detection_task(load: Load) -> None:
    captioner = load("florence2-tiny")
    [prompt] = prompt_text(captioner, [Task.detect("car")])
    # The processor's words for <OD>, "Locate the objects with category name in the image.", as far
    # as the tiny test vocabulary knows them.
    assert prompt.endswith("in the image .") and prompt not in prompt_text(captioner, [Task.caption()])
    events = list(captioner.generate([(FRAME, Task.detect("car")), (FRAME, Task.caption())]))
    detect_tokens = [e.text for e in events if isinstance(e, Token) and e.index == 0]
    [detected] = [e for e in events if isinstance(e, Caption) and e.index == 0]
    # Random weights write no location tokens, so nothing is found; the wiring is what is checked:
    # no location-token gibberish streamed, one delta with the final text, boxes beside it.
    assert detected.text == f"{len(detected.boxes)} × car" and detect_tokens == [detected.text]
    assert detected.task == Task.detect("car")


def test_florence2_boxes_are_read_from_its_location_tokens() -> None:
    answer = (
        "</s><s>car<loc_100><loc_200><loc_299><loc_599>person<loc_0><loc_0><loc_999><loc_999>"
        "cars<loc_900><loc_10><loc_800><loc_20></s>"
    )
    assert florence2_boxes(answer, "Car") == (
        Box(0.1005, 0.2005, 0.2995, 0.5995),
        Box(0.8005, 0.0105, 0.9005, 0.0205),  # corners in either order
    )
    assert florence2_boxes(answer, "person") == (Box(0.0005, 0.0005, 0.9995, 0.9995),)
    assert florence2_boxes(answer, "dog") == ()


def test_git_reads_the_question_after_its_start_token(load: Load) -> None:
    captioner = load("git-tiny")
    caption, query = prompt_text(captioner, [Task.caption(), Task.query("What colour is the car?")])
    assert caption == ""
    assert query == "what colour is the car ?"


def test_chat_models_get_an_instruction_per_length_or_the_question(load: Load) -> None:
    captioner = load("smolvlm-tiny")
    tasks = [Task.caption("short"), Task.caption("long"), Task.query("Where is the dog?")]
    texts = prompt_text(captioner, tasks)
    assert CHAT_INSTRUCTIONS["short"].lower().rstrip(".") in texts[0]
    assert CHAT_INSTRUCTIONS["long"].lower().rstrip(".") in texts[1]
    assert "where is the dog ?" in texts[2]
    # Decoder-only: prompts of different lengths are padded on the left, so all end together.
    assert captioner.processor.tokenizer.padding_side == "left"  # type: ignore[union-attr]


def test_smolvlm_frames_are_squashed_once_not_scaled_up_for_tiles_first(
    load: Load, monkeypatch: pytest.MonkeyPatch
) -> None:
    captioner = load("smolvlm-tiny")
    processor = captioner.processor
    assert processor is not None
    # The page's 512 px frame, 4:3: a smooth picture (resampling twice or once differs at edges).
    ramp = Image.linear_gradient("L").resize((682, 512))
    frame = Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT), ramp.rotate(90)))
    task = [Task.caption()]
    # The processor's own path without tiles: up to a 2048 px long side, then down to a square.
    reference = processor.image_processor(images=[frame], do_image_splitting=False, return_tensors="pt")["pixel_values"]
    sizes: list[tuple[int, int]] = []
    resize = type(processor.image_processor).resize

    def recording(self: object, image: object, size: object, **kwargs: object) -> object:
        out = resize(self, image, size, **kwargs)  # type: ignore[arg-type]
        sizes.append(tuple(getattr(out, "shape", (0, 0, 0))[-2:]))  # type: ignore[arg-type]
        return out

    monkeypatch.setattr(type(processor.image_processor), "resize", recording)
    pixels = captioner._loaded.style.encode(processor, [frame], task, detail="low")["pixel_values"]  # type: ignore[union-attr]
    assert sizes == [(512, 512)]  # one resize, straight to the model's square
    assert pixels.shape == reference.shape == (1, 1, 3, 512, 512)
    # The same picture (resampled once instead of twice): close to the processor's own result.
    assert (pixels - reference).abs().mean() < 0.02


# ---- Generation ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["blip-tiny", "git-tiny", "florence2-tiny", "smolvlm-tiny"])
def test_min_new_tokens_equal_to_max_fixes_the_length(model_cache: Path, name: str) -> None:
    options = ModelOptions(cache_dir=model_cache, max_new_tokens=6, min_new_tokens=6)
    with create_captioner(f"random:{name}", options) as captioner:
        events = list(captioner.generate([(FRAME, Task.caption()), (FRAME.rotate(90), Task.caption())]))
    assert [event.timings.tokens for event in events if isinstance(event, Caption)] == [6, 6]


@pytest.mark.parametrize("name", ["blip-tiny", "git-tiny", "florence2-tiny", "smolvlm-tiny"])
def test_closing_early_stops_the_model_within_a_step(model_cache: Path, name: str) -> None:
    # Forced to 300 tokens: a generation that ignored the close would run them all.
    options = ModelOptions(cache_dir=model_cache, max_new_tokens=300, min_new_tokens=300)
    with create_captioner(f"random:{name}", options) as captioner:
        assert isinstance(captioner, TransformersCaptioner)
        steps = count_decoding_steps(captioner)
        events = captioner.generate([(FRAME, Task.caption()), (FRAME.rotate(90), Task.caption())])
        assert isinstance(next(events), Token)
        events.close()  # type: ignore[attr-defined]
        assert 1 <= steps[0] < 300


def count_decoding_steps(captioner: TransformersCaptioner) -> list[int]:
    """Count calls of the model's output layer (one per decoding step) with a forward hook."""
    assert captioner.model is not None and captioner.processor is not None
    vocab = len(captioner.processor.tokenizer)
    heads = [m for m in captioner.model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == vocab]
    assert len(heads) == 1
    steps = [0]

    def hook(*_: object) -> None:
        steps[0] += 1

    heads[0].register_forward_hook(hook)
    return steps


def test_an_empty_batch_yields_nothing(load: Load) -> None:
    assert list(load("blip-tiny").generate([])) == []


def test_a_closed_captioner_refuses_new_work(model_cache: Path) -> None:
    captioner = create_captioner("random:blip-tiny", ModelOptions(cache_dir=model_cache))
    captioner.setup()
    captioner.setup()  # a second setup is a no-op
    captioner.close()
    with pytest.raises(RuntimeError, match="closed"):
        list(captioner.generate([(FRAME, Task.caption())]))


def test_frames_in_other_modes_are_converted(load: Load) -> None:
    grey = Image.new("L", (300, 200), 128)
    rgba = Image.new("RGBA", (200, 300), (10, 20, 30, 128))
    events = list(load("blip-tiny").generate([(grey, Task.caption()), (rgba, Task.caption())]))
    assert sorted(event.index for event in events if isinstance(event, Caption)) == [0, 1]


@pytest.mark.parametrize("name", ["blip-tiny", "git-tiny", "florence2-tiny", "smolvlm-tiny"])
def test_a_caption_does_not_depend_on_the_rest_of_its_batch(load: Load, name: str) -> None:
    # Padding must be invisible: a longer prompt beside it (padded left for decoder-only
    # models, right for encoder-decoders) leaves an item's caption unchanged.
    captioner = load(name)
    other = Task.query("What colour is the big red car over there?")
    if TaskKind.QUERY not in captioner.info.tasks:
        other = Task.caption("long")
    alone = captioner.caption(FRAME, Task.caption())
    noise = Image.effect_noise((100, 100), 50).convert("RGB")
    batch = [
        event for event in captioner.generate([(noise, other), (FRAME, Task.caption())]) if isinstance(event, Caption)
    ]
    assert [caption.text for caption in batch if caption.index == 1] == [alone.text]


def test_an_error_inside_generation_reaches_the_consumer(model_cache: Path) -> None:
    # BLIP's decoder has 512 positions: forcing 600 tokens fails inside model.generate, on the
    # worker thread. The error must surface in the consumer, with the worker gone.
    options = ModelOptions(cache_dir=model_cache, max_new_tokens=600, min_new_tokens=600)
    with create_captioner("random:blip-tiny", options) as captioner:
        with pytest.raises(IndexError):
            list(captioner.generate([(FRAME, Task.caption())]))
        assert not [thread for thread in threading.enumerate() if thread.name.startswith("camcap-generate")]


def test_out_of_device_memory_fails_the_batch_and_frees_the_cache(model_cache: Path, monkeypatch) -> None:
    import torch

    freed: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(True))
    with create_captioner("random:blip-tiny", ModelOptions(cache_dir=model_cache, max_new_tokens=3)) as captioner:

        def out_of_memory(**kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        monkeypatch.setattr(captioner.model, "generate", out_of_memory)
        with pytest.raises(torch.OutOfMemoryError):
            list(captioner.generate([(FRAME, Task.caption())]))
        assert freed == [True]
        monkeypatch.undo()  # the model recovers: the next frame is captioned
        assert captioner.caption(FRAME).text


def test_compile_asks_for_a_static_cache_where_the_decoder_supports_one(load: Load) -> None:
    from camcap.models.transformers import compile_decoding

    model = load("smolvlm-tiny").model  # Idefics3 around a Llama decoder (which can run compiled)
    assert model is not None
    config = model.generation_config
    before = (config.cache_implementation, config.compile_config)
    try:
        # The device is only named here: the switch is the generation config, read by generate().
        assert compile_decoding(model, "cuda:0", "random:smolvlm-tiny") is True
        assert config.cache_implementation == "static"
        assert config.compile_config is not None and config.compile_config.fullgraph is False
    finally:
        config.cache_implementation, config.compile_config = before


def test_compile_says_why_it_runs_uncompiled(load: Load, caplog: pytest.LogCaptureFixture) -> None:
    from camcap.models.transformers import compile_decoding

    smolvlm, blip = load("smolvlm-tiny").model, load("blip-tiny").model
    assert smolvlm is not None and blip is not None
    with caplog.at_level(logging.WARNING, logger="camcap.models.transformers"):
        assert compile_decoding(smolvlm, "cpu", "random:smolvlm-tiny") is False
        assert compile_decoding(blip, "cuda:0", "random:blip-tiny") is False  # BLIP's decoder: no static cache
    assert "runs uncompiled on cpu" in caplog.text
    assert "no static-cache support" in caplog.text
    assert smolvlm.generation_config.cache_implementation is None
    assert blip.generation_config.cache_implementation is None
