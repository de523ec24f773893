"""The `openai:` backend: captions from a vision server you already run (vLLM, SGLang, llama.cpp's
llama-server, Ollama, LM Studio) through its OpenAI-compatible chat completions.

Spec: `openai:<base_url>#<model>`, e.g. `openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-VL-3B-Instruct`.
Each frame (already sized by camcap to `--input-size` on its short side) is sent as a JPEG
`data:` URL in one streamed chat completion; its deltas become `Token` events. The server batches
for itself, so this backend declares `concurrency = --max-inflight` and the scheduler keeps up to
that many single-frame requests in flight (one per stream at a time). The API key comes from
CAMCAP_OPENAI_API_KEY only, and appears in no log, event, error or `/v1/info`.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import logging
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from camcap.errors import RemoteModelError, UnknownModelSpecError, UnsupportedTaskError
from camcap.models._prompts import CHAT_INSTRUCTIONS
from camcap.models.base import Caption, Captioner, Event, ModelInfo, Request, Task, TaskKind, Timings, Token
from camcap.models.options import ModelOptions

if TYPE_CHECKING:
    from PIL import Image

    from camcap.models._openai_http import OpenAIHTTP

logger = logging.getLogger(__name__)

SPEC_PREFIX = "openai:"
#: The short side frames are sized to when `--input-size` is not given: what most served VLMs
#: (Qwen2.5-VL, SmolVLM, Gemma 3, LLaVA) read without upscaling or tiling much.
DEFAULT_INPUT_SIZE = 512
DEFAULT_MAX_INFLIGHT = 8
DEFAULT_TIMEOUT_S = 60.0
JPEG_QUALITY = 85
TASKS = (TaskKind.CAPTION, TaskKind.QUERY)

#: The prompt of each task; `{question}` stands for the query's question. The caption prompts are
#: the chat instructions camcap's own chat models use, so a camcap server behind `openai:` reads
#: them as captions (server/openai_compat.py). Override with CAMCAP_OPENAI_PROMPTS or --openai-prompt.
DEFAULT_PROMPTS: dict[str, str] = {
    "caption_short": CHAT_INSTRUCTIONS["short"],
    "caption_normal": CHAT_INSTRUCTIONS["normal"],
    "caption_long": CHAT_INSTRUCTIONS["long"],
    "query": "{question}",
}


@dataclass(frozen=True)
class OpenAITarget:
    """Where an `openai:` spec points: the API's base URL and the model's id on that server."""

    base_url: str  # e.g. "http://127.0.0.1:8000/v1"
    model: str

    @property
    def origin(self) -> str:
        """scheme://host[:port]: who receives the frames, as the page and the log name it."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""


def parse_spec(spec: str) -> OpenAITarget:
    """Read `openai:<base_url>#<model>`. Raises `UnknownModelSpecError` saying what a spec looks like."""
    example = "e.g. openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-VL-3B-Instruct"
    rest = spec[len(SPEC_PREFIX) :] if spec.startswith(SPEC_PREFIX) else spec
    url, _, model = rest.partition("#")
    url, model = url.strip(), model.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnknownModelSpecError(f"The openai: spec needs an http(s) base URL before '#'; got {url!r} ({example}).")
    if not model:
        raise UnknownModelSpecError(
            f"The openai: spec needs the server's model id after '#' ({example}); `GET {url}/models` lists them."
        )
    if parts.username or parts.password:
        # The spec is shown in logs and GET /v1/info: a secret has no place in it.
        raise UnknownModelSpecError(
            "Put no credentials in the openai: URL (it is shown in logs and GET /v1/info); "
            "set the API key in CAMCAP_OPENAI_API_KEY instead."
        )
    path = parts.path.rstrip("/") or "/v1"  # a bare host means the usual /v1 root
    return OpenAITarget(urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")), model)


def check_prompts(overrides: Mapping[str, str]) -> dict[str, str]:
    """The default prompts with `overrides` applied. Raises `ValueError` naming the valid keys."""
    unknown = sorted(set(overrides) - set(DEFAULT_PROMPTS))
    if unknown:
        raise ValueError(f"Unknown openai prompt {', '.join(unknown)}; the prompts are: {', '.join(DEFAULT_PROMPTS)}.")
    prompts = {**DEFAULT_PROMPTS, **overrides}
    if "{question}" not in prompts["query"]:
        raise ValueError("The openai query prompt must contain {question}, where the question goes.")
    if not all(text.strip() for text in prompts.values()):
        raise ValueError("An openai prompt cannot be empty.")
    return prompts


def leaves_private_network(host: str) -> bool:
    """True unless every address `host` resolves to is on this machine or a private network.

    A name that does not resolve counts as leaving: camcap cannot vouch for where it goes.
    """
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except OSError:
        return True
    # `is_global` is False for loopback, RFC 1918, link-local, ULA and carrier-grade NAT (Tailscale).
    return not addresses or any(ipaddress.ip_address(str(address).split("%")[0]).is_global for address in addresses)


class OpenAICaptioner(Captioner):
    """Captions through an OpenAI-compatible chat completions server. Thread-safe: the scheduler
    runs up to `info.concurrency` generations at once."""

    def __init__(self, spec: str, options: ModelOptions) -> None:
        self.spec = spec
        self.target = parse_spec(spec)
        self.options = options
        try:
            self.prompts = check_prompts(dict(options.openai_prompts))
        except ValueError as exc:
            raise UnknownModelSpecError(str(exc)) from None
        self._http: OpenAIHTTP | None = None
        self._info: ModelInfo | None = None

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise RuntimeError("OpenAICaptioner.info is known after setup(); call setup() first.")
        return self._info

    def setup(self) -> None:
        """Check the server lists the model (the error lists the ones it has)."""
        from camcap.models._openai_http import OpenAIHTTP

        key = self.options.openai_api_key
        inflight = self.options.max_inflight
        http = OpenAIHTTP(
            self.target.base_url,
            None if key is None else key.get_secret_value(),
            timeout_s=self.options.openai_timeout_s,
            max_connections=inflight + 2,  # + the model check, + one a closing stream still holds
        )
        try:
            models = http.list_models()
            if self.target.model not in models:
                listed = ", ".join(models[:20]) or "none"
                raise RemoteModelError(
                    f"The server at {self.target.base_url} has no model {self.target.model!r}. It serves: {listed}. "
                    f"Use openai:{self.target.base_url}#<one of them>."
                )
        except BaseException:
            http.close()
            raise
        leaves = leaves_private_network(self.target.host)
        self._http = http
        self._info = ModelInfo(
            name=self.spec,
            backend="openai",
            device=self.target.origin,  # where it runs, as far as camcap can tell
            dtype="remote",
            tasks=TASKS,
            input_size=self.options.input_size or DEFAULT_INPUT_SIZE,
            max_batch=1,  # one frame per request; the server batches requests itself
            concurrency=inflight,
            frames_sent_to=self.target.origin,
            frames_leave_network=leaves,
        )

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def generate(self, requests: Sequence[Request]) -> Iterator[Event]:
        for _, task in requests:
            if task.kind not in TASKS:
                raise UnsupportedTaskError(
                    f"The openai: backend cannot {task.kind.value}: chat completions answer in text, not boxes or "
                    f"points. It supports: {', '.join(kind.value for kind in TASKS)}."
                )
        if self._http is None:
            raise RuntimeError("OpenAICaptioner.generate needs setup() first.")
        return self._run(self._http, list(requests))

    def prompt(self, task: Task) -> str:
        """The text sent with the frame for `task`."""
        if task.kind is TaskKind.QUERY:
            return self.prompts["query"].replace("{question}", task.question or "")
        return self.prompts[f"caption_{task.length}"]

    def _run(self, http: OpenAIHTTP, requests: list[Request]) -> Iterator[Event]:
        for index, (image, task) in enumerate(requests):
            started = time.perf_counter()
            body = self._body(image, task)
            sent = time.perf_counter()
            first: float | None = None
            parts: list[str] = []
            end_tokens: int | None = None
            for item in http.stream_chat(body):
                if isinstance(item, str):
                    first = first if first is not None else time.perf_counter()
                    parts.append(item)
                    yield Token(index, item)
                else:
                    end_tokens = item.completion_tokens
            done = time.perf_counter()
            first = first if first is not None else done
            yield Caption(
                index=index,
                text="".join(parts).strip(),
                task=task,
                timings=Timings(
                    preprocess_ms=(sent - started) * 1000,
                    first_token_ms=(first - sent) * 1000,
                    decode_ms=(done - first) * 1000,
                    total_ms=(done - started) * 1000,
                    # The server's count when it gives one; else one per streamed delta (one token
                    # each on vLLM, SGLang, llama-server and Ollama).
                    tokens=end_tokens if end_tokens is not None else len(parts),
                ),
            )

    def _body(self, image: Image.Image, task: Task) -> dict[str, Any]:
        content = [
            {"type": "image_url", "image_url": {"url": jpeg_data_url(image)}},
            {"type": "text", "text": self.prompt(task)},
        ]
        return {
            "model": self.target.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.options.max_new_tokens,
            "temperature": 0,  # the same frame gets the same caption: changes in text mean changes in view
            "stream": True,
        }


def jpeg_data_url(image: Image.Image, quality: int = JPEG_QUALITY) -> str:
    """`image` as a `data:image/jpeg;base64,...` URL (the frame is already sized by camcap)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
