"""The caption says what the camera showed: HTTP and WebSocket end to end with `demo:shapes`.

Random-weight models prove that bytes flow; these tests check the *words*. `demo:shapes` names
coloured shapes and their side, so a swapped colour channel, a mirrored frame, an ignored EXIF
rotation, a crop that cuts a side off or a caption of the wrong frame all fail here. The scenes
are drawn by `camcap.models.demo.scenes` (clean camera: the model is deterministic, so each
scene's caption is too).
"""

from __future__ import annotations

import io
import json
import struct
import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from camcap.config import Settings
from camcap.models.demo.scenes import SceneSpec, ShapeSpec, draw_scene
from camcap.server.app import create_app
from camcap.server.messages import FRAME_MAGIC
from tests.content import named, shown
from tests.test_server import recv, recv_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

LOAD_TIMEOUT = 300.0
CAMERA = (640, 480)  # what a client might upload; camcap shrinks it to the model's input size
# Two shapes whose colours and sides tell every transformation apart: a channel swap turns red
# into blue, a mirror swaps left and right, a quarter turn moves both off their sides.
TWO = SceneSpec((ShapeSpec("red", "circle", "left", size=0.34), ShapeSpec("blue", "square", "right", size=0.34)))
TWO_TRUTH = shown(draw_scene(TWO, CAMERA)[1])


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def frame_message(seq: int, payload: bytes) -> bytes:
    header = json.dumps({"seq": seq, "captured_at": 1000.0 + seq, "sent_at": time.time() * 1000}).encode()
    return FRAME_MAGIC + struct.pack(">I", len(header)) + header + payload


def sideways_phone_jpeg(upright: Image.Image) -> bytes:
    """The upright picture stored as a phone stores it when held in portrait: pixels turned a
    quarter, and an EXIF Orientation tag (6: turn 90 degrees clockwise to view) that undoes it."""
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # a quarter turn anticlockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=92, exif=exif.tobytes())
    # The file really is sideways without its tag, and upright with it.
    opened = Image.open(io.BytesIO(data))
    assert opened.size == (upright.height, upright.width)
    assert ImageOps.exif_transpose(opened).size == upright.size
    return data


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings = Settings(model="demo:shapes", allow_download=False, allow_hosts=["testserver"], device="cpu")
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + LOAD_TIMEOUT
        while (info := client.get("/v1/info").json())["status"] == "loading":
            assert time.monotonic() < deadline, f"demo:shapes did not load within {LOAD_TIMEOUT} s"
            time.sleep(0.1)
        assert info["status"] == "ready", info["error"]
        yield client


def caption_http(client: TestClient, data: bytes, mime: str, **form: str) -> str:
    response = client.post("/v1/caption", files={"image": ("frame", data, mime)}, data=form)
    assert response.status_code == 200, response.text
    return response.json()["caption"]


def test_info_marks_demo_shapes_as_a_demo_model(client):
    model = client.get("/v1/info").json()["model"]
    assert (model["name"], model["demo"], model["random_weights"]) == ("demo:shapes", True, False)
    assert set(model["tasks"]) == {"caption", "query"}


@pytest.mark.parametrize(("fmt", "mime"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")])
def test_http_caption_names_colours_shapes_and_sides_in_every_format(client, fmt, mime):
    image, _ = draw_scene(TWO, CAMERA)
    caption = caption_http(client, encode(image, fmt), mime)
    assert named(caption) == TWO_TRUTH, caption


def test_http_exif_rotated_phone_jpeg_is_captioned_upright(client):
    upright, _ = draw_scene(TWO, (480, 640))  # a portrait photo
    caption = caption_http(client, sideways_phone_jpeg(upright), "image/jpeg")
    assert named(caption) == TWO_TRUTH, caption


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_websocket_caption_names_the_scene_in_every_format(client, fmt):
    image, _ = draw_scene(TWO, CAMERA)
    with client.websocket_connect("/v1/stream") as ws:
        recv(ws, timeout=60)  # ready
        ws.send_bytes(frame_message(1, encode(image, fmt)))
        event, _ = recv_until(ws, "caption")
    assert named(event["text"]) == TWO_TRUTH, event["text"]


def test_websocket_exif_rotated_jpeg_keeps_left_on_the_left(client):
    upright, _ = draw_scene(TWO, (480, 640))
    with client.websocket_connect("/v1/stream") as ws:
        recv(ws, timeout=60)
        ws.send_bytes(frame_message(1, sideways_phone_jpeg(upright)))
        event, _ = recv_until(ws, "caption")
    assert named(event["text"]) == TWO_TRUTH, event["text"]


def test_websocket_each_caption_belongs_to_its_own_frame(client):
    scenes = [
        SceneSpec((ShapeSpec("green", "triangle", "centre", size=0.4),)),
        SceneSpec((ShapeSpec("yellow", "square", "left", size=0.35),)),
        SceneSpec((ShapeSpec("purple", "circle", "right", size=0.35),)),
    ]
    with client.websocket_connect("/v1/stream") as ws:
        recv(ws, timeout=60)
        for seq, spec in enumerate(scenes, start=1):
            image, truth = draw_scene(spec, CAMERA)
            ws.send_bytes(frame_message(seq, encode(image, "JPEG", quality=80)))
            event, _ = recv_until(ws, "caption")
            assert event["seq"] == seq
            assert named(event["text"]) == shown(truth), (seq, event["text"])


# A shape whose bounding box is 5 % of a 640x480 frame: sqrt(0.05 * 640 * 480) = 124 px, 0.26 of
# the short side. camcap shrinks the frame to the model's input size (96 px short side) first.
FIVE_PERCENT = 0.26


@pytest.mark.parametrize(
    "shape",
    [
        ShapeSpec("orange", "triangle", "left", size=FIVE_PERCENT),
        ShapeSpec("green", "circle", "centre", size=FIVE_PERCENT),
        ShapeSpec("blue", "square", "right", size=FIVE_PERCENT),
    ],
    ids=lambda s: f"{s.colour}-{s.shape}-{s.side}",
)
def test_a_shape_of_five_percent_of_the_frame_is_named_at_the_size_camcap_sends(client, shape):
    image, truth = draw_scene(SceneSpec((shape,), background="gradient", seed=3), CAMERA)
    (box,) = [o.box for o in truth.objects]
    area = (box[2] - box[0]) * (box[3] - box[1]) / (CAMERA[0] * CAMERA[1])
    assert 0.045 <= area <= 0.055
    caption = caption_http(client, encode(image, "JPEG", quality=80), "image/jpeg")
    assert named(caption) == shown(truth), caption


def test_change_gating_captions_a_small_shape_appearing_and_gates_sensor_noise(client):
    """Measured with this model at the size camcap sends (128 x 96, JPEG 80) and the default
    change threshold: frames of a still scene that differ only by sensor noise are answered
    `unchanged`, and one small shape appearing is captioned, by name.

    Measured limit: noise of sigma 3 levels is gated; sigma 6 is NOT at this frame size (a 64 x 48
    signature cell averages only 4 pixels of a 128 x 96 frame, not ~64 as at 512 x 384)."""
    sigma = 3.0
    first = SceneSpec((ShapeSpec("red", "square", "left", size=0.34),), background="plain", seed=1)
    grown = SceneSpec((*first.objects, ShapeSpec("blue", "circle", "right", size=FIVE_PERCENT)), "plain", seed=1)
    still, before = draw_scene(first, (128, 96))  # the page's size for this model
    appeared, truth = draw_scene(grown, (128, 96))
    rng = np.random.default_rng(0)

    def noisy(image: Image.Image) -> bytes:  # a new sensor-noise pattern on every frame
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, sigma, (96, 128, 3))
        return encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG", quality=80)

    with client.websocket_connect("/v1/stream") as ws:
        recv(ws, timeout=60)
        for seq in (1, 2, 3):
            ws.send_bytes(frame_message(seq, noisy(still)))
            event = outcome(ws)
            assert (event["type"], event["seq"]) == ("caption" if seq == 1 else "unchanged", seq), event
            if seq == 1:
                assert named(event["text"]) == shown(before), event["text"]
        ws.send_bytes(frame_message(4, noisy(appeared)))
        event = outcome(ws)
    assert (event["type"], event["seq"]) == ("caption", 4), event
    assert named(event["text"]) == shown(truth), event["text"]


def outcome(ws) -> dict:
    """The next event that settles a frame (its caption, `unchanged`, or an error), skipping tokens."""
    while (event := recv(ws))["type"] not in ("caption", "unchanged", "error"):
        pass
    return event
