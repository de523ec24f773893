"""The `camcap` command line: every command, its flags and its `--help` text, in one parser.

Flags whose argparse dest is a `Settings` field reach the settings by name (_settings.py); the
rest are read by their command. Each command's handler lives in its own module and is set as the
subparser's `handler` default, which `main` calls.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camcap import __version__
from camcap.cli import _bench, _caption, _machine, _serve, _watch
from camcap.cli._alerts import add_alert_flags

_DESCRIPTIONS = {
    "caption": "Prints one caption per image (with its file name when there are several), the words as the\n"
    "model writes them with --stream, or JSON Lines with --json. Every file is checked before the model\n"
    "loads. Images are captioned in batches as large as the model allows.\n\n"
    "Video files (MP4, MKV, WebM, MOV, AVI, ...) get timed captions: a frame every --every seconds (or\n"
    "when the picture changes, --on-change) as WebVTT, SRT, JSON Lines or text, to stdout or -o.",
    "serve": "Starts the web page and API on this machine (nothing leaves it) and opens your browser.\n"
    "The model loads in the background; the page says when it is ready.",
    "watch": "Captions live sources without a page: RTSP/RTSPS cameras (over TCP), HTTP(S) MJPEG and HLS\n"
    "streams, capture devices (/dev/videoN) and video files played at their own rate (--realtime).\n"
    "Prints one JSON line per caption (or WebVTT/SRT cues), flushed as they come; source events go to\n"
    "stderr. Sources that fail are retried with backoff for as long as it runs; credentials in URLs are\n"
    "never shown. Several sources share one model fairly.",
    "models": "Shows every model spec camcap knows, whether it is downloaded (or built), its size on disk\n"
    "and what it costs to get.",
    "pull": "Fetches a model into the cache now, with a progress bar, so later runs work offline.\n"
    "random:<arch> specs are built on this machine instead (no download).",
    "doctor": "Reports the system (WSL, containers, macOS and Rosetta), versions, the torch build, GPUs and\n"
    "driver, the device camcap would pick and why, cache folders and free space, and whether the model\n"
    "is downloaded, then says what is wrong and the command that fixes it (--json: the same for scripts).",
    "bench": "Measures camcap's latency story on this machine: the server's overhead next to the model,\n"
    "transports, caption freshness, frame size, concurrent streams, change gating and the stale-work cut.\n"
    "The real server runs in this process on 127.0.0.1; frames are synthetic. Prints a table (or a\n"
    "markdown section with --markdown) and writes every number as JSON with --json.",
}

_CAPTION_EXAMPLES = """\
examples:
  camcap caption photo.jpg
  camcap caption *.jpg --length short --json > captions.jsonl
  camcap caption street.jpg --ask "How many cars are there?" --stream
  camcap caption desk.png --detect mug --json
  camcap caption photo.jpg --model hf:Salesforce/blip-image-captioning-base
  camcap caption talk.mp4 -o talk.vtt                 # a caption every 2 s, as WebVTT subtitles
  camcap caption talk.mp4 --on-change --every 10 --format jsonl
  camcap caption videos/*.mp4 --format srt -o captions/   # one sidecar per video
  camcap caption photo.jpg --model openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-VL-3B-Instruct
"""

_SERVE_EXAMPLES = """\
examples:
  camcap serve                          # http://127.0.0.1:8000, opens your browser
  camcap serve --port 8080 --no-open
  camcap serve --model random:blip-tiny --device cpu
  CAMCAP_MODEL=hf:org/model camcap serve
  camcap serve --model openai:http://127.0.0.1:11434/v1#qwen2.5vl:3b   # a VLM that Ollama serves
  camcap serve --host 0.0.0.0           # for other devices: HTTPS, prints a URL with a fresh token
  CAMCAP_TOKEN=$(cat ~/.camcap-token) camcap serve --host 0.0.0.0 --cert cert.pem --key key.pem

Ctrl+C stops it and exits 130; SIGTERM stops it the same way, then ends by that signal (143).
Both answer requests still waiting (503 server_closing) and close open streams (1012).
"""

_WATCH_EXAMPLES = """\
examples:
  camcap watch rtsp://user:pass@192.168.1.20:554/stream1
  camcap watch door=rtsp://192.168.1.20/stream1 desk=/dev/video0 --duration 3600 > captions.jsonl
  camcap watch http://camera.local/mjpeg --format vtt -o live.vtt
  camcap watch demo.mp4 --realtime --loop --max-captions 10
"""

_PULL_EXAMPLES = """\
examples:
  camcap pull moondream2
  camcap pull hf:Salesforce/blip-image-captioning-base
  camcap pull random:blip-tiny          # builds a tiny random-weight model locally
"""

_BENCH_EXAMPLES = """\
examples:
  camcap bench --smoke                  # seconds: every scenario, tiny model (CI)
  camcap bench --model random:blip-base --new-tokens 10 --json bench.json
  camcap bench --model random:smolvlm-256m --scenarios frame_size --also-detail high
  camcap bench --scenarios streams --streams 1,2,4,8 --batch-windows 0,20,50 --markdown
"""


def build_parser() -> argparse.ArgumentParser:
    """The `camcap` parser; each command sets `handler`, the function `main` runs with the parsed flags."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps a subcommand's default from overwriting `camcap -v <command>`.
    common.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output (-vv: debug)"
    )

    model = argparse.ArgumentParser(add_help=False)
    group = model.add_argument_group("model")
    group.add_argument(
        "--model",
        metavar="SPEC",
        help="moondream2 (default), hf:<repo-or-folder>, random:<arch> or openai:<base_url>#<model>",
    )
    group.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    group.add_argument("--dtype", choices=("auto", "float32", "float16", "bfloat16"), help="default: auto")

    generation = argparse.ArgumentParser(add_help=False)
    group = generation.add_argument_group("generation")
    group.add_argument("--max-new-tokens", type=int, metavar="N", help="longest caption, in tokens (default: 40)")
    group.add_argument("--detail", choices=("low", "high"), help="frame size: low is faster, high sees more")
    group.add_argument(
        "--compile",
        action="store_const",
        const=True,
        help="torch.compile the model where the backend supports it (slower start, maybe faster captions)",
    )

    remote = argparse.ArgumentParser(add_help=False)
    group = remote.add_argument_group(
        "openai: models (a server you run: vLLM, SGLang, llama-server, Ollama; docs/openai.md). "
        "The API key is read from CAMCAP_OPENAI_API_KEY only"
    )
    group.add_argument("--input-size", type=int, metavar="PX", help="short side of the frames sent (default: 512)")
    group.add_argument("--max-inflight", type=int, metavar="N", help="requests in flight at once (default: 8)")
    group.add_argument(
        "--openai-prompt",
        dest="openai_prompts",
        action="append",
        type=_prompt,
        metavar="TASK=TEMPLATE",
        help="the prompt of a task: caption_short, caption_normal, caption_long, or query (with {question}); "
        "repeatable",
    )

    cache = argparse.ArgumentParser(add_help=False)
    cache.add_argument(
        "--cache-dir",
        metavar="FOLDER",
        help="where models are kept (default: the Hugging Face cache, and ~/.cache/camcap for built ones)",
    )

    parser = argparse.ArgumentParser(
        prog="camcap",
        description="Live, private, local captions for any camera, by a small vision-language model.",
        epilog="Run `camcap <command> --help` for a command's options. Every option can also be set with an "
        "environment variable CAMCAP_<OPTION>, e.g. CAMCAP_MODEL=random:blip-tiny.",
    )
    parser.add_argument("--version", action="version", version=f"camcap {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.set_defaults(handler=None)
    commands = parser.add_subparsers(title="commands", metavar="<command>")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_: str, **kwargs: Any) -> Any:
        description = f"{help_}\n\n{_DESCRIPTIONS[name]}"
        sub = commands.add_parser(
            name, help=help_, description=description, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs
        )
        sub.set_defaults(handler=handler)
        return sub

    caption = command(
        "caption",
        _caption.caption_command,
        "Caption image files.",
        parents=[common, model, remote, generation, cache],
        epilog=_CAPTION_EXAMPLES,
    )
    caption.add_argument(
        "images", nargs="+", metavar="FILE", help="image files (JPEG, PNG, WebP, ...) or video files (MP4, MKV, ...)"
    )
    caption.add_argument("--length", choices=("short", "normal", "long"), help="caption length (default: normal)")
    task = caption.add_mutually_exclusive_group()
    task.add_argument("--ask", metavar="QUESTION", help="answer a question about each image instead")
    task.add_argument("--detect", metavar="OBJECT", help="find bounding boxes of an object (models that can)")
    task.add_argument("--point", metavar="OBJECT", help="find centre points of an object (models that can)")
    caption.add_argument("--stream", action="store_true", help="print words as the model writes them")
    caption.add_argument("--json", action="store_true", help="one JSON object per image (JSON Lines)")
    video = caption.add_argument_group("video files")
    video.add_argument("--every", type=float, metavar="SECONDS", help="caption a frame every SECONDS (default: 2)")
    video.add_argument(
        "--on-change",
        action="store_true",
        help="caption a frame when the picture changes (by --change-threshold), at least every --every seconds",
    )
    video.add_argument(
        "--change-threshold", type=float, metavar="PERCENT", help="--on-change: share of the picture (default: 0.2)"
    )
    video.add_argument("--format", choices=("vtt", "srt", "jsonl", "txt"), help="default: vtt, or -o FILE's suffix")
    video.add_argument(
        "-o", "--output", metavar="FILE|FOLDER", help="where captions go (default: stdout); a folder: a file per video"
    )

    serve = command(
        "serve",
        _serve.serve_command,
        "Serve the live captioning page and API.",
        parents=[common, model, remote, generation, cache],
        epilog=_SERVE_EXAMPLES,
    )
    serve.add_argument("--host", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, help="port to listen on (default: 8000)")
    serve.add_argument(
        "--no-open", dest="open_browser", action="store_const", const=False, help="do not open a browser"
    )
    serve.add_argument(
        "--source",
        dest="sources",
        action="append",
        metavar="NAME=URL",
        help="caption a live source continuously: rtsp://, http(s)://, /dev/videoN or a video file (looped); "
        "repeatable. See GET /v1/sources",
    )
    serve.add_argument(
        "--log",
        type=Path,
        metavar="FILE",
        help="append every caption event (all streams) to FILE as JSON Lines, rotated by size "
        "(CAMCAP_LOG_MAX_BYTES, default 10 MiB); without it nothing about the streams is written",
    )
    freshness = serve.add_argument_group("freshness and throughput (see docs/benchmarks.md)")
    freshness.add_argument(
        "--change-threshold",
        type=float,
        metavar="PERCENT",
        help="skip frames whose picture changed less than this share since the last captioned one (default: 0.2; "
        "0 captions every frame)",
    )
    freshness.add_argument(
        "--cut-stale",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stop a caption when a much newer, changed frame of the same stream waits (default: off)",
    )
    freshness.add_argument("--max-batch", type=int, metavar="N", help="most frames of different streams per batch")
    freshness.add_argument(
        "--batch-window-ms",
        type=float,
        metavar="MS",
        help="longest an idle model waits for other active streams' frames to share a batch; 0: off (default: 50)",
    )
    access = serve.add_argument_group("access (see docs/security.md)")
    access.add_argument(
        "--token",
        help="access token every client must send (16+ characters of A-Z a-z 0-9 - _ . ~). Prefer CAMCAP_TOKEN: "
        "a command line is visible to other users in `ps`. Default: a fresh one at each start, printed in the "
        "URL the browser opens",
    )
    access.add_argument(
        "--no-token",
        dest="loopback_token",
        action="store_false",
        default=None,
        help="serve 127.0.0.1 without an access token, so any process or user of this machine may connect "
        "(CAMCAP_LOOPBACK_TOKEN=false); beyond 127.0.0.1 a token is always required",
    )
    access.add_argument(
        "--allow-origin",
        dest="allow_origins",
        action="append",
        metavar="ORIGIN",
        help="let web pages from ORIGIN (scheme://host[:port]) call this server; repeatable",
    )
    access.add_argument(
        "--allow-host",
        dest="allow_hosts",
        action="append",
        metavar="NAME",
        help="another name this server is reached by (a DNS name, a reverse proxy); repeatable",
    )
    access.add_argument(
        "--https",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve HTTPS (default: on when listening beyond 127.0.0.1, since browsers only open a camera on "
        "HTTPS pages or localhost); a self-signed certificate is made once and kept in ~/.config/camcap/tls",
    )
    access.add_argument(
        "--allow-image-urls",
        action="store_const",
        const=True,
        help="let POST /v1/chat/completions fetch http(s) image URLs (off: only data: URLs, since fetching "
        "URLs a client names lets it reach other servers through this one)",
    )
    access.add_argument("--cert", metavar="FILE", help="your own PEM certificate (chain) for HTTPS")
    access.add_argument("--key", metavar="FILE", help="the unencrypted PEM private key of --cert")
    add_alert_flags(serve)

    watch = command(
        "watch",
        _watch.watch_command,
        "Caption live cameras and streams headless, as JSON Lines or subtitles.",
        parents=[common, model, generation, cache],
        epilog=_WATCH_EXAMPLES,
    )
    watch.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="[NAME=]URL: rtsp://, rtsps://, http(s)://, /dev/videoN or a file"
    )
    watch.add_argument("--length", choices=("short", "normal", "long"), help="caption length (default: normal)")
    watch.add_argument("--ask", metavar="QUESTION", help="answer a question about each frame instead")
    watch.set_defaults(detect=None, point=None)
    watch.add_argument("--format", choices=("jsonl", "vtt", "srt"), help="default: jsonl, or -o FILE's suffix")
    watch.add_argument("-o", "--output", metavar="FILE", help="write captions to FILE (default: stdout)")
    watch.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    watch.add_argument("--max-captions", type=int, metavar="N", help="stop after N captions")
    watch.add_argument("--realtime", action="store_true", help="play video files as live sources, at their own rate")
    watch.add_argument("--loop", action="store_true", help="with --realtime: start a file again at its end")
    watch.add_argument(
        "--source-ca-file", metavar="PEM", help="verify rtsps:// and https:// certificates against this file"
    )
    watch.add_argument("--change-threshold", type=float, metavar="PERCENT", help="skip unchanged frames (default: 0.2)")
    watch.add_argument("--max-batch", type=int, metavar="N", help="most frames of different sources per batch")
    add_alert_flags(watch)

    models = command(
        "models",
        _machine.models_command,
        "List the models camcap knows and whether they are on disk.",
        parents=[common, cache],
    )
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    pull = command(
        "pull", _machine.pull_command, "Download a model ahead of time (or build a random one).",
        parents=[common, cache], epilog=_PULL_EXAMPLES,
    )  # fmt: skip
    pull.add_argument("spec", metavar="SPEC", help="moondream2[@revision], hf:<repo>[@revision] or random:<arch>")

    doctor = command(
        "doctor", _machine.doctor_command, "Check this machine: GPU, drivers, torch build, caches and the model.",
        parents=[common, model, cache],
    )  # fmt: skip
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")

    bench = command(
        "bench", _bench.bench_command, "Benchmark camcap's latency on this machine.", parents=[common, model, cache],
        epilog=_BENCH_EXAMPLES,
    )  # fmt: skip
    bench.add_argument("--detail", choices=("low", "high"), help="frame size the model asks for (default: low)")
    bench.add_argument("--new-tokens", type=int, metavar="N", help="tokens per caption, min = max (default: 10)")
    bench.add_argument(
        "--compile", action="store_const", const=True, help="torch.compile the model, as `serve --compile` does"
    )
    bench.add_argument(
        "--scenarios", type=_names, metavar="LIST", help="comma-separated, from: " + ", ".join(_bench_scenarios())
    )
    bench.add_argument("--smoke", action="store_true", help="everything at its smallest, random:blip-tiny by default")
    bench.add_argument("--json", metavar="FILE", help="write every number to FILE as JSON")
    bench.add_argument("--markdown", action="store_true", help="print a section for docs/benchmarks.md, not a table")
    sizes = bench.add_argument_group("how much to run (defaults size a CPU run to minutes)")
    sizes.add_argument("--warmup", type=int, metavar="N", help="untimed captions before each series (2)")
    sizes.add_argument("--pairs", type=int, metavar="N", help="overhead: interleaved model/full-path pairs (12)")
    sizes.add_argument("--transport-reps", type=int, metavar="N", help="transports: frames per transport (8)")
    sizes.add_argument("--seconds", type=float, metavar="S", help="freshness, gating, stale_cut: seconds per run (20)")
    sizes.add_argument("--interval", dest="interval_s", type=float, metavar="S", help="freshness: fixed interval (3)")
    sizes.add_argument("--sizes", type=_ints, metavar="LIST", help="frame_size: short sides in px (224,384,512,768)")
    sizes.add_argument("--size-reps", type=int, metavar="N", help="frame_size: captions per size and path (2)")
    sizes.add_argument(
        "--also-detail", dest="details", type=_names, metavar="LIST", help="frame_size: also time these details"
    )
    sizes.add_argument("--streams", type=_ints, metavar="LIST", help="streams, batch_scaling: counts (1,2,4,8)")
    sizes.add_argument(
        "--captions-per-stream", type=int, metavar="N", help="streams: captions each; batch_scaling: rounds (3)"
    )
    sizes.add_argument("--batch-windows", type=_floats, metavar="LIST", help="streams: batching windows, ms (0,50)")
    sizes.add_argument(
        "--thresholds", dest="change_thresholds", type=_floats, metavar="LIST", help="gating: change thresholds, %%"
    )
    sizes.add_argument("--cameras", dest="scale_cameras", type=int, metavar="N", help="scale_out: cameras (32)")
    sizes.add_argument(
        "--replicas", dest="scale_replicas", type=_ints, metavar="LIST", help="scale_out: replica counts (1,2,4)"
    )
    sizes.add_argument(
        "--captions-per-camera", dest="scale_captions", type=int, metavar="N", help="scale_out: each run's length (6)"
    )
    return parser


def _bench_scenarios() -> tuple[str, ...]:
    from camcap.bench.options import SCENARIOS

    return SCENARIOS


def _prompt(text: str) -> tuple[str, str]:
    key, sep, template = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected TASK=TEMPLATE, e.g. caption_short='Say what you see.': {text!r}")
    return key.strip(), template


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(value) for value in _names(text))


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(value) for value in _names(text))
