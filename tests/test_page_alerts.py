"""Alerts on the page, in real Chromium against a real `camcap serve` running `demo:shapes`.

The fake camera plays two drawn scenes in turn: a red circle on the left, then a blue square on
the right. A rule added from the page's Alerts panel ("the caption contains red", this camera)
must reach the server (GET /v1/rules shows it with the page's stream as its camera), trigger while
the red scene is shown and clear on the blue one: the page then shows a banner (role="alert")
naming the rule and the camera, plays a sound, shows a system notification (permission granted to
the test's browser context) and marks the History entry of the caption it was about. The page's
`Notification` and `AudioContext` are wrapped before any script runs (Playwright's
add_init_script) so the test sees what the page asked of them. Rules are also enabled, disabled
and removed from the page, and the server's refusals (422, 401) are shown in words.

The rule matches the caption's colour word: the demo model tells colours apart reliably (shapes
less so, tests/content.py), so the truth the rule depends on is certain.
"""

# Fixtures imported from tests/page_browser.py are then named as test parameters (pytest's way).
# ruff: noqa: F811

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from camcap.models.demo.scenes import SceneSpec, ShapeSpec, draw_scene
from tests.live_server import free_port, stop_process
from tests.page_browser import (  # noqa: F401  (fixtures)
    SERVER_START_TIMEOUT_S,
    artifact,
    chromium_path,
    context,
    launch_chromium,
    page,
    page_errors,
    wait_for,
)
from tests.test_browser_content import HEIGHT, WIDTH, write_scene_clip

pytestmark = pytest.mark.browser

MODEL = "demo:shapes"
TOKEN = "alerts-page-test-token-0123456789"
SCENES = (
    SceneSpec((ShapeSpec("red", "circle", "left", size=0.4),)),
    SceneSpec((ShapeSpec("blue", "square", "right", size=0.4),), seed=3),
)

# Records what the page asks of the browser's Notification and AudioContext, then passes it on.
RECORDING_ALERT_APIS_JS = """(() => {
  const calls = { notifications: [], permissionRequests: 0, contexts: 0, tones: 0 };
  window.__alertCalls = calls;
  const OriginalNotification = window.Notification;
  class RecordedNotification {
    static get permission() { return OriginalNotification ? OriginalNotification.permission : "denied"; }
    static requestPermission(...args) {
      calls.permissionRequests += 1;
      return OriginalNotification.requestPermission(...args);
    }
    constructor(title, options = {}) {
      calls.notifications.push({ title, body: options.body ?? "", tag: options.tag ?? "" });
      try {
        return new OriginalNotification(title, options);
      } catch (error) {
        calls.notificationError = String(error);
      }
    }
  }
  window.Notification = RecordedNotification;
  const OriginalAudioContext = window.AudioContext;
  window.AudioContext = class extends OriginalAudioContext {
    constructor(...args) { super(...args); calls.contexts += 1; }
    createOscillator() {
      const tone = super.createOscillator();
      const start = tone.start.bind(tone);
      tone.start = (...when) => { calls.tones += 1; return start(...when); };
      return tone;
    }
  };
})();"""


@dataclass
class DemoServer:
    base: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]

    @property
    def page_url(self) -> str:
        """The URL `camcap serve` would print: the token sets the page's cookie."""
        return f"{self.base}/?token={TOKEN}"

    def rules(self) -> list[dict[str, Any]]:
        """GET /v1/rules, as any client with the token sees them."""
        return _request(self.base + "/v1/rules")[1]["rules"]

    def rule(self, name: str) -> dict[str, Any] | None:
        return next((rule for rule in self.rules() if rule["name"] == name), None)


def _request(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.fixture(scope="module")
def demo_server(
    chromium_path: str,  # asked first: without a browser, skip before starting a server
    subprocess_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DemoServer]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    # With a token, as `camcap serve` runs for a person: the page carries its cookie, the test a header.
    env = {**subprocess_env, "CAMCAP_TOKEN": TOKEN}
    env.pop("CAMCAP_LOOPBACK_TOKEN", None)
    command = [
        sys.executable, "-m", "camcap", "serve", "--model", MODEL, "--device", "cpu",
        "--host", "127.0.0.1", "--port", str(port), "--no-open",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = DemoServer(base=f"http://127.0.0.1:{port}", process=process)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`camcap serve` was not ready:\n{log_path.read_text(errors='replace')[-4000:]}")
            try:
                if _request(server.base + "/v1/info")[1].get("status") == "ready":
                    break
            except (OSError, ValueError):
                pass  # not listening yet
            time.sleep(0.5)
        yield server
    finally:
        stop_process(process, timeout=15)


@pytest.fixture(scope="module")
def chromium(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    images: list[Image.Image] = [draw_scene(spec, (WIDTH, HEIGHT))[0] for spec in SCENES]
    clip = write_scene_clip(tmp_path_factory.mktemp("camera") / "alerts.y4m", images)
    with launch_chromium(chromium_path, clip) as browser:
        yield browser


def _open(page: Any, server: DemoServer) -> dict[str, Any]:
    """Open the page; the events its socket receives are collected in the returned dict."""
    from playwright.sync_api import expect

    seen: dict[str, Any] = {"alerts": [], "captions": [], "stream_id": None}

    def on_received(payload: str | bytes) -> None:
        event = json.loads(payload)
        if event.get("type") == "ready":
            seen["stream_id"] = event["stream_id"]
        elif event.get("type") == "alert":
            seen["alerts"].append(event)
        elif event.get("type") == "caption":
            seen["captions"].append(event)

    page.on("websocket", lambda socket: socket.on("framereceived", on_received))
    page.goto(server.page_url)
    expect(page.locator("#connection-pill")).to_have_text("Connected")
    return seen


def _add_rule(page: Any, name: str, text: str, *, kind: str = "match", cameras: str = "This camera",
              k: int | None = None, cooldown_s: int | None = None) -> None:  # fmt: skip
    panel = page.locator("#alerts")
    panel.get_by_label("Name").fill(name)
    panel.get_by_label("Alert when").select_option(kind)
    panel.locator("#alert-text-input").fill(text)
    panel.get_by_role("radio", name=cameras).check()
    if k is not None or cooldown_s is not None:
        panel.locator("summary", has_text="Timing").click()
        if k is not None:
            panel.get_by_label("Answers in a row").fill(str(k))
        if cooldown_s is not None:
            panel.get_by_label("Cooldown").fill(str(cooldown_s))
    panel.get_by_role("button", name="Add rule").click()


def _open_alerts_by_keyboard(page: Any) -> None:
    """The Alerts control is a button reached and pressed from the keyboard."""
    from playwright.sync_api import expect

    button = page.get_by_role("button", name="Alerts", exact=True)
    button.focus()
    page.keyboard.press("Enter")
    expect(button).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("heading", name="Alerts")).to_be_focused()


def test_rules_are_added_enabled_disabled_and_removed_from_the_page(
    demo_server: DemoServer, page: Any, page_errors: list[str]
) -> None:
    from playwright.sync_api import expect

    seen = _open(page, demo_server)
    _open_alerts_by_keyboard(page)
    panel = page.locator("#alerts")

    _add_rule(page, "door", "Is there a person at the door?", kind="question", cameras="All cameras")
    expect(panel.locator("[data-role=message]")).to_have_text('Rule "door" added.')
    rule = wait_for(page, lambda: demo_server.rule("door"), "the rule on the server", timeout_s=10)
    assert rule["cameras"] == ["*"] and rule["question"] == "Is there a person at the door?"
    assert rule["enabled"] is True

    _add_rule(page, "red-here", "red", cameras="This camera", k=3, cooldown_s=5)
    wait_for(page, lambda: demo_server.rule("red-here"), "the second rule on the server", timeout_s=10)
    rule = demo_server.rule("red-here")
    assert rule is not None
    assert rule["cameras"] == [seen["stream_id"]] and rule["match"] == "red"
    assert (rule["k"], rule["cooldown_s"]) == (3, 5)
    item = panel.locator("li", has_text="red-here")
    expect(item).to_contain_text("this camera")
    expect(item).to_contain_text("3 in a row")

    # Disable, enable: the server follows the checkbox.
    enabled = panel.get_by_role("checkbox", name="Enabled: door")
    expect(enabled).to_be_checked()
    enabled.uncheck()
    wait_for(page, lambda: demo_server.rule("door")["enabled"] is False, "the rule disabled on the server", 10)
    expect(panel.locator("li", has_text="door")).to_contain_text("disabled")
    enabled.check()
    wait_for(page, lambda: demo_server.rule("door")["enabled"] is True, "the rule enabled again", 10)

    # A rule the server refuses (422): its words are shown, and nothing is created.
    _add_rule(page, "broken", "/[unclosed/", kind="match", cameras="All cameras")
    message = panel.locator("[data-role=message]")
    expect(message).to_have_attribute("data-tone", "error")
    expect(message).to_contain_text('Could not save the rule "broken"')
    assert demo_server.rule("broken") is None
    # Refused before asking the server: a rule needs its question or words.
    _add_rule(page, "empty", "", kind="question")
    expect(message).to_contain_text("Type a yes/no question")

    for name in ("door", "red-here"):
        panel.get_by_role("button", name=f"Remove {name}").click()
        expect(panel.locator("li", has_text=name)).to_have_count(0)
    wait_for(page, lambda: not any(r["name"] in ("door", "red-here") for r in demo_server.rules()), "removal", 10)
    expect(panel.locator("[data-role=empty]")).to_be_visible()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(page.get_by_role("button", name="Alerts", exact=True)).to_be_focused()
    assert page_errors == []


def test_history_keeps_a_bounded_number_of_alert_marks(demo_server: DemoServer, page: Any) -> None:
    _open(page, demo_server)
    result = page.evaluate("""async () => {
      const { CaptionHistory, MAX_ALERTS_PER_ENTRY } = await import("/static/history.js");
      const history = new CaptionHistory();
      // An alert before any caption gets an entry of its own, with the alert's caption.
      const first = history.mark({ rule: "door", camera: "s1", state: "triggered", at: 1000, text: "a person" });
      history.add({ text: "a red circle on the left", capturedAt: 2000, finishedAt: 2100 });
      // A rule flapping on one still scene: the marks on its entry stay bounded.
      for (let i = 0; i < 50; i++) {
        history.mark({ rule: "red", camera: "s1", state: i % 2 ? "cleared" : "triggered", at: 3000 + i });
      }
      const last = history.entries.at(-1);
      return { first: { text: first.text, task: first.task, alerts: first.alerts.length },
               entries: history.entries.length, marks: last.alerts.length, max: MAX_ALERTS_PER_ENTRY,
               newest: last.alerts.at(-1) };
    }""")
    assert result["first"] == {"text": "a person", "task": "alert", "alerts": 1}
    assert result["entries"] == 2
    assert result["marks"] == result["max"] == 8
    assert result["newest"] == {"rule": "red", "camera": "s1", "state": "cleared", "at": 3049}


def test_without_access_the_panel_says_so_in_words(demo_server: DemoServer, context: Any, page: Any) -> None:
    from playwright.sync_api import expect

    _open(page, demo_server)
    context.clear_cookies()  # the access the page had is gone (as if the token changed)
    page.get_by_role("button", name="Alerts", exact=True).click()
    message = page.locator("#alerts [data-role=message]")
    expect(message).to_contain_text("Not allowed to read the alert rules (HTTP 401)")
    _add_rule(page, "no-access", "red", cameras="All cameras")
    expect(message).to_contain_text('Not allowed to save the rule "no-access" (HTTP 401)')
    assert demo_server.rule("no-access") is None


def test_a_rule_that_triggers_shows_a_banner_sounds_notifies_and_marks_history(
    demo_server: DemoServer, context: Any, page: Any, page_errors: list[str]
) -> None:
    from playwright.sync_api import expect

    context.grant_permissions(["notifications"], origin=demo_server.base)
    page.add_init_script(RECORDING_ALERT_APIS_JS)
    seen = _open(page, demo_server)

    # Notifications: asked for on the user's gesture (the toggle), remembered with the sound.
    page.get_by_role("button", name="Settings").click()
    expect(page.get_by_role("checkbox", name="Play a sound")).to_be_checked()  # on by default
    page.get_by_role("checkbox", name="Notify me").check()
    expect(page.get_by_role("checkbox", name="Notify me")).to_be_checked()
    page.locator("#settings-close").click()

    _open_alerts_by_keyboard(page)
    _add_rule(page, "red-seen", "red", cameras="This camera", k=1, cooldown_s=0)
    wait_for(page, lambda: demo_server.rule("red-seen"), "the rule on the server", timeout_s=10)
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Start camera").click()

    banner = page.locator("#alert-banner [role=alert]", has_text="red-seen")
    expect(banner).to_contain_text("Alert: red-seen (this camera)", timeout=120_000)
    triggered = [a for a in seen["alerts"] if a["rule"] == "red-seen" and a["state"] == "triggered"]
    assert triggered and triggered[0]["camera"] == seen["stream_id"], seen["alerts"]
    assert "red" in (triggered[0].get("caption") or "").lower(), triggered[0]

    calls = page.evaluate("window.__alertCalls")
    assert calls["tones"] >= 1, f"no sound was played: {calls}"
    assert any(n["title"] == "camcap alert: red-seen" for n in calls["notifications"]), calls
    assert "notificationError" not in calls, calls

    # The History entry of the caption it was about is marked.
    page.get_by_role("button", name="History").click()
    marked = page.locator("#history li[data-alert]", has_text="Alert: red-seen triggered")
    expect(marked.first).to_be_visible()
    assert "red" in marked.first.locator(".history-text").inner_text().lower()
    page.screenshot(path=artifact("alerts-desktop-history.png"))
    # The downloaded session keeps the mark (JSON Lines: `alerts` on the entry it was raised on).
    with page.expect_download() as download:
        page.get_by_role("button", name="Download .jsonl").click()
    lines = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    marks = [(line["text"], a) for line in lines for a in line.get("alerts", [])]
    assert any(
        a["rule"] == "red-seen" and a["state"] == "triggered" and a["camera"] == seen["stream_id"] and "red" in text
        for text, a in marks
    ), lines
    page.get_by_role("button", name="History").click()

    # The blue scene follows: the rule clears, and the banner says so.
    expect(banner).to_have_attribute("data-state", "cleared", timeout=60_000)
    expect(banner).to_contain_text("Cleared: red-seen")
    # It triggers again on the next red scene (cooldown 0); then the banner is dismissed.
    expect(banner).to_have_attribute("data-state", "triggered", timeout=60_000)
    page.get_by_role("button", name="Alerts", exact=True).click()
    expect(page.locator("#alerts li", has_text="red-seen")).to_contain_text("triggered: this camera")
    page.screenshot(path=artifact("alerts-desktop.png"))

    # At phone size the banner, the panel and the controls all stay on screen, apart.
    page.set_viewport_size({"width": 390, "height": 844})
    geometry = page.evaluate("""() => {
      const box = (el) => el.getBoundingClientRect().toJSON();
      return {
        banner: box(document.getElementById("alert-banner")),
        panel: box(document.getElementById("alerts")),
        bar: box(document.querySelector(".bar")),
        width: innerWidth,
        height: innerHeight,
      };
    }""")
    for name in ("banner", "panel"):
        part = geometry[name]
        assert part["left"] >= 0 and part["right"] <= geometry["width"] + 0.5, f"{name} leaves the screen: {geometry}"
        assert part["bottom"] <= geometry["bar"]["top"] + 0.5, f"{name} covers the controls: {geometry}"
    assert geometry["banner"]["bottom"] <= geometry["panel"]["top"] + 0.5, f"the banner covers the panel: {geometry}"
    page.screenshot(path=artifact("alerts-phone.png"))

    page.get_by_role("button", name="Dismiss the alert red-seen").click()
    expect(banner).to_have_count(0)
    _request(f"{demo_server.base}/v1/rules/red-seen", method="DELETE")
    assert page_errors == []
