"""Probing and sampling video files: times from presentation timestamps, upright pictures, every bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from camcap.sources.errors import VideoError
from camcap.sources.probe import classify_file, probe_video
from camcap.sources.sampler import SamplingPlan, VideoSampler
from tests.videos import BLUE_BAR, GREEN_CIRCLE, RED_SQUARE, THREE_SCENES, make_video


def sample(path: Path, plan: SamplingPlan, max_short_side: int = 64) -> list[tuple[float, Image.Image]]:
    with VideoSampler(probe_video(path), plan, max_short_side=max_short_side) as sampler:
        return [(round(frame.t, 3), frame.image) for frame in sampler]


def shape_colour(image: Image.Image) -> tuple[int, int, int]:
    """The colour at the centre of the picture, where every test scene draws its shape."""
    return image.getpixel((image.width // 2, image.height // 2))  # type: ignore[return-value]


def near(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) < 30


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm", ".mov", ".avi"])
def test_videos_are_recognised_by_content_and_sampled_every_second(tmp_path, suffix):
    video = make_video(tmp_path / f"clip{suffix}", THREE_SCENES)
    renamed = tmp_path / "clip.jpg"  # the name lies; the content decides
    shutil.copy(video, renamed)
    assert classify_file(renamed) == "video"
    frames = sample(renamed, SamplingPlan(every=1.0))
    assert [t for t, _ in frames] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    colours = [RED_SQUARE[0]] * 2 + [GREEN_CIRCLE[0]] * 2 + [BLUE_BAR[0]] * 2
    assert all(near(shape_colour(image), colour) for (_, image), colour in zip(frames, colours, strict=True))


def test_an_image_is_an_image(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    assert classify_file(tmp_path / "a.jpg") == "image"


def test_keyframes_let_the_decoder_skip_ahead_and_still_find_each_sample(tmp_path):
    video = make_video(tmp_path / "gop.mp4", THREE_SCENES, gop=5)
    with VideoSampler(probe_video(video), SamplingPlan(every=2.0), max_short_side=64) as sampler:
        frames = [(round(frame.t, 3), shape_colour(frame.image)) for frame in sampler]
    assert [t for t, _ in frames] == [0.0, 2.0, 4.0]
    assert near(frames[1][1], GREEN_CIRCLE[0]) and near(frames[2][1], BLUE_BAR[0])
    assert sampler.seeks >= 2
    assert sampler.frames_decoded < 60  # not every frame of the 6 s at 10 fps
    assert sampler.end_t == pytest.approx(6.0)


def test_on_change_samples_when_the_scene_changes_and_at_the_longest_gap(tmp_path):
    video = make_video(tmp_path / "c.mp4", [(RED_SQUARE, 2.0), (GREEN_CIRCLE, 3.0), (BLUE_BAR, 1.0)])
    frames = sample(video, SamplingPlan(every=2.5, on_change=0.2, probe_every=0.5))
    # Changes at 2 and 5 s; the green scene lasts 3 s, so the 2.5 s gap adds a sample at 4.5.
    assert [t for t, _ in frames] == [0.0, 2.0, 4.5, 5.0]


def test_a_variable_frame_rate_keeps_true_times(tmp_path):
    times = [0.0, 0.1, 0.15, 0.9, 2.05, 2.5, 3.7, 4.2, 5.0, 5.9]
    video = make_video(tmp_path / "vfr.mp4", THREE_SCENES, frame_times=times)
    frames = sample(video, SamplingPlan(every=1.0))
    # The first frame at or after each whole second that has one.
    assert [t for t, _ in frames] == [0.0, 2.05, 3.7, 4.2, 5.0]
    assert near(shape_colour(frames[1][1]), GREEN_CIRCLE[0])


def test_a_phone_video_with_a_rotation_matrix_is_captioned_upright(tmp_path):
    # Stored landscape with its bar across the middle; shown rotated a quarter turn: portrait, bar upright.
    video = make_video(tmp_path / "phone.mp4", [(BLUE_BAR, 0.3)], size=(160, 96), rotation=90)
    info = probe_video(video)
    assert (info.rotation, info.upright_size) == (90, (96, 160))
    (_, image), *_ = sample(video, SamplingPlan(every=1.0))
    assert image.size == (64, 107)
    pixels = np.asarray(image).astype(int)
    bar = np.array(BLUE_BAR[0])
    column = np.abs(pixels[:, image.width // 2] - bar).max(axis=1) < 40  # the middle column: all bar
    row = np.abs(pixels[image.height // 2] - bar).max(axis=1) < 40
    assert column.all() and not row.all()


@pytest.mark.slow
def test_8k_frames_are_sized_for_the_model_by_the_decoder(tmp_path):
    video = make_video(tmp_path / "8k.mp4", [(GREEN_CIRCLE, 0.1)], size=(7680, 4320))
    assert probe_video(video).width == 7680
    (_, image), *_ = sample(video, SamplingPlan(every=1.0), max_short_side=384)
    assert image.size == (683, 384)
    assert near(shape_colour(image), GREEN_CIRCLE[0])


def _wav(path: Path) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("pcm_s16le", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
    frame.sample_rate = 8000
    for packet in [*stream.encode(frame), *stream.encode()]:
        container.mux(packet)
    container.close()
    return path


def _zero_frames(path: Path) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
    container.start_encoding()
    container.close()
    return path


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _truncated(path: Path, make: Path) -> Path:
    data = make.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: _text(d / "empty.mp4", ""), "empty"),
        (lambda d: _text(d / "notes.mp4", "just text\n" * 50), "not a video or image"),
        (lambda d: _wav(d / "sound.wav"), r"no video stream \(it holds: audio\)"),
        (lambda d: _zero_frames(d / "zero.mkv"), "zero length"),
        (lambda d: _truncated(d / "cut.mp4", make_video(d / "whole.mp4", THREE_SCENES)), "truncated.*moov"),
        (lambda d: _truncated(d / "cut.mp4", make_video(d / "whole.mp4", THREE_SCENES, faststart=True)), "truncated"),
    ],
    ids=["missing", "empty", "not-a-video", "no-video-stream", "zero-length", "truncated-mp4", "truncated-faststart"],
)
def test_bad_inputs_are_clear_errors_naming_the_file(tmp_path, build, message):
    path = build(tmp_path)
    with pytest.raises(VideoError, match=message) as error:
        probe_video(path)
    assert str(path) in str(error.value)


def test_a_file_cut_off_mid_stream_is_caught_while_decoding(tmp_path):
    # MKV has no up-front index: the cut is found when the frames stop before the announced length.
    whole = make_video(tmp_path / "whole.mkv", [*THREE_SCENES, *THREE_SCENES], gop=10)
    cut = _truncated(tmp_path / "cut.mkv", whole)
    with pytest.raises(VideoError, match="truncated"):
        sample(cut, SamplingPlan(every=1.0))


def test_a_bad_every_is_refused():
    with pytest.raises(ValueError, match="--every"):
        SamplingPlan(every=0)
