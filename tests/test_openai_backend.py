"""camcap as an OpenAI client: the `openai:` backend against a second, real `camcap serve`.

The upstream is camcap itself serving a random-weight GIT model behind an access token (so 401 is
real). Between the two sits tests/openai_servers.FaultProxy, a real HTTP proxy that passes
everything through unless a test injects a fault: 429, a hang-up, a cut mid-answer, a held request.
One test kills the upstream process in the middle of an answer.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from pydantic import SecretStr
from websockets.sync.client import connect

from camcap.engine.events import Frame, FrameCaption, FrameError
from camcap.engine.scheduler import Scheduler
from camcap.errors import RemoteModelError, UnknownModelSpecError, UnsupportedTaskError
from camcap.models.base import Caption, Task, Token
from camcap.models.openai_api import (
    DEFAULT_PROMPTS,
    OpenAICaptioner,
    check_prompts,
    leaves_private_network,
    parse_spec,
)
from camcap.models.options import ModelOptions
from camcap.server.messages import FRAME_MAGIC
from tests.openai_servers import UPSTREAM_TOKEN, Fault, FaultProxy, Served, start_serve

UPSTREAM_MODEL = "random:git-tiny"
WAIT_S = 120.0  # a bound for waits on 2 shared cores, never an expectation


@pytest.fixture(scope="module")
def upstream(subprocess_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_serve(UPSTREAM_MODEL, subprocess_env, tmp_path_factory.mktemp("upstream"), token=UPSTREAM_TOKEN)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def proxy(upstream: Served) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream.url)
    yield proxy
    proxy.close()


@pytest.fixture
def fresh_proxy(proxy: FaultProxy) -> Iterator[FaultProxy]:
    proxy.reset()
    yield proxy
    proxy.clear()


def options(**changes: object) -> ModelOptions:
    base: dict[str, object] = {"openai_api_key": SecretStr(UPSTREAM_TOKEN), "max_new_tokens": 6, "max_inflight": 4}
    return ModelOptions(**{**base, **changes})  # type: ignore[arg-type]


def spec(base: str, model: str = UPSTREAM_MODEL) -> str:
    return f"openai:{base}/v1#{model}"


@pytest.fixture
def captioner(fresh_proxy: FaultProxy) -> Iterator[OpenAICaptioner]:
    with OpenAICaptioner(spec(fresh_proxy.url), options()) as loaded:
        yield loaded


def frame_image(colour: tuple[int, int, int] = (30, 160, 60)) -> Image.Image:
    return Image.new("RGB", (512, 384), colour)


def sent_bodies(proxy: FaultProxy) -> list[dict]:
    return [json.loads(body) for body in proxy.chat_requests()]


# --- captions and tokens -------------------------------------------------------------------------


def test_the_frame_goes_as_a_streamed_jpeg_data_url_and_tokens_come_back(
    captioner: OpenAICaptioner, fresh_proxy: FaultProxy
) -> None:
    events = list(captioner.generate([(frame_image(), Task.caption("short"))]))
    tokens = [event for event in events if isinstance(event, Token)]
    (caption,) = [event for event in events if isinstance(event, Caption)]
    assert tokens, "the answer streams token by token"
    assert "".join(token.text for token in tokens).strip() == caption.text != ""
    assert caption.timings.tokens == len(tokens)
    assert caption.timings.first_token_ms > 0 and caption.timings.total_ms >= caption.timings.first_token_ms

    (body,) = sent_bodies(fresh_proxy)
    assert (body["model"], body["stream"], body["max_tokens"]) == (UPSTREAM_MODEL, True, 6)
    image_part, text_part = body["messages"][0]["content"]
    assert text_part == {"type": "text", "text": DEFAULT_PROMPTS["caption_short"]}
    prefix = "data:image/jpeg;base64,"
    assert image_part["image_url"]["url"].startswith(prefix)
    sent = Image.open(io.BytesIO(base64.b64decode(image_part["image_url"]["url"][len(prefix) :])))
    assert (sent.format, sent.size) == ("JPEG", (512, 384))
    # The key travels as the Authorization header, and only there.
    (headers,) = [h for method, path, h, _ in fresh_proxy.requests if path.endswith("/chat/completions")]
    assert headers["Authorization"] == f"Bearer {UPSTREAM_TOKEN}"
    assert UPSTREAM_TOKEN not in json.dumps(body)


def test_info_says_where_frames_go_and_what_the_backend_can_do(captioner: OpenAICaptioner, proxy: FaultProxy) -> None:
    info = captioner.info
    assert (info.backend, info.max_batch, info.concurrency, info.input_size) == ("openai", 1, 4, 512)
    assert [kind.value for kind in info.tasks] == ["caption", "query"]
    assert info.frames_sent_to == proxy.url and info.frames_leave_network is False
    with pytest.raises(UnsupportedTaskError, match="cannot detect"):
        captioner.generate([(frame_image(), Task.detect("cup"))])


def test_a_query_is_sent_in_its_prompt_template(fresh_proxy: FaultProxy) -> None:
    prompts = (("query", "Answer in one word: {question}"), ("caption_normal", "What do you see?"))
    with OpenAICaptioner(spec(fresh_proxy.url), options(openai_prompts=prompts, input_size=320)) as loaded:
        assert loaded.info.input_size == 320
        assert loaded.caption(frame_image(), Task.query("What colour is it?")).text
        assert loaded.caption(frame_image(), Task.caption()).text
    texts = [body["messages"][0]["content"][1]["text"] for body in sent_bodies(fresh_proxy)]
    assert texts == ["Answer in one word: What colour is it?", "What do you see?"]


# --- errors at load ------------------------------------------------------------------------------


def test_an_unknown_model_lists_the_ones_the_server_has(proxy: FaultProxy) -> None:
    with pytest.raises(RemoteModelError) as caught, OpenAICaptioner(spec(proxy.url, "llava-13b"), options()):
        pass
    assert "no model 'llava-13b'" in str(caught.value) and UPSTREAM_MODEL in str(caught.value)


def test_a_wrong_url_says_so(proxy: FaultProxy) -> None:
    with pytest.raises(RemoteModelError, match=r"HTTP 404.*ends in /v1"):
        OpenAICaptioner(f"openai:{proxy.url}/api#{UPSTREAM_MODEL}", options()).setup()
    with pytest.raises(
        RemoteModelError, match=re.escape("Cannot reach an OpenAI-compatible server at http://127.0.0.1:9/v1")
    ):
        OpenAICaptioner(spec("http://127.0.0.1:9"), options()).setup()


def test_401_says_to_set_the_key_and_never_shows_it(upstream: Served) -> None:
    with pytest.raises(RemoteModelError, match="needs an API key: set CAMCAP_OPENAI_API_KEY"):
        OpenAICaptioner(spec(upstream.url), options(openai_api_key=None)).setup()
    wrong = "wrong-key-but-secret-all-the-same"
    with pytest.raises(RemoteModelError, match=r"refused camcap's API key.*HTTP 401") as caught:
        OpenAICaptioner(spec(upstream.url), options(openai_api_key=SecretStr(wrong))).setup()
    assert wrong not in str(caught.value) and UPSTREAM_TOKEN not in str(caught.value)
    assert wrong not in repr(options(openai_api_key=SecretStr(wrong)))


# --- faults while captioning ---------------------------------------------------------------------


def test_429_is_retried_and_a_server_that_stays_busy_is_reported(
    captioner: OpenAICaptioner, fresh_proxy: FaultProxy
) -> None:
    fresh_proxy.inject(Fault("status", times=1, status=429, headers={"Retry-After": "0"}))
    assert captioner.caption(frame_image()).text
    assert len(fresh_proxy.chat_requests()) == 2

    fresh_proxy.inject(Fault("status", times=-1, status=429, headers={"Retry-After": "0"}))
    with pytest.raises(RemoteModelError, match=r"busy.*HTTP 429.*Gave up after 3 tries"):
        captioner.caption(frame_image())
    assert len(fresh_proxy.chat_requests()) == 2 + 3


def test_5xx_and_a_hang_up_before_the_answer_are_retried(captioner: OpenAICaptioner, fresh_proxy: FaultProxy) -> None:
    fresh_proxy.inject(Fault("status", times=1, status=503, body=b'{"detail": "warming up"}'))
    fresh_proxy.inject(Fault("drop", times=1))
    assert captioner.caption(frame_image()).text
    assert len(fresh_proxy.chat_requests()) == 3


def test_a_400_is_reported_with_the_servers_reason(captioner: OpenAICaptioner, fresh_proxy: FaultProxy) -> None:
    refusal = b'{"error": {"message": "This model does not support image input", "type": "invalid_request_error"}}'
    fresh_proxy.inject(Fault("status", times=1, status=400, body=refusal))
    with pytest.raises(RemoteModelError, match=r"HTTP 400.*does not support image input.*text-only model"):
        captioner.caption(frame_image())
    assert len(fresh_proxy.chat_requests()) == 1, "a 400 is not retried"


def test_a_connection_cut_mid_answer_fails_that_frame_only(captioner: OpenAICaptioner, fresh_proxy: FaultProxy) -> None:
    fresh_proxy.inject(Fault("drop_after_token", times=1))
    events = captioner.generate([(frame_image(), Task.caption())])
    assert isinstance(next(events), Token)
    with pytest.raises(RemoteModelError, match="dropped in the middle of the answer"):
        list(events)
    assert len(fresh_proxy.chat_requests()) == 1, "tokens already shown: not retried"
    assert captioner.caption(frame_image()).text, "the next frame is captioned"


def test_a_slow_server_times_out_with_a_clear_error(fresh_proxy: FaultProxy) -> None:
    fault = fresh_proxy.inject(Fault("hold", times=1))
    with (
        OpenAICaptioner(spec(fresh_proxy.url), options(openai_timeout_s=1.0)) as loaded,
        pytest.raises(RemoteModelError, match=r"did not answer within 1 s.*CAMCAP_OPENAI_TIMEOUT_S"),
    ):
        loaded.caption(frame_image())
    fault.release.set()


def test_one_slow_request_does_not_hold_other_streams_back(captioner: OpenAICaptioner, fresh_proxy: FaultProxy) -> None:
    fault = fresh_proxy.inject(Fault("hold", times=1))

    async def main() -> None:
        scheduler = Scheduler(captioner)
        scheduler.start()
        try:
            slow, fast = scheduler.open_stream(), scheduler.open_stream()
            slow.submit(Frame(0, frame_image((200, 0, 0)), Task.caption()))
            assert await asyncio.to_thread(fresh_proxy.held.acquire, timeout=WAIT_S), "the first request is held"
            fast.submit(Frame(0, frame_image((0, 0, 200)), Task.caption()))
            while not isinstance(event := await asyncio.wait_for(fast.next_event(), WAIT_S), FrameCaption):
                assert not isinstance(event, FrameError), event
            early = [slow.events.get_nowait() for _ in range(slow.events.qsize())]
            assert not any(isinstance(e, FrameCaption) for e in early), "the held request is still held"
            fault.release.set()
            while not isinstance(event := await asyncio.wait_for(slow.next_event(), WAIT_S), FrameCaption):
                assert not isinstance(event, FrameError), event
        finally:
            await asyncio.to_thread(scheduler.close)

    asyncio.run(main())


@pytest.mark.slow  # starts a server of its own, to kill it
def test_an_upstream_killed_mid_answer_is_reported_then_unreachable(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    # Long answers, so the kill lands in the middle of one.
    long = {"CAMCAP_MAX_NEW_TOKENS": "400", "CAMCAP_MIN_NEW_TOKENS": "400"}
    doomed = start_serve(UPSTREAM_MODEL, subprocess_env, tmp_path, extra_env=long)
    try:
        with OpenAICaptioner(spec(doomed.url), options(openai_api_key=None, max_new_tokens=400)) as loaded:
            events = loaded.generate([(frame_image(), Task.caption())])
            assert isinstance(next(events), Token)
            doomed.process.kill()
            with pytest.raises(RemoteModelError, match="dropped in the middle of the answer"):
                list(events)
            with pytest.raises(RemoteModelError, match=r"Cannot reach .*Gave up after 3 tries"):
                loaded.caption(frame_image())
    finally:
        doomed.stop()


# --- camcap serve on an openai: model ----------------------------------------------------------------


@pytest.fixture(scope="module")
def downstream(
    upstream: Served, subprocess_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    served = start_serve(
        spec(upstream.url), subprocess_env, tmp_path_factory.mktemp("downstream"), "--max-inflight", "3",
        extra_env={"CAMCAP_OPENAI_API_KEY": UPSTREAM_TOKEN},
    )  # fmt: skip
    yield served
    served.stop()


def test_serve_streams_an_openai_models_tokens_to_a_live_stream(downstream: Served, upstream: Served) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 90, 200)).save(buffer, format="JPEG")
    header = json.dumps({"seq": 7, "captured_at": 1.0, "sent_at": 2.0}).encode()
    message = FRAME_MAGIC + len(header).to_bytes(4, "big") + header + buffer.getvalue()
    with connect(downstream.url.replace("http://", "ws://") + "/v1/stream") as socket:
        ready = json.loads(socket.recv(timeout=WAIT_S))
        assert ready["type"] == "ready" and ready["model"]["backend"] == "openai"
        socket.send(message)
        events = []
        while not events or events[-1]["type"] not in ("caption", "error"):
            events.append(json.loads(socket.recv(timeout=WAIT_S)))
    assert events[-1]["type"] == "caption", events[-1]
    tokens = [event["text"] for event in events if event["type"] == "token"]
    assert tokens and "".join(tokens).strip() == events[-1]["text"]
    assert events[-1]["seq"] == 7 and events[-1]["timings"]["tokens"] == len(tokens)


def test_serve_says_where_frames_go_and_never_shows_the_key(downstream: Served, upstream: Served) -> None:
    info = downstream.info()
    assert info["status"] == "ready"
    assert info["model"]["frames_sent_to"] == upstream.url
    assert info["model"]["frames_leave_network"] is False
    answer = httpx.post(f"{downstream.url}/v1/caption", files={"image": ("f.jpg", _jpeg(), "image/jpeg")}, timeout=60)
    assert answer.status_code == 200 and answer.json()["caption"]
    log = downstream.log()
    assert f"Frames are sent to {upstream.url}" in log
    for text in (json.dumps(info), answer.text, log):
        assert UPSTREAM_TOKEN not in text


def test_serve_reports_an_unreachable_server_in_v1_info(subprocess_env: dict[str, str], tmp_path: Path) -> None:
    served = start_serve(spec("http://127.0.0.1:9"), subprocess_env, tmp_path, wait_ready=False)
    try:
        info = served.info()
        assert info["status"] == "error" and "Cannot reach" in info["error"]
    finally:
        served.stop()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (10, 120, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


# --- the spec, the prompts, and where frames go -------------------------------------------------------


def test_specs_are_read_and_bad_ones_say_what_a_spec_looks_like() -> None:
    target = parse_spec("openai:http://gpu-box:8000/v1#Qwen/Qwen2.5-VL-3B-Instruct")
    assert (target.base_url, target.model, target.origin) == (
        "http://gpu-box:8000/v1", "Qwen/Qwen2.5-VL-3B-Instruct", "http://gpu-box:8000",
    )  # fmt: skip
    assert parse_spec("openai:http://127.0.0.1:11434#qwen2.5vl:3b").base_url == "http://127.0.0.1:11434/v1"
    with pytest.raises(UnknownModelSpecError, match="model id after '#'"):
        parse_spec("openai:http://127.0.0.1:8000/v1")
    with pytest.raises(UnknownModelSpecError, match=r"http\(s\) base URL"):
        parse_spec("openai:127.0.0.1:8000#m")
    with pytest.raises(UnknownModelSpecError, match="CAMCAP_OPENAI_API_KEY"):
        parse_spec("openai:https://user:secret@example.com/v1#m")


def test_prompt_overrides_are_checked() -> None:
    assert check_prompts({"caption_short": "Name it."})["caption_short"] == "Name it."
    with pytest.raises(ValueError, match="the prompts are: caption_short"):
        check_prompts({"caption_tiny": "x"})
    with pytest.raises(ValueError, match=re.escape("must contain {question}")):
        check_prompts({"query": "Answer this."})


@pytest.mark.parametrize(
    ("host", "leaves"),
    [
        ("127.0.0.1", False), ("localhost", False), ("::1", False), ("10.1.2.3", False), ("192.168.1.20", False),
        ("172.16.0.5", False), ("100.101.102.103", False), ("fd00::1", False),
        ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("no-such-host.invalid", True),
    ],
)  # fmt: skip
def test_frames_leave_the_network_unless_the_host_is_local_or_private(host: str, leaves: bool) -> None:
    assert leaves_private_network(host) is leaves


def test_cli_flags_reach_the_backends_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from camcap.cli._parser import build_parser
    from camcap.cli._settings import settings_from_args

    monkeypatch.setenv("CAMCAP_OPENAI_API_KEY", "from-the-environment-only")
    monkeypatch.setenv("CAMCAP_OPENAI_PROMPTS", '{"query": "Q: {question}", "caption_long": "Tell all."}')
    args = build_parser().parse_args([
        "serve", "--model", "openai:http://h/v1#m", "--input-size", "384", "--max-inflight", "16",
        "--openai-prompt", "caption_long=Everything, please.",
    ])  # fmt: skip
    model = settings_from_args(args).model_options()
    assert (model.input_size, model.max_inflight) == (384, 16)
    assert dict(model.openai_prompts) == {"query": "Q: {question}", "caption_long": "Everything, please."}
    assert model.openai_api_key is not None and model.openai_api_key.get_secret_value() == "from-the-environment-only"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--openai-api-key", "on-the-command-line"])


def test_caption_keeps_max_inflight_requests_going_and_prints_in_file_order(
    fresh_proxy: FaultProxy, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    colours = {"a.jpg": (200, 0, 0), "b.jpg": (0, 200, 0), "c.jpg": (0, 0, 200)}
    for name, colour in colours.items():
        Image.new("RGB", (640, 480), colour).save(tmp_path / name)
    fault = fresh_proxy.inject(Fault("hold", times=1))  # the first request waits...
    command = [
        sys.executable, "-m", "camcap", "caption", *colours, "--json", "--max-inflight", "3", "--input-size", "256",
        "--model", spec(fresh_proxy.url),
    ]  # fmt: skip
    env = {**subprocess_env, "CAMCAP_OPENAI_API_KEY": UPSTREAM_TOKEN, "CAMCAP_MAX_NEW_TOKENS": "4"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT_S
        # ...while the other two are sent all the same.
        while len(fresh_proxy.chat_requests()) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(fresh_proxy.chat_requests()) == 3, process.stderr.read().decode() if process.poll() else ""
        fault.release.set()
        out, err = process.communicate(timeout=WAIT_S)
    finally:
        fault.release.set()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err.decode()
    records = [json.loads(line) for line in out.decode().splitlines()]
    assert [record["file"] for record in records] == list(colours)
    assert all(record["caption"] for record in records)
    sizes = {Image.open(io.BytesIO(_image_of(body))).size for body in sent_bodies(fresh_proxy)}
    assert sizes == {(341, 256)}, "frames are sized to --input-size before they are sent"


def _image_of(body: dict) -> bytes:
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    return base64.b64decode(url.split(",", 1)[1])


def test_a_server_beyond_the_network_is_named_in_the_log_and_v1_info(caplog: pytest.LogCaptureFixture) -> None:
    import dataclasses

    from fastapi.testclient import TestClient

    from camcap.config import Settings
    from camcap.server.app import create_app
    from tests.fakes import FakeCaptioner

    remote = FakeCaptioner()
    remote._info = dataclasses.replace(remote.info, frames_sent_to="https://vlm.example.com", frames_leave_network=True)
    with (
        caplog.at_level("WARNING", logger="camcap.server.host"),
        TestClient(create_app(Settings(model="fake", allow_hosts=["testserver"]), captioner=remote)) as client,
    ):
        deadline = time.monotonic() + WAIT_S
        while (info := client.get("/v1/info").json())["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.01)
    assert info["model"]["frames_leave_network"] is True
    assert info["model"]["frames_sent_to"] == "https://vlm.example.com"
    assert "Frames leave this machine: every frame is sent to https://vlm.example.com" in caplog.text


def test_pull_and_doctor_know_an_openai_model_has_nothing_on_disk(capsys: pytest.CaptureFixture[str]) -> None:
    from camcap.cli import main
    from camcap.models.store import model_status

    remote = "openai:http://127.0.0.1:9/v1#some-vlm"
    assert main(["pull", remote]) == 0
    assert "runs on http://127.0.0.1:9, nothing to download" in capsys.readouterr().out
    status = model_status(remote, ModelOptions())
    assert (status.source, status.available, status.path) == ("remote", True, "http://127.0.0.1:9")
