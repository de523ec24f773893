"""The `camcap` command end to end: real subprocesses, a real random-weight model, no network."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from camcap import InvalidImageError, Timings, __version__
from camcap.cli import main
from tests.live_server import free_port, stop_process

MODEL = "random:blip-tiny"
TIMING_FIELDS = {field.name for field in dataclasses.fields(Timings)}


def camcap(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camcap", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def photo(path: Path, colour: tuple[int, int, int]) -> Path:
    """A small picture with some structure (a shape on a coloured background)."""
    image = Image.new("RGB", (96, 72), colour)
    ImageDraw.Draw(image).ellipse((20, 10, 70, 60), fill=(255 - colour[0], 200, colour[2] // 2))
    image.save(path)
    return path


@pytest.fixture
def env(subprocess_env: dict[str, str]) -> dict[str, str]:
    # A fixed number of tokens: a random model may otherwise stop at once and print nothing.
    env = {**subprocess_env, "CAMCAP_MIN_NEW_TOKENS": "4", "CAMCAP_MAX_NEW_TOKENS": "4"}
    env.pop("CAMCAP_MODEL", None)
    return env


@pytest.fixture
def empty_cache_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Like `env`, with a cache folder of its own that starts empty."""
    return {**env, "CAMCAP_CACHE_DIR": str(tmp_path / "cache")}


def assert_clean_error(done: subprocess.CompletedProcess[str], code: int) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stderr.startswith("camcap: error: "), done.stderr
    assert "Traceback" not in done.stderr


# --- caption ----------------------------------------------------------------------------------


def test_caption_json_gives_one_line_per_image_with_caption_and_timings(env, tmp_path):
    files = [photo(tmp_path / "red.jpg", (200, 30, 30)), photo(tmp_path / "green.png", (30, 200, 30))]
    files.append(photo(tmp_path / "blue.webp", (30, 30, 200)))
    done = camcap("caption", *map(str, files), "--model", MODEL, "--json", env=env)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(record["file"] for record in records) == sorted(map(str, files))
    for record in records:
        assert record["type"] == "caption"
        assert isinstance(record["caption"], str) and record["caption"].strip()
        assert (record["task"], record["length"], record["model"]) == ("caption", "normal", MODEL)
        assert record["random_weights"] is True
        assert set(record["timings"]) == TIMING_FIELDS
        assert record["timings"]["tokens"] == 4
        assert record["boxes"] == [] and record["points"] == []
    # Said once, on stderr, so stdout stays valid JSON Lines.
    assert done.stderr.count("random weights: captions are meaningless words") == 1


def test_caption_stream_prints_the_same_words_as_they_come(env, tmp_path):
    image = str(photo(tmp_path / "photo.jpg", (120, 90, 40)))
    streamed = camcap("caption", image, "--model", MODEL, "--stream", "--json", env=env)
    assert streamed.returncode == 0, streamed.stderr
    events = [json.loads(line) for line in streamed.stdout.splitlines()]
    tokens = [event["text"] for event in events if event["type"] == "token"]
    (final,) = [event for event in events if event["type"] == "caption"]
    assert len(tokens) >= 2, "expected the caption to arrive in pieces"
    assert events[-1] is final  # every piece comes before the final caption
    assert "".join(tokens).strip() == final["caption"].strip()

    plain = camcap("caption", image, "--model", MODEL, "--stream", env=env)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == final["caption"].strip()


def test_several_images_in_plain_text_are_named(capsys, tmp_path, model_cache, monkeypatch):
    # In-process (the JSON and stream tests above cover the subprocess path): same code, less time.
    monkeypatch.setenv("CAMCAP_CACHE_DIR", str(model_cache))
    monkeypatch.setenv("CAMCAP_MIN_NEW_TOKENS", "4")
    files = [str(photo(tmp_path / f"p{i}.png", (40 * i, 100, 100))) for i in range(3)]
    assert main(["caption", *files, "--model", MODEL, "--length", "short", "--max-new-tokens", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split(": ", 1)[0] for line in lines) == sorted(files)
    assert all(line.split(": ", 1)[1].strip() for line in lines)


def test_unreadable_files_fail_before_the_model_loads_naming_each_file(empty_cache_env, tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture")
    good = photo(tmp_path / "good.jpg", (10, 20, 30))
    missing = tmp_path / "missing.jpg"
    done = camcap(
        "caption", str(good), str(tmp_path / "notes.txt"), str(missing), "--model", MODEL, env=empty_cache_env
    )
    assert_clean_error(done, 2)
    assert "2 files cannot be read as images" in done.stderr
    assert f"{tmp_path / 'notes.txt'}: not an image camcap can read" in done.stderr
    assert f"{missing}: no such file" in done.stderr
    assert str(good) not in done.stderr
    assert done.stdout == ""
    # Nothing was built: the check ran before the model was touched.
    assert not (Path(empty_cache_env["CAMCAP_CACHE_DIR"]) / "random").exists()


def test_a_truncated_image_names_the_file(capsys, tmp_path, model_cache, monkeypatch):
    monkeypatch.setenv("CAMCAP_CACHE_DIR", str(model_cache))
    whole = photo(tmp_path / "whole.jpg", (90, 90, 90)).read_bytes()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(whole[: len(whole) // 2])  # the header survives, the pixels do not
    assert main(["caption", str(broken), "--model", MODEL]) == 2
    assert f"camcap: error: {broken}: cannot decode the image" in capsys.readouterr().err


def test_image_files_are_turned_upright_and_sized_like_server_frames(tmp_path):
    from camcap.images import open_image

    sideways = Image.new("RGB", (400, 200), (255, 0, 0))
    exif = sideways.getexif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees clockwise to display
    sideways.save(tmp_path / "phone.jpg", exif=exif)
    assert open_image(tmp_path / "phone.jpg").size == (200, 400)
    assert open_image(tmp_path / "phone.jpg", max_short_side=100).size == (100, 200)
    photo(tmp_path / "small.png", (1, 2, 3))  # 96x72: never upscaled
    assert open_image(tmp_path / "small.png", max_short_side=378).size == (96, 72)


def test_a_folder_is_not_an_image(tmp_path):
    from camcap.images import check_image_files

    with pytest.raises(InvalidImageError, match="is a folder, not an image file"):
        check_image_files([tmp_path])


def test_unknown_spec_lists_the_known_ones(env, tmp_path):
    done = camcap("caption", str(photo(tmp_path / "a.jpg", (1, 2, 3))), "--model", "nonsense", env=env)
    assert_clean_error(done, 2)
    assert "Unknown model spec 'nonsense'" in done.stderr
    assert "moondream2" in done.stderr and MODEL in done.stderr


def test_the_default_model_offline_says_how_to_get_it(empty_cache_env, tmp_path):
    done = camcap("caption", str(photo(tmp_path / "a.jpg", (1, 2, 3))), env=empty_cache_env)
    assert_clean_error(done, 3)
    assert "camcap pull moondream2" in done.stderr


def test_a_task_the_model_cannot_do_names_the_ones_it_can(capsys, tmp_path, model_cache, monkeypatch):
    monkeypatch.setenv("CAMCAP_CACHE_DIR", str(model_cache))
    image = str(photo(tmp_path / "a.jpg", (1, 2, 3)))
    assert main(["caption", image, "--model", MODEL, "--detect", "mug"]) == 2
    error = capsys.readouterr().err
    assert "cannot do 'detect'" in error and "caption" in error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-new-tokens", "0"], "invalid setting --max-new-tokens (or CAMCAP_MAX_NEW_TOKENS)"),
        (["--ask", "what?", "--length", "long"], "--length only applies to captions"),
        (["--ask", "  "], "needs a non-empty question"),
    ],
)
def test_bad_flags_are_clear_errors(capsys, tmp_path, args, message):
    assert main(["caption", str(photo(tmp_path / "a.jpg", (1, 2, 3))), "--model", MODEL, *args]) == 2
    assert message in capsys.readouterr().err


# --- models and pull --------------------------------------------------------------------------


def test_models_lists_specs_and_pull_builds_a_random_one(empty_cache_env):
    before = camcap("models", "--json", env=empty_cache_env)
    assert before.returncode == 0, before.stderr
    listed = {entry["spec"]: entry for entry in json.loads(before.stdout)}
    assert {"moondream2", MODEL} <= set(listed)
    assert listed[MODEL]["available"] is False
    assert listed["moondream2"]["approx_size_gb"]

    pulled = camcap("pull", MODEL, env=empty_cache_env)
    assert pulled.returncode == 0, pulled.stderr
    folder = Path(pulled.stdout.strip().rsplit(" is ready at ", 1)[1])
    assert (folder / "config.json").is_file()

    after = camcap("models", env=empty_cache_env)
    assert after.returncode == 0, after.stderr
    (row,) = [line for line in after.stdout.splitlines() if line.startswith(MODEL + " ")]
    assert row.split()[1] == "built"
    assert "moondream2" in after.stdout


def test_pull_of_an_unknown_random_architecture_lists_the_known_ones(capsys, tmp_path):
    assert main(["pull", "random:nope", "--cache-dir", str(tmp_path)]) == 2
    assert "blip-tiny" in capsys.readouterr().err


def test_pull_of_a_hub_model_offline_is_the_helpful_error(capsys, tmp_path):
    assert main(["pull", "hf:someone/some-vlm", "--cache-dir", str(tmp_path)]) == 3
    error = capsys.readouterr().err
    assert error.startswith("camcap: error: The model someone/some-vlm is not in the local cache")
    assert "HF_HUB_OFFLINE" in error


# --- serve ------------------------------------------------------------------------------------


def test_serve_refuses_a_busy_port_before_loading_anything(env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = camcap("serve", "--model", MODEL, "--port", str(port), "--no-open", env=env, timeout=60)
    assert_clean_error(done, 2)
    assert f"port {port} is already in use; try --port {port + 1} or stop the other process" in done.stderr


def test_serve_starts_and_answers_healthz(env):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "camcap", "serve", "--model", MODEL, "--port", str(port), "--no-open"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"camcap serve did not answer /healthz: {server.communicate(timeout=10)[1]}")
                time.sleep(0.3)
    finally:
        stop_process(server)


# --- help and version -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["caption", "serve", "models", "pull", "doctor"])
def test_every_command_has_help(capsys, command):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: camcap {command}")


def test_help_and_version_through_python_m(env):
    done = camcap("--help", env=env, timeout=60)
    assert done.returncode == 0
    for command in ("caption", "serve", "models", "pull", "doctor"):
        assert command in done.stdout
    version = camcap("--version", env=env, timeout=60)
    assert version.stdout.strip() == f"camcap {__version__}"


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: camcap" in capsys.readouterr().err


def test_bench_compile_flag_reaches_the_settings():
    from camcap import cli
    from camcap.cli._settings import settings_from_args

    parser = cli.build_parser()
    assert settings_from_args(parser.parse_args(["bench", "--compile"])).compile is True
    assert settings_from_args(parser.parse_args(["bench"])).compile is False


def test_serve_flags_reach_the_settings_and_unset_ones_keep_their_defaults(monkeypatch):
    from camcap import cli
    from camcap.cli._settings import settings_from_args

    monkeypatch.delenv("CAMCAP_CHANGE_THRESHOLD", raising=False)
    args = cli.build_parser().parse_args(
        ["serve", "--detail", "high", "--compile", "--max-new-tokens", "12", "--change-threshold", "0",
         "--cut-stale", "--max-batch", "4", "--batch-window-ms", "20", "--no-open"]
    )  # fmt: skip
    settings = settings_from_args(args)
    assert (settings.detail, settings.compile, settings.max_new_tokens) == ("high", True, 12)
    assert (settings.change_threshold, settings.cut_stale, settings.max_batch, settings.batch_window_ms) == (
        0.0,
        True,
        4,
        20.0,
    )
    assert settings.open_browser is False
    defaults = settings_from_args(cli.build_parser().parse_args(["serve"]))
    assert (defaults.compile, defaults.cut_stale, defaults.change_threshold) == (False, False, 0.2)


def test_a_broken_pipe_of_the_commands_own_is_an_error_not_a_closed_stdout(monkeypatch):
    # Only a reader of our stdout going away is quiet; a socket of the command's own breaking
    # (e.g. the bench's HTTP client) must not be swallowed as "stdout closed".
    from camcap import cli
    from camcap.cli import _machine

    def broken(args):
        raise BrokenPipeError("connection to the server broke")

    monkeypatch.setattr(_machine, "models_command", broken)
    with pytest.raises(BrokenPipeError, match="connection to the server broke"):
        cli.main(["models"])
