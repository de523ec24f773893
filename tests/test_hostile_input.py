"""Inputs that parse but lie: client clocks that poison metrics, sequence numbers past what the
page's JavaScript can hold, a form with two images. Each is refused or set aside, never trusted.

(TestClient on the fake backend, as tests/test_server.py does.)
"""

from __future__ import annotations

import re

import pytest

from camcap.engine.timing import wall_ms
from tests.test_server import jpeg, pack, png, recv, recv_until, serve, wait_ready

#: Number.MAX_SAFE_INTEGER: the largest integer a JavaScript number holds exactly.
MAX_SAFE_INTEGER = 2**53 - 1


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} is not in the metrics:\n{text}"
    return float(match.group(1))


@pytest.mark.parametrize("sent_at", [0, -1e15, 1e15])
def test_a_client_clock_far_off_never_reaches_the_receive_sum(sent_at):
    with serve() as client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_bytes(pack(png(), seq=1, sent_at=sent_at))
            caption, _ = recv_until(ws, "caption")
            # The page is told the truth: no receive time could be measured.
            assert caption["timings"]["receive_ms"] is None
            assert metric(client.get("/metrics").text, "camcap_client_clock_rejected_total") == 1.0
            ws.send_bytes(pack(png((0, 0, 200)), seq=2, sent_at=wall_ms() - 5.0))  # an honest clock
            honest, _ = recv_until(ws, "caption")
            assert honest["timings"]["receive_ms"] is not None
        text = client.get("/metrics").text
    assert metric(text, 'camcap_stage_seconds_sum{stage="receive"}') < 60.0
    assert metric(text, 'camcap_stage_seconds_count{stage="receive"}') == 1.0
    assert metric(text, "camcap_client_clock_rejected_total") == 1.0


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_timestamps_that_are_not_numbers_are_a_bad_frame(value):
    with serve() as client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            raw = f'{{"seq": 3, "sent_at": {value}}}'.encode()
            ws.send_bytes(b"CCF1" + len(raw).to_bytes(4, "big") + raw + jpeg())
            error = recv(ws)
            assert (error["type"], error["code"]) == ("error", "bad_frame")


def test_seq_is_bounded_by_what_a_javascript_number_holds():
    with serve() as client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_bytes(pack(png(), seq=MAX_SAFE_INTEGER + 1))
            error = recv(ws)
            assert (error["type"], error["code"]) == ("error", "bad_frame")
            assert str(MAX_SAFE_INTEGER) in error["message"]
            ws.send_bytes(pack(png(), seq=MAX_SAFE_INTEGER))
            caption, _ = recv_until(ws, "caption")
            assert caption["seq"] == MAX_SAFE_INTEGER
            ws.send_bytes(png((0, 0, 200)))  # a bare frame after the largest seq starts over at 0
            assert recv_until(ws, "caption")[0]["seq"] == 0


@pytest.mark.parametrize(
    "files, data",
    [
        ([("image", ("a.png", png(), "image/png")), ("image", ("b.png", png((0, 0, 200)), "image/png"))], {}),
        ([("image", ("a.png", png(), "image/png"))], {"task": ["caption", "query"]}),
    ],
    ids=["two images", "two tasks"],
)
def test_a_form_field_sent_twice_is_refused(files, data):
    with serve() as client:
        wait_ready(client)
        answer = client.post("/v1/caption", files=files, data=data)
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "bad_message"
    assert "more than once" in answer.json()["detail"]
