"""Spoken captions, in real Chromium against a real `camcap serve`.

The page's `speechSynthesis` is replaced before any script runs (Playwright's add_init_script) by
one that records every call and stays "speaking" until cancelled, as a long caption being read
would. The test then checks what the page asked it to say, and when it cancelled.
"""

# Fixtures imported from tests/page_browser.py are then named as test parameters (pytest's way).
# ruff: noqa: F811

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.page_browser import (  # noqa: F401  (fixtures)
    Server,
    artifact,
    camcap_server,
    chromium,
    chromium_path,
    context,
    page,
    page_errors,
    start_camera,
    wait_for,
)

pytestmark = pytest.mark.browser

RECORDING_SYNTH_JS = """(() => {
  const calls = [];
  class RecordedUtterance {
    constructor(text) { this.text = text; this.rate = 1; this.voice = null; this.lang = ""; }
  }
  const voices = [
    { voiceURI: "test-voice-en", name: "Test English", lang: "en-GB", default: true, localService: true },
    { voiceURI: "test-voice-fr", name: "Test French", lang: "fr-FR", default: false, localService: true },
  ];
  const synth = {
    speaking: false,
    pending: false,
    paused: false,
    speak(u) {
      const voice = u.voice?.voiceURI ?? null;
      calls.push({ call: "speak", text: u.text, rate: u.rate, voice, wasSpeaking: this.speaking });
      this.speaking = true;  // a caption takes a while to read: until cancelled, it is being read
    },
    cancel() { calls.push({ call: "cancel" }); this.speaking = false; },
    getVoices() { return voices; },
    pause() {}, resume() {},
    addEventListener() {}, removeEventListener() {},
  };
  Object.defineProperty(window, "speechSynthesis", { value: synth, configurable: true });
  window.SpeechSynthesisUtterance = RecordedUtterance;
  window.__speechCalls = calls;
})();"""


def _calls(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("window.__speechCalls")


def _collapse(texts: list[str]) -> list[str]:
    return [text for i, text in enumerate(texts) if i == 0 or texts[i - 1] != text]


def test_changed_captions_are_spoken_and_a_newer_one_cancels_the_older(
    camcap_server: Server, page: Any, page_errors: list[str]
) -> None:
    from playwright.sync_api import expect

    page.add_init_script(RECORDING_SYNTH_JS)
    captions: list[str] = []
    page.on(
        "websocket",
        lambda socket: socket.on(
            "framereceived",
            lambda payload: (
                captions.append(json.loads(payload)["text"].strip())
                if json.loads(payload).get("type") == "caption"
                else None
            ),
        ),
    )

    page.goto(camcap_server.url)
    page.get_by_role("button", name="Settings").click()
    speak = page.get_by_role("checkbox", name="Speak captions")
    expect(speak).not_to_be_checked()  # off by default
    speak.check()
    page.get_by_label("Voice").select_option("test-voice-fr")
    page.get_by_label("Rate").fill("1.5")
    page.reload()  # remembered across visits
    page.get_by_role("button", name="Settings").click()
    expect(speak).to_be_checked()
    expect(page.get_by_label("Voice")).to_have_value("test-voice-fr")
    page.screenshot(path=artifact("settings-speech.png"))
    page.get_by_role("button", name="Close").click()

    start_camera(page, camcap_server)
    wait_for(page, lambda: len(captions) >= 4, "four captions")
    page.get_by_role("button", name="Stop camera").click()
    calls = _calls(page)
    spoken = [call for call in calls if call["call"] == "speak"]
    # What was spoken when the camera stopped: every caption that differed from the one before.
    assert [call["text"] for call in spoken] == _collapse(captions)[: len(spoken)]
    assert len(spoken) >= 2
    assert all(call["rate"] == 1.5 and call["voice"] == "test-voice-fr" for call in spoken)
    # Freshness: each caption after the first cancelled the one still being read.
    assert [call["wasSpeaking"] for call in spoken] == [False] * len(spoken), f"an older caption went on: {calls}"
    # Stopping the camera silenced the last one.
    assert [call["call"] for call in calls] == ["speak", "cancel"] * len(spoken), calls
    # Spoken captions are not also announced through the live region (heard once, not twice).
    assert page.locator("#caption-live").text_content() == ""
    assert page_errors == []


SPEAKER_JS = """async () => {
  const { Speaker } = await import("/static/speech.js");
  const calls = [];
  const synth = {
    speaking: false, pending: false,
    speak(u) { calls.push(`speak:${u.text}`); this.speaking = true; },
    cancel() { calls.push("cancel"); this.speaking = false; },
    getVoices() { return []; },
  };
  class Utterance { constructor(text) { this.text = text; } }
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  const speaker = new Speaker({ synth, Utterance, storage });
  const off = speaker.say("not while off");
  const announcedWhileOff = speaker.announces;
  speaker.update({ enabled: true });
  for (const text of ["a dog", "a dog", " a dog ", "a cat", "a dog"]) speaker.say(text);
  return { calls, off, announcedWhileOff, announcedWhileOn: speaker.announces, stored: store.get("camcap.speech.v1") };
}"""


def test_an_unchanged_caption_is_not_spoken_again(camcap_server: Server, page: Any) -> None:
    page.goto(camcap_server.url)
    result = page.evaluate(SPEAKER_JS)
    assert result["off"] is False and result["announcedWhileOff"] is True
    assert result["calls"] == ["speak:a dog", "cancel", "speak:a cat", "cancel", "speak:a dog"]
    assert result["announcedWhileOn"] is False
    assert json.loads(result["stored"])["enabled"] is True
