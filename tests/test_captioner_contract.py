"""The Captioner contract, run over every backend spec that can run on this machine.

Each spec is loaded through `create_captioner`, the path the CLI and the server use, from a
random-weight checkpoint of a real architecture (built once per test session).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from camcap.errors import UnsupportedTaskError
from camcap.models.base import Caption, Captioner, Event, Task, TaskKind, Token
from camcap.models.options import ModelOptions
from camcap.models.registry import create_captioner

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPECS = ["random:blip-tiny", "random:git-tiny", "random:florence2-tiny", "random:smolvlm-tiny"]
MAX_NEW_TOKENS = 5


@pytest.fixture(scope="module", params=SPECS)
def captioner(request: pytest.FixtureRequest, model_cache: Path) -> Iterator[Captioner]:
    # min_new_tokens=2 so that no item ends before its first word: every caption has text.
    options = ModelOptions(cache_dir=model_cache, max_new_tokens=MAX_NEW_TOKENS, min_new_tokens=2)
    with create_captioner(request.param, options) as loaded:
        yield loaded


def frames() -> list[Image.Image]:
    """Three frames that differ, in three sizes."""
    red = Image.new("RGB", (640, 480), (200, 30, 30))
    gradient = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    noise = Image.effect_noise((480, 640), 80).convert("RGB")
    return [red, gradient, noise]


def generation_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("camcap-generate")]


def run(captioner: Captioner, tasks: list[Task]) -> list[Event]:
    return list(captioner.generate(list(zip(frames(), tasks, strict=False))))


def test_info_describes_the_loaded_model(captioner: Captioner) -> None:
    info = captioner.info
    assert info.name in SPECS
    assert info.backend == "transformers"
    assert TaskKind.CAPTION in info.tasks
    assert len(set(info.tasks)) == len(info.tasks)
    assert 64 <= info.input_size <= 2048
    assert info.max_batch >= 1
    assert info.random_weights is True
    assert info.device == "cpu"
    assert info.dtype == "float32"


def test_caption_returns_text(captioner: Captioner) -> None:
    caption = captioner.caption(frames()[0], Task.caption("short"))
    assert isinstance(caption, Caption)
    assert caption.index == 0
    assert caption.task == Task.caption("short")
    assert caption.text
    assert caption.text == caption.text.strip()


def test_batch_gives_one_caption_per_item_with_its_index_and_task(captioner: Captioner) -> None:
    tasks = [Task.caption("short"), Task.caption("normal"), Task.caption("long")]
    captions = [event for event in run(captioner, tasks) if isinstance(event, Caption)]
    assert sorted(caption.index for caption in captions) == [0, 1, 2]
    for caption in captions:
        assert caption.task == tasks[caption.index]


def test_streamed_deltas_add_up_to_the_final_text(captioner: Captioner) -> None:
    events = run(captioner, [Task.caption()] * 3)
    streamed = {0: "", 1: "", 2: ""}
    finished: set[int] = set()
    for event in events:
        if isinstance(event, Token):
            assert event.index not in finished, "a token arrived after its item's caption"
            streamed[event.index] += event.text
        else:
            assert isinstance(event, Caption)
            assert streamed[event.index] == event.text
            finished.add(event.index)
    assert finished == {0, 1, 2}
    assert any(isinstance(event, Token) for event in events)


def test_timings_are_present_and_consistent(captioner: Captioner) -> None:
    for event in run(captioner, [Task.caption()] * 3):
        if not isinstance(event, Caption):
            continue
        timings = event.timings
        for value in (timings.preprocess_ms, timings.first_token_ms, timings.decode_ms, timings.total_ms):
            assert value >= 0
        assert timings.total_ms >= timings.preprocess_ms + timings.first_token_ms
        assert timings.total_ms >= timings.decode_ms
        assert 2 <= timings.tokens <= MAX_NEW_TOKENS


def test_unsupported_task_fails_before_any_work_naming_the_supported_tasks(captioner: Captioner) -> None:
    before = len(generation_threads())
    # No transformers architecture points (Florence-2 detects, Moondream does both).
    requests = [(frames()[0], Task.caption()), (frames()[1], Task.point("car"))]
    with pytest.raises(UnsupportedTaskError) as error:
        captioner.generate(requests)  # raises on the call itself, not on the first next()
    message = str(error.value)
    assert "point" in message
    for kind in captioner.info.tasks:
        assert kind.value in message
    assert len(generation_threads()) == before


def test_query_is_answered_where_supported(captioner: Captioner) -> None:
    task = Task.query("What colour is the car?")
    if TaskKind.QUERY not in captioner.info.tasks:
        with pytest.raises(UnsupportedTaskError):
            captioner.generate([(frames()[0], task)])
        return
    caption = captioner.caption(frames()[0], task)
    assert caption.task == task
    assert caption.text


def test_generate_does_no_work_until_iterated(captioner: Captioner) -> None:
    before = len(generation_threads())
    events = captioner.generate([(frames()[0], Task.caption())])
    assert len(generation_threads()) == before
    assert isinstance(next(iter(events)), Token | Caption)
    events.close()  # type: ignore[attr-defined]


def test_closing_early_stops_generation_and_releases_the_model(captioner: Captioner) -> None:
    events = captioner.generate([(frames()[0], Task.caption()), (frames()[1], Task.caption())])
    assert isinstance(next(events), Token | Caption)
    events.close()  # type: ignore[attr-defined]
    assert generation_threads() == []
    # The model is free again: the next request runs to its captions.
    captions = [event for event in run(captioner, [Task.caption()]) if isinstance(event, Caption)]
    assert [caption.index for caption in captions] == [0]
