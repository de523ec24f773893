"""The wire shapes of camcap's OpenAI-compatible routes (server/openai_compat.py), and how a chat
request becomes one frame and one task.

Requests are read leniently (clients send many fields camcap has no use for: `top_p`, `user`,
`tools`...), answers are shaped exactly as OpenAI sends them, so the official client, LangChain
and Open WebUI read them unchanged.

A chat request becomes a camcap task like this: the frame is the most recent image in the
conversation; the text is the last user message's text. No text, or one of the caption prompts
camcap's own `openai:` backend sends (`DEFAULT_CAPTION_PROMPTS`), asks for a caption of that
length; any other text is a question (`query`). System messages and earlier turns are not shown
to the model: it sees one frame and one instruction.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from camcap.models._prompts import CHAT_INSTRUCTIONS
from camcap.models.base import CaptionLength, Task

#: Text that asks for a caption rather than answers a question (compared without case or spaces).
DEFAULT_CAPTION_PROMPTS: dict[str, CaptionLength] = {
    " ".join(text.lower().split()): length for length, text in CHAT_INSTRUCTIONS.items()
}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageURL(_Lenient):
    url: str
    detail: str | None = None


class ContentPart(_Lenient):
    type: str
    text: str | None = None
    image_url: ImageURL | str | None = None


class ChatMessage(_Lenient):
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    """`POST /v1/chat/completions`: what camcap reads of it."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, description="Accepted; camcap's backends decode greedily.")
    n: int = Field(1, ge=1, le=1, description="One answer per request.")
    stream_options: StreamOptions | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class BadChatRequest(ValueError):
    """A request camcap cannot turn into a frame and a task; `param` names the field."""

    def __init__(self, message: str, param: str = "messages", code: str = "invalid_request") -> None:
        super().__init__(message)
        self.param, self.code = param, code


@dataclass(frozen=True)
class ChatAsk:
    """What a chat request asks: the image's URL (`data:` or `http(s):`), and the task."""

    image_url: str
    task: Task


def read_ask(request: ChatCompletionRequest) -> ChatAsk:
    """The frame and task a chat request asks for. Raises `BadChatRequest` saying what to send."""
    image_url: str | None = None
    for message in request.messages:
        for part in _parts(message):
            if part.type == "image_url" and part.image_url is not None:
                image_url = part.image_url if isinstance(part.image_url, str) else part.image_url.url
    if image_url is None:
        raise BadChatRequest(
            "camcap answers about an image: put one in a user message as "
            '{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}.'
        )
    users = [message for message in request.messages if message.role == "user"]
    if not users:
        raise BadChatRequest("The conversation has no user message; camcap answers the last one.")
    text = " ".join(part.text for part in _parts(users[-1]) if part.type == "text" and part.text).strip()
    length = DEFAULT_CAPTION_PROMPTS.get(" ".join(text.lower().split()))
    if not text:
        return ChatAsk(image_url, Task.caption())
    if length is not None:
        return ChatAsk(image_url, Task.caption(length))
    return ChatAsk(image_url, Task.query(text))


def _parts(message: ChatMessage) -> list[ContentPart]:
    if isinstance(message.content, str):
        return [ContentPart(type="text", text=message.content)]
    return list(message.content or [])


# --- answers ---------------------------------------------------------------------------------------


FinishReason = Literal["stop", "length"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Usage(_Out):
    # camcap does not count prompt tokens (the image's share depends on the model's processor): 0.
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(_Out):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(_Out):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: FinishReason = Field(description="length: max_tokens (or the server's --max-new-tokens) ended it.")


class ChatCompletion(_Out):
    """A whole answer (`stream` false). Streamed answers are `chat.completion.chunk` events."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ModelObject(_Out):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "camcap"


class ModelList(_Out):
    """`GET /v1/models`: the one model this server runs."""

    object: Literal["list"] = "list"
    data: list[ModelObject]


class OpenAIErrorDetail(_Out):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(_Out):
    """OpenAI's error shape, used by the OpenAI-compatible routes (including their 401 and 403)."""

    error: OpenAIErrorDetail


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(tokens: int) -> Usage:
    return Usage(prompt_tokens=0, completion_tokens=tokens, total_tokens=tokens)


def completion(ident: str, model: str, text: str, finish: FinishReason, tokens: int) -> ChatCompletion:
    """A whole `chat.completion`."""
    choice = Choice(message=AssistantMessage(content=text), finish_reason=finish)
    return ChatCompletion(id=ident, created=int(time.time()), model=model, choices=[choice], usage=usage(tokens))


def chunk(
    ident: str, model: str, delta: dict[str, str], finish: FinishReason | None = None, created: int | None = None
) -> dict[str, Any]:
    """One `chat.completion.chunk` of a streamed answer."""
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk(ident: str, model: str, tokens: int, created: int) -> dict[str, Any]:
    """The extra last chunk of a stream asked for with `stream_options.include_usage`."""
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(tokens).model_dump(),
    }


def model_list(model_id: str, created: int) -> ModelList:
    return ModelList(data=[ModelObject(id=model_id, created=created)])


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def speaks_openai(path: str) -> bool:
    """Whether `path` is one of the OpenAI-compatible routes (their errors take OpenAI's shape)."""
    return path == "/v1/models" or path.startswith("/v1/chat/")


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`."""
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    detail = OpenAIErrorDetail(message=message, type=kind, param=param, code=code)
    return OpenAIErrorResponse(error=detail).model_dump()


def request_body_schema() -> dict[str, Any]:
    """`ChatCompletionRequest`'s JSON schema with its `$defs` written in place, for the OpenAPI
    document (the route reads its body itself, to answer bad ones in OpenAI's error shape)."""
    schema = ChatCompletionRequest.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return inline(schema)
