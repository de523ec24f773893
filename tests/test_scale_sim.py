"""The scale-out simulation's parts: stand-in engines batch like a continuous-batching server, and
the router spreads camcap's `openai:` requests over them. Real subprocesses and real HTTP; no
timing is asserted (that is `camcap bench --scenarios scale_out`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from camcap.models.base import Caption
from camcap.models.options import ModelOptions
from camcap.models.registry import create_captioner
from camcap.scale._processes import free_port, started
from camcap.scale.router import Router
from camcap.scale.stand_in import MODEL_ID, Curve


@contextlib.contextmanager
def _engine(max_batch: int = 4) -> Iterator[str]:
    port = free_port()
    args = ["--port", str(port), "--fixed-ms", "20", "--per-item-ms", "1", "--max-batch", str(max_batch)]
    with started("camcap.scale.stand_in", args, f"http://127.0.0.1:{port}/v1/models"):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def _router(upstreams: list[str], policy: str = "least_loaded") -> Iterator[str]:
    port = free_port()
    args = ["--port", str(port), "--policy", policy, *(f"{url}/v1" for url in upstreams)]
    with started("camcap.scale.router", args, f"http://127.0.0.1:{port}/v1/models"):
        yield f"http://127.0.0.1:{port}"


def test_the_stand_in_curve_grows_with_the_batch_up_to_its_max() -> None:
    curve = Curve(fixed_ms=40, per_item_ms=5, max_batch=8)
    assert curve.step_s(1) == pytest.approx(0.045)
    assert curve.request_s(10) == pytest.approx(10 * 0.080)  # a full batch by default
    assert curve.request_s(10, batch=2) == pytest.approx(10 * 0.050)


def test_the_stand_in_batches_concurrent_requests_and_streams_max_tokens() -> None:
    with _engine(max_batch=4) as url:
        body = {
            "model": MODEL_ID,
            "max_tokens": 6,
            "stream": False,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        }
        with ThreadPoolExecutor(6) as pool:
            answers = list(
                pool.map(lambda _: httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60), range(6))
            )
        stats = httpx.get(f"{url}/stats").json()
    assert all(answer.status_code == 200 for answer in answers)
    assert all(len(answer.json()["choices"][0]["message"]["content"].split()) == 6 for answer in answers)
    batches = {int(size): count for size, count in stats["steps_by_batch"].items()}
    assert stats["served"] == 6
    assert max(batches) > 1 and max(batches) <= 4  # shared steps, never more than its max batch


def test_the_router_spreads_camcaps_openai_requests_over_both_replicas() -> None:
    with _engine() as first, _engine() as second, _router([first, second]) as router:
        options = ModelOptions(max_inflight=4, max_new_tokens=3)
        with create_captioner(f"openai:{router}/v1#{MODEL_ID}", options) as captioner:
            image = Image.new("RGB", (64, 48), "gray")

            def caption(_: int) -> Caption:
                return captioner.caption(image)

            with ThreadPoolExecutor(4) as pool:
                captions = list(pool.map(caption, range(8)))
        sent = [replica["sent"] for replica in httpx.get(f"{router}/stats").json()["replicas"]]
        served = [httpx.get(f"{url}/stats").json()["served"] for url in (first, second)]
    assert all(len(c.text.split()) == 3 for c in captions)
    assert sum(sent) == 8 and min(sent) > 0
    assert served == sent


def test_a_router_needs_a_known_policy_and_a_replica() -> None:
    with pytest.raises(ValueError, match="least_loaded, round_robin"):
        Router(["http://127.0.0.1:1/v1"], policy="random")
    with pytest.raises(ValueError, match="at least one replica"):
        Router([])


def test_least_loaded_picks_the_idlest_replica_and_round_robin_takes_turns() -> None:
    router = Router(["http://a/v1", "http://b/v1", "http://c/v1"])
    router.replicas[0].inflight, router.replicas[1].inflight, router.replicas[2].inflight = 3, 1, 2
    assert router.choose().base_url == "http://b/v1"
    turns = Router(["http://a/v1", "http://b/v1"], policy="round_robin")
    assert [turns.choose().base_url for _ in range(4)] == ["http://a/v1", "http://b/v1"] * 2
