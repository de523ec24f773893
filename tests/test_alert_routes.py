"""`/v1/rules` and alert events in the real app (fast fake backend): create, replace, enable,
delete; a page socket told of alerts on its own stream; questions batched beside the caption;
source subscribers told of alerts on their sources; no secret anywhere."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from camcap.config import Settings
from camcap.server.app import create_app
from tests.fakes import FakeCaptioner
from tests.test_server import BLUE, RED, pack, png, recv, recv_until, serve, wait_for, wait_ready
from tests.videos import RED_SQUARE, make_video

RED_CAPTION = "/^colour 200 0 0/"


def test_rules_are_listed_created_replaced_disabled_and_deleted():
    with serve(alerts=["person=Is there a person?"]) as client:
        assert client.get("/v1/rules").json() == {
            "rules": [
                {
                    "name": "person", "cameras": ["*"], "question": "Is there a person?", "match": None,
                    "k": 2, "cooldown_s": 30.0, "enabled": True, "states": {},
                }
            ]
        }  # fmt: skip
        created = client.put("/v1/rules/red", json={"match": "red", "cameras": ["door", "s1"], "k": 3})
        assert created.status_code == 200
        assert created.json() == {
            "name": "red", "cameras": ["door", "s1"], "question": None, "match": "red",
            "k": 3, "cooldown_s": 30.0, "enabled": True, "states": {},
        }  # fmt: skip
        replaced = client.put("/v1/rules/red", json={"question": "Is it red?", "cooldown_s": 0})
        assert replaced.json()["question"] == "Is it red?" and replaced.json()["match"] is None
        assert replaced.json()["cameras"] == ["*"]
        disabled = client.patch("/v1/rules/red", json={"enabled": False})
        assert disabled.status_code == 200 and disabled.json()["enabled"] is False
        assert [rule["name"] for rule in client.get("/v1/rules").json()["rules"]] == ["person", "red"]
        assert client.delete("/v1/rules/red").status_code == 204
        assert [rule["name"] for rule in client.get("/v1/rules").json()["rules"]] == ["person"]


def test_a_missing_rule_is_404_unknown_rule_and_bad_input_is_422_saying_why():
    with serve() as client:
        for response in (client.patch("/v1/rules/nope", json={"enabled": True}), client.delete("/v1/rules/nope")):
            assert response.status_code == 404
            assert response.json()["code"] == "unknown_rule" and "'nope'" in response.json()["detail"]
        cases = [
            ("red", {"match": "red", "question": "Is it red?"}, "exactly one of 'question'"),
            ("red", {}, "exactly one of 'question'"),
            ("red", {"match": "/[oops/"}, "not a valid regular expression"),
            ("red", {"question": "Is it red?", "k": 0}, "k:"),
            ("red", {"question": "Is it red?", "colour": "red"}, "colour"),
            ("a b", {"question": "Is it red?"}, "not allowed"),
        ]
        for name, body, words in cases:
            response = client.put(f"/v1/rules/{name}", json=body)
            assert response.status_code == 422, body
            assert response.json()["code"] == "invalid_rule" and words in response.json()["detail"], response.json()
        response = client.put("/v1/rules/red", content=b"{not json")
        assert response.status_code == 422 and "not JSON" in response.json()["detail"]
        response = client.patch("/v1/rules/nope", content=b"{}")
        assert response.status_code == 404


def test_a_page_socket_is_told_when_a_rule_triggers_and_clears_on_its_own_stream():
    with serve() as client:
        wait_ready(client)
        client.put("/v1/rules/red", json={"match": RED_CAPTION, "k": 2, "cooldown_s": 0})
        with client.websocket_connect("/v1/stream") as ws:
            ready = recv(ws)
            camera = ready["stream_id"]
            # A second identical frame is answered `unchanged`: the caption describing it counts again.
            for seq in range(2):
                ws.send_bytes(pack(png(RED), seq=seq))
                recv_until(ws, "caption" if seq == 0 else "unchanged")
            triggered, _ = recv_until(ws, "alert")
            assert triggered == {
                "type": "alert", "rule": "red", "camera": camera, "state": "triggered",
                "at": triggered["at"], "answer": None, "caption": triggered["caption"],
            }  # fmt: skip
            assert triggered["caption"].startswith("colour 200 0 0") and triggered["at"].endswith("+00:00")
            states = client.get("/v1/rules").json()["rules"][0]["states"]
            assert states == {camera: "triggered"}
            metrics = client.get("/metrics").text
            assert "camcap_alerts_total 1.0" in metrics and "camcap_alerts_triggered 1.0" in metrics
            for seq in (2, 3):
                ws.send_bytes(pack(png(BLUE), seq=seq))
                recv_until(ws, "caption" if seq == 2 else "unchanged")
            cleared, _ = recv_until(ws, "alert")
            assert (cleared["state"], cleared["camera"]) == ("cleared", camera)
            assert client.get("/v1/rules").json()["rules"][0]["states"] == {camera: "clear"}
        # The stream is gone: so is its state.
        wait_for(lambda: client.get("/v1/rules").json()["rules"][0]["states"] == {}, "the closed stream forgotten")


def test_a_question_is_asked_in_the_same_batch_as_the_caption():
    fake = FakeCaptioner(max_batch=8)
    with serve(fake) as client:
        wait_ready(client)
        client.put("/v1/rules/red", json={"question": "Is it red?", "k": 1})
        with client.websocket_connect("/v1/stream") as ws:
            camera = recv(ws)["stream_id"]
            for seq, colour in enumerate((RED, BLUE, RED, BLUE)):
                ws.send_bytes(pack(png(colour), seq=seq))
                recv_until(ws, "caption")
            # The fake answers "colour ..." (not yes): the rule has looked, and stays clear.
            wait_for(lambda: client.get("/v1/rules").json()["rules"][0]["states"] == {camera: "clear"}, "answers")
    assert 2 in fake.batches, fake.batches  # caption + question, one generate call


def test_source_subscribers_are_told_of_alerts_on_their_sources(tmp_path: Path):
    clip = make_video(tmp_path / "clip.mp4", [(RED_SQUARE, 2.0)])
    settings = Settings(
        model="fake", allow_hosts=["testserver"], sources=[SecretStr(f"clip={clip}")], alerts=[],
    )  # fmt: skip
    app = create_app(settings, captioner=FakeCaptioner())
    with TestClient(app) as client, client.websocket_connect("/v1/sources/stream") as ws:
        ws.send_text(json.dumps({"type": "config", "sources": ["clip"]}))
        recv_until(ws, "subscribed")
        client.put("/v1/rules/seen", json={"match": "/colour/", "k": 1, "cameras": ["clip"]})
        alert, _ = recv_until(ws, "alert")
    assert (alert["rule"], alert["camera"], alert["state"]) == ("seen", "clip", "triggered")
    assert alert["caption"].startswith("colour")


def test_secrets_never_show_in_info_rules_metrics_or_logs(caplog, tmp_path: Path):
    caplog.set_level(logging.DEBUG)
    secret_file = tmp_path / "mqtt-password"
    secret_file.write_text("mqtt-pa55word\n")
    with serve(
        webhook_secret=SecretStr("hook-s3cret"),
        webhooks=[SecretStr("http://127.0.0.1:9/hook?token=url-t0ken")],
        mqtt="mqtt://camcap@127.0.0.1:9/camcap",
        mqtt_password_file=secret_file,
        alerts=["person=Is there a person?"],
    ) as client:
        wait_ready(client)
        metrics = client.get("/metrics").text
        shown = client.get("/v1/info").text + client.get("/v1/rules").text + metrics
    # Each sink kind's drops are counted where a scraper looks for them.
    assert 'camcap_alerts_dropped_total{sink="webhook"} 0.0' in metrics
    assert 'camcap_alerts_dropped_total{sink="mqtt"}' in metrics
    for secret in ("hook-s3cret", "url-t0ken", "mqtt-pa55word"):
        assert secret not in shown
        assert secret not in caplog.text
