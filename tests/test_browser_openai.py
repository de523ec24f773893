"""The page, unchanged, on an `openai:` model: real Chromium with the fake camera, against a
`camcap serve --model openai:...` whose model is a second, real `camcap serve` (random-weight GIT).

Skips without Chromium unless CAMCAP_REQUIRE_BROWSER=1 (CI), like tests/test_browser.py, whose
browser fixtures and wire helpers it reuses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.openai_servers import UPSTREAM_TOKEN, Served, start_serve
from tests.test_browser import (  # noqa: F401 - fixtures are found by name
    Wire,
    assert_live_pacing,
    chromium,
    chromium_path,
    expected_size,
    fake_camera_clip,
    page,
    page_errors,
    wait_for,
)

pytestmark = pytest.mark.browser

UPSTREAM_MODEL = "random:git-tiny"


@pytest.fixture(scope="module")
def chain(
    chromium_path: str,  # noqa: F811 - a fixture: without a browser, skip before starting servers
    subprocess_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Served, Served]]:
    """(upstream, downstream): camcap serving a model, and camcap serving that as an openai: model."""
    upstream = start_serve(UPSTREAM_MODEL, subprocess_env, tmp_path_factory.mktemp("up"), token=UPSTREAM_TOKEN)
    try:
        downstream = start_serve(
            f"openai:{upstream.url}/v1#{UPSTREAM_MODEL}", subprocess_env, tmp_path_factory.mktemp("down"),
            extra_env={"CAMCAP_OPENAI_API_KEY": UPSTREAM_TOKEN},
        )  # fmt: skip
        try:
            yield upstream, downstream
        finally:
            downstream.stop()
    finally:
        upstream.stop()


def test_the_page_captions_live_through_an_openai_model(
    chain: tuple[Served, Served],
    page: Any,  # noqa: F811
    page_errors: list[str],  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    upstream, downstream = chain
    spec = f"openai:{upstream.url}/v1#{UPSTREAM_MODEL}"
    wire = Wire.attach(page)
    page.goto(downstream.url + "/")
    expect(page.locator("#connection-pill")).to_have_text("Connected")
    expect(page.locator("#model-name")).to_have_text(spec)
    expect(page.locator("#random-badge")).to_be_hidden()
    expect(page.locator("#remote-badge")).to_be_hidden()  # the upstream is on this machine
    expect(page.locator("#notice-text")).to_contain_text(f"Frames are sent to {upstream.url}")

    page.get_by_role("button", name="Start camera").click()
    wait_for(page, lambda: len(wire.events("caption")) >= 2, "two live captions from the openai: model")

    (ready,) = wire.events("ready")
    assert ready["model"]["backend"] == "openai" and ready["model"]["input_size"] == 512
    for frame in wire.frames():
        assert frame.image.size == expected_size(512)
    assert_live_pacing(wire)
    token_seqs = {event["seq"] for event in wire.events("token")}
    for caption in wire.events("caption"):
        assert caption["text"] and caption["seq"] in token_seqs, "captions stream token by token"
    assert wire.events("error") == []
    assert page_errors == []


def test_the_page_says_plainly_when_frames_leave_the_machine(
    chain: tuple[Served, Served],
    page: Any,  # noqa: F811
    page_errors: list[str],  # noqa: F811
) -> None:
    """A server beyond the private network cannot be reached from CI, so the `ready` event of the
    real stream is rewritten on its way to the page as a remote server's would read."""
    from playwright.sync_api import expect

    _, downstream = chain
    remote = "https://vlm.example.com"

    def as_if_remote(route: Any) -> None:
        server = route.connect_to_server()

        def to_page(message: str | bytes) -> None:
            if isinstance(message, str) and '"ready"' in message:
                event = json.loads(message)
                event["model"].update(frames_sent_to=remote, frames_leave_network=True)
                message = json.dumps(event)
            route.send(message)

        server.on_message(to_page)

    page.route_web_socket("**/v1/stream", as_if_remote)
    page.goto(downstream.url + "/")
    badge = page.locator("#remote-badge")
    expect(badge).to_be_visible()
    expect(badge).to_have_text(f"frames leave this machine → {remote}")
    expect(page.locator("#notice-text")).to_have_text(
        f"Press Start camera to begin. Frames leave this machine: they are sent to {remote}."
    )
    assert page_errors == []
