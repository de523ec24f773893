"""camcap as an OpenAI-compatible server: the official `openai` client against a running `camcap serve`.

Real processes, a real random-weight model (GIT, which both captions and answers questions), and
the client exactly as users run it: plain and streamed answers, OpenAI's error shapes, the access
token as the API key beyond loopback, and 429 with Retry-After when the server is full.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
from PIL import Image
from websockets.sync.client import connect

from tests.openai_servers import Served, start_serve

MODEL = "random:git-tiny"
TOKEN = "beyond-loopback-token-0123456789"


def image_url(colour: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (320, 240)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def user(text: str | None = None, url: str | None = None) -> list[dict]:
    content: list[dict] = [{"type": "image_url", "image_url": {"url": url or image_url()}}]
    if text is not None:
        content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


@pytest.fixture(scope="module")
def server(subprocess_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_serve(MODEL, subprocess_env, tmp_path_factory.mktemp("serve"))
    yield served
    served.stop()


@pytest.fixture(scope="module")
def guarded(subprocess_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Listening beyond loopback, so its token is required; serving one client at a time; fetching
    http(s) image URLs."""
    served = start_serve(
        MODEL, subprocess_env, tmp_path_factory.mktemp("guarded"), "--no-https", "--allow-image-urls",
        host="0.0.0.0", token=TOKEN, extra_env={"CAMCAP_MAX_STREAMS": "1"},
    )  # fmt: skip
    yield served
    served.stop()


@pytest.fixture
def client(server: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused-on-loopback", max_retries=0, timeout=120)


def test_models_lists_the_loaded_model(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL]


def test_a_plain_completion_captions_the_image(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=user())
    assert answer.object == "chat.completion" and answer.model == MODEL
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage is not None and answer.usage.completion_tokens > 0


def test_a_question_is_answered_and_the_answer_streams(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=user("What colour is the wall?"), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) >= 2, "the words arrive as separate chunks, not one at the end"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_the_stream_is_sse_ending_in_done_exactly_as_openai_sends_it(server: Served) -> None:
    body = {"model": MODEL, "messages": user(), "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2][len("data: ") :])
    assert last["object"] == "chat.completion.chunk"
    assert last["choices"][0]["delta"] == {} and last["choices"][0]["finish_reason"] in ("stop", "length")


def test_max_tokens_stops_the_answer_with_finish_reason_length(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=user(), max_tokens=2)
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens <= 2
    stream = client.chat.completions.create(model=MODEL, messages=user(), max_tokens=1, stream=True)
    chunks = list(stream)
    assert len([c for c in chunks if c.choices[0].delta.content]) == 1
    assert chunks[-1].choices[0].finish_reason == "length"


def test_a_bad_image_is_refused_in_openais_error_shape(client: openai.OpenAI) -> None:
    not_an_image = "data:image/jpeg;base64," + base64.b64encode(b"hello, not a picture").decode()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=user(url=not_an_image))
    assert caught.value.code == "invalid_image"
    assert "not an image" in caught.value.message
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "invalid_request_error"


def test_a_question_too_long_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=user("why? " * 200))
    assert caught.value.code == "context_length_exceeded"
    assert "max_question_chars" in caught.value.message


def test_image_urls_are_not_fetched_unless_allowed(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=user(url="http://169.254.169.254/latest/meta-data"))
    assert caught.value.code == "image_url_not_allowed"
    assert "--allow-image-urls" in caught.value.message


def test_a_request_without_an_image_or_for_another_model_says_what_to_send(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="image_url"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}])
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=user())
    assert caught.value.code == "model_not_found" and MODEL in caught.value.message


def test_beyond_loopback_the_token_is_the_api_key(guarded: Served) -> None:
    url = f"{guarded.url}/v1"
    for wrong in ("not-the-token", ""):
        with pytest.raises(openai.AuthenticationError) as caught:
            openai.OpenAI(base_url=url, api_key=wrong or "x", max_retries=0).models.list()
        assert caught.value.code in ("token_invalid", "token_required")
    right = openai.OpenAI(base_url=url, api_key=TOKEN, max_retries=0, timeout=120)
    answer = right.chat.completions.create(model=MODEL, messages=user())
    assert answer.choices[0].message.content


def test_a_full_server_answers_429_with_retry_after(guarded: Served) -> None:
    client = openai.OpenAI(base_url=f"{guarded.url}/v1", api_key=TOKEN, max_retries=0, timeout=120)
    ws_url = guarded.url.replace("http://", "ws://") + "/v1/stream"
    # A live page holds the server's only client slot (CAMCAP_MAX_STREAMS=1). A stream takes its
    # slot with its first frame (connecting alone holds none) and keeps it while it stays active.
    with connect(ws_url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as page:
        assert json.loads(page.recv(timeout=60))["type"] == "ready"
        frame = io.BytesIO()
        Image.new("RGB", (320, 240), (200, 40, 40)).save(frame, format="JPEG")
        page.send(frame.getvalue())
        while json.loads(page.recv(timeout=120))["type"] != "caption":
            pass
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=user())
        assert caught.value.response.headers["retry-after"] == "5"
        assert caught.value.code == "too_many_streams"
    # The page left: the slot is free again (the server frees it when the socket closes).
    answer = openai.OpenAI(base_url=f"{guarded.url}/v1", api_key=TOKEN, max_retries=3, timeout=120)
    assert answer.chat.completions.create(model=MODEL, messages=user()).choices[0].message.content


def test_with_allow_image_urls_an_http_image_is_fetched(guarded: Served) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (40, 40, 200)).save(buffer, format="JPEG")

    class Picture(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(buffer.getvalue())))
            self.end_headers()
            self.wfile.write(buffer.getvalue())

        def log_message(self, format: str, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Picture) as pictures:
        threading.Thread(target=pictures.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{pictures.server_address[1]}/photo.jpg"
        client = openai.OpenAI(base_url=f"{guarded.url}/v1", api_key=TOKEN, max_retries=3, timeout=120)
        answer = client.chat.completions.create(model=MODEL, messages=user(url=url))
        pictures.shutdown()
    assert answer.choices[0].message.content
