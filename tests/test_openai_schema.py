"""How a chat completion request becomes one frame and one task (camcap.server.openai_schema)."""

from __future__ import annotations

import json

import pytest

from camcap.models.base import Task
from camcap.models.openai_api import DEFAULT_PROMPTS
from camcap.server.openai_schema import BadChatRequest, ChatCompletionRequest, read_ask, request_body_schema

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}


def ask(*messages: dict) -> tuple[str, Task]:
    result = read_ask(ChatCompletionRequest.model_validate({"model": "m", "messages": list(messages)}))
    return result.image_url, result.task


def test_an_image_alone_asks_for_a_caption() -> None:
    assert ask({"role": "user", "content": [IMAGE]}) == ("data:image/jpeg;base64,AAAA", Task.caption())


@pytest.mark.parametrize("length", ["short", "normal", "long"])
def test_camcaps_own_caption_prompts_ask_for_a_caption_of_that_length(length: str) -> None:
    text = {"type": "text", "text": "  " + DEFAULT_PROMPTS[f"caption_{length}"].upper() + " "}
    assert ask({"role": "user", "content": [IMAGE, text]})[1] == Task.caption(length)  # type: ignore[arg-type]


def test_other_text_is_a_question_about_the_latest_image() -> None:
    older = {"type": "image_url", "image_url": "data:image/png;base64,BBBB"}  # the bare-string form
    url, task = ask(
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [older, {"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": "A mug."},
        {"role": "user", "content": [IMAGE]},
        {"role": "user", "content": "What colour is it?"},
    )
    assert (url, task) == ("data:image/jpeg;base64,AAAA", Task.query("What colour is it?"))


def test_a_request_without_an_image_or_a_user_says_what_to_send() -> None:
    with pytest.raises(BadChatRequest, match="image_url"):
        ask({"role": "user", "content": "hello"})
    with pytest.raises(BadChatRequest, match="no user message"):
        ask({"role": "system", "content": [IMAGE]})


def test_the_documented_request_schema_is_self_contained() -> None:
    schema = request_body_schema()
    assert "$ref" not in json.dumps(schema) and "$defs" not in schema
    assert {"model", "messages"} <= set(schema["required"])
