"""The `camcap` command: a thin shell that parses flags into `Settings` and calls the library.

Every command builds one `Settings` (flags override CAMCAP_* environment variables, which override
the defaults), calls the public API, and prints. User errors (`CamcapError`) become one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import json
import logging
import os
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from camcap import __version__
from camcap.config import Settings
from camcap.errors import CamcapError
from camcap.models.base import Caption, Event, ModelInfo, Task, TaskKind, Token
from camcap.models.options import ModelOptions

if TYPE_CHECKING:  # imported when used: cryptography is not needed by the other commands
    from camcap.server.tls import CertPair

logger = logging.getLogger("camcap.cli")

# Flags that map one-to-one onto Settings fields (argparse dest == field name).
_SETTINGS_FLAGS = (
    "model", "device", "dtype", "max_new_tokens", "detail", "compile", "cache_dir", "host", "port", "open_browser",
    "change_threshold", "cut_stale", "max_batch", "batch_window_ms",
)  # fmt: skip
# `serve`'s access and HTTPS flags, also Settings fields (docs/security.md).
_ACCESS_FLAGS = ("token", "allow_origins", "allow_hosts", "https", "cert", "key")

_DESCRIPTIONS = {
    "caption": "Prints one caption per image (with its file name when there are several), the words as the\n"
    "model writes them with --stream, or JSON Lines with --json. Every file is checked before the model\n"
    "loads. Images are captioned in batches as large as the model allows.",
    "serve": "Starts the web page and API on this machine (nothing leaves it) and opens your browser.\n"
    "The model loads in the background; the page says when it is ready.",
    "models": "Shows every model spec camcap knows, whether it is downloaded (or built), its size on disk\n"
    "and what it costs to get.",
    "pull": "Fetches a model into the cache now, with a progress bar, so later runs work offline.\n"
    "random:<arch> specs are built on this machine instead (no download).",
    "doctor": "Reports versions, the torch build, GPUs and driver, the device camcap would pick and why,\n"
    "cache folders and free space, and whether the model is downloaded, then says what to fix.",
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
"""
_SERVE_EXAMPLES = """\
examples:
  camcap serve                          # http://127.0.0.1:8000, opens your browser
  camcap serve --port 8080 --no-open
  camcap serve --model random:blip-tiny --device cpu
  CAMCAP_MODEL=hf:org/model camcap serve
  camcap serve --host 0.0.0.0           # for other devices: HTTPS, prints a URL with a fresh token
  CAMCAP_TOKEN=$(cat ~/.camcap-token) camcap serve --host 0.0.0.0 --cert cert.pem --key key.pem
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `camcap` command line; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    if args.handler is None:
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.verbose)
    try:
        return int(args.handler(args))
    except CamcapError as exc:
        print(f"camcap: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("camcap: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a socket or pipe of the command's own, not the reader of our output: a real error
        # The reader went away (`camcap caption *.jpg | head -1`): not an error worth a traceback.
        # Point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _stdout_closed() -> bool:
    """True if writing to stdout fails because its reader has gone."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    return False


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps a subcommand's default from overwriting `camcap -v <command>`.
    common.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output (-vv: debug)"
    )

    model = argparse.ArgumentParser(add_help=False)
    group = model.add_argument_group("model")
    group.add_argument("--model", metavar="SPEC", help="moondream2 (default), hf:<repo-or-folder> or random:<arch>")
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
        _caption,
        "Caption image files.",
        parents=[common, model, generation, cache],
        epilog=_CAPTION_EXAMPLES,
    )
    caption.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, WebP, ...)")
    caption.add_argument("--length", choices=("short", "normal", "long"), help="caption length (default: normal)")
    task = caption.add_mutually_exclusive_group()
    task.add_argument("--ask", metavar="QUESTION", help="answer a question about each image instead")
    task.add_argument("--detect", metavar="OBJECT", help="find bounding boxes of an object (models that can)")
    task.add_argument("--point", metavar="OBJECT", help="find centre points of an object (models that can)")
    caption.add_argument("--stream", action="store_true", help="print words as the model writes them")
    caption.add_argument("--json", action="store_true", help="one JSON object per image (JSON Lines)")

    serve = command(
        "serve",
        _serve,
        "Serve the live captioning page and API.",
        parents=[common, model, generation, cache],
        epilog=_SERVE_EXAMPLES,
    )
    serve.add_argument("--host", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, help="port to listen on (default: 8000)")
    serve.add_argument(
        "--no-open", dest="open_browser", action="store_const", const=False, help="do not open a browser"
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
        help="let an idle model wait this long for other streams' frames to share a batch (default: 0)",
    )
    access = serve.add_argument_group("access (see docs/security.md)")
    access.add_argument(
        "--token",
        help="access token every client must send (16+ characters of A-Z a-z 0-9 - _ . ~). Prefer CAMCAP_TOKEN: "
        "a command line is visible to other users in `ps`. Default: none on 127.0.0.1; a fresh one, printed "
        "in the URL, when listening beyond it",
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
    access.add_argument("--cert", metavar="FILE", help="your own PEM certificate (chain) for HTTPS")
    access.add_argument("--key", metavar="FILE", help="the unencrypted PEM private key of --cert")

    models = command(
        "models", _models, "List the models camcap knows and whether they are on disk.", parents=[common, cache]
    )
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    pull = command(
        "pull", _pull, "Download a model ahead of time (or build a random one).", parents=[common, cache],
        epilog=_PULL_EXAMPLES,
    )  # fmt: skip
    pull.add_argument("spec", metavar="SPEC", help="moondream2[@revision], hf:<repo>[@revision] or random:<arch>")

    doctor = command(
        "doctor", _doctor, "Check this machine: GPU, drivers, torch build, caches and the model.",
        parents=[common, model, cache],
    )  # fmt: skip
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")

    bench = command(
        "bench", _bench, "Benchmark camcap's latency on this machine.", parents=[common, model, cache],
        epilog=_BENCH_EXAMPLES,
    )  # fmt: skip
    bench.add_argument("--detail", choices=("low", "high"), help="frame size the model asks for (default: low)")
    bench.add_argument("--new-tokens", type=int, metavar="N", help="tokens per caption, min = max (default: 10)")
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
    sizes.add_argument("--streams", type=_ints, metavar="LIST", help="streams: concurrent stream counts (1,2,4,8)")
    sizes.add_argument("--captions-per-stream", type=int, metavar="N", help="streams: measured captions each (3)")
    sizes.add_argument("--batch-windows", type=_floats, metavar="LIST", help="streams: batching windows, ms (0,50)")
    sizes.add_argument(
        "--thresholds", dest="change_thresholds", type=_floats, metavar="LIST", help="gating: change thresholds, %%"
    )
    return parser


# --- commands ---------------------------------------------------------------------------------


def _caption(args: argparse.Namespace) -> int:
    from camcap import create_captioner
    from camcap.images import check_image_files, open_image

    settings = _settings(args)
    task = _task(args)
    # Check the files before loading the model: a typo should fail in milliseconds.
    check_image_files(args.images)
    out = _CaptionOutput(json_lines=args.json, stream=args.stream, name_files=len(args.images) > 1)
    with create_captioner(settings.model, _options(settings)) as captioner:
        info = captioner.info
        info.check_task(task)
        if info.random_weights:
            print(f"camcap: {info.name} has random weights: captions are meaningless words.", file=sys.stderr)
        # Plain-text streaming shows one image's words at a time; a batch would interleave them.
        size = 1 if args.stream and not args.json else max(1, info.max_batch)
        for files in _chunks(args.images, size):
            requests = [(open_image(path, max_short_side=info.input_size), task) for path in files]
            for event in captioner.generate(requests):
                out.show(event, files, info)
    return 0


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # Before the model loads (which can take minutes): a busy port should fail at once.
    _check_port_free(settings.host, settings.port)
    import uvicorn

    from camcap.server.app import create_app, uvicorn_options
    from camcap.server.security import check_bind_safety, url_with_token

    given = settings.token.get_secret_value() if settings.token is not None else None
    # Beyond loopback without a token, one is made here and shown in the URL below.
    token = check_bind_safety(settings.host, given)
    if token is not None and token != given:
        settings = settings.model_copy(update={"token": SecretStr(token)})
    pair = _tls_pair(settings)
    app = create_app(settings)
    scheme = "https" if pair is not None else "http"
    url = url_with_token(f"{scheme}://{_browser_host(settings.host)}:{settings.port}/", token)
    if settings.open_browser and settings.port:  # port 0: the OS picks one, known only to uvicorn
        threading.Thread(target=_open_when_listening, args=(settings.host, settings.port, url), daemon=True).start()
    _print_access(settings, token, generated=token is not None and token != given, pair=pair)
    print(f"camcap: serving {settings.model} at {url} (Ctrl+C to stop)", file=sys.stderr)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="debug" if args.verbose > 1 else "info",
        ssl_certfile=None if pair is None else str(pair.cert),
        ssl_keyfile=None if pair is None else str(pair.key),
        **uvicorn_options(settings),
    )
    return 0


def _tls_pair(settings: Settings) -> CertPair | None:
    """The checked certificate to serve HTTPS with (self-signed unless --cert/--key), or None."""
    from camcap.server import tls
    from camcap.server.security import served_names

    if not settings.serves_https():
        if settings.cert is not None or settings.key is not None:
            raise CamcapError("--cert and --key are for HTTPS; leave out --no-https (or CAMCAP_HTTPS=false).")
        return None
    if (settings.cert is None) != (settings.key is None):
        raise CamcapError("--cert and --key go together: pass both, or neither for a self-signed certificate.")
    if settings.cert is not None and settings.key is not None:
        return tls.load_cert_pair(settings.cert, settings.key)
    cert, key = tls.ensure_self_signed_cert(hostnames=served_names(settings.host))
    return tls.load_cert_pair(cert, key)


def _print_access(settings: Settings, token: str | None, *, generated: bool, pair: CertPair | None) -> None:
    """Say how to reach the server: the token it needs, other devices' URLs, the certificate."""
    from camcap.server.security import is_loopback_host, is_wildcard_host, local_addresses, url_with_token

    say = functools.partial(print, file=sys.stderr)
    if generated:
        say("camcap: other devices can reach this server, so it needs an access token; a new one was made.")
        say("camcap: open the URL below (it carries the token); set CAMCAP_TOKEN to keep one across restarts.")
    if not is_loopback_host(settings.host):
        scheme = "https" if pair is not None else "http"
        hosts = local_addresses() if is_wildcard_host(settings.host) else [settings.host]
        for host in hosts:
            shown = f"[{host}]" if ":" in host else host
            say(f"camcap: from another device: {url_with_token(f'{scheme}://{shown}:{settings.port}/', token)}")
        if pair is None:
            say(
                "camcap: warning: plain HTTP beyond this machine: anyone on the network path can read frames, "
                "captions and the token, and browsers on other devices will not open their camera. Drop --no-https."
            )
    if pair is not None:
        kind = "self-signed (browsers warn once; accept it if the fingerprint matches)" if pair.self_signed else ""
        say(f"camcap: HTTPS certificate {pair.cert} {kind}".rstrip())
        say(f"camcap:   SHA-256 fingerprint {pair.fingerprint}")


def _models(args: argparse.Namespace) -> int:
    from camcap.models.store import human_size, list_models

    statuses = list_models(_options(_settings(args)))
    if args.json:
        print(json.dumps([dataclasses.asdict(status) for status in statuses], indent=2))
        return 0
    rows = [("SPEC", "ON DISK", "SIZE", "TO GET IT", "DESCRIPTION")]
    for s in statuses:
        state = ("built" if s.source == "random" else "downloaded") if s.available else "no"
        size = human_size(s.size_on_disk_bytes) if s.available else "-"
        approx = f"{s.approx_size_gb:g} GB" if s.approx_size_gb else "a few MB"
        get = f"built here, {approx}" if s.source == "random" else f"download {approx}" if s.approx_size_gb else "-"
        rows.append((s.spec, state, size, get, s.description))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4])
    print("\nAny Hugging Face image-text-to-text model works too: --model hf:<repo-id-or-folder>.")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from camcap.models import hub, registry
    from camcap.models.store import model_status

    # allow_download is not consulted: `pull` is the explicit request to download.
    options = dataclasses.replace(_options(_settings(args)), allow_download=True)
    spec = args.spec.strip()
    name, _, revision = spec.partition("@")
    if name == registry.DEFAULT_SPEC:
        from camcap.models import moondream

        # The snapshots setup() loads (the weights and the tokenizer repo its remote code reads).
        folders = moondream.snapshot_folders(options, revision or None)
        print(f"{spec} is ready at {folders[0]}")
        return 0
    if spec.startswith("hf:") and len(spec) > 3 and not os.path.isdir(spec[3:]):
        repo, _, revision = spec[3:].partition("@")
        folder = hub.resolve_snapshot(
            repo, revision=revision or None, cache_dir=registry.hub_cache_dir(options), spec=spec
        )
        print(f"{spec} is ready at {folder}")
        return 0
    if spec.startswith("random:"):
        from camcap.models import random_checkpoints

        # The folder the registry builds into and loads from (see create_captioner).
        root = registry.random_checkpoint_dir(options)
        arch = spec[len("random:") :]
        if arch in random_checkpoints.RANDOM_ARCHITECTURES and not random_checkpoints.is_random_checkpoint(root / arch):
            print(f"camcap: building {spec} in {root}...", file=sys.stderr)
        print(f"{spec} is ready at {random_checkpoints.ensure_checkpoint(arch, root)}")
        return 0
    status = model_status(spec, options)  # an hf: folder; anything else raises the unknown-spec error
    print(f"{spec} is a local folder, nothing to download: {status.path}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from camcap.doctor import collect_report, render_report

    report = collect_report(_settings(args))
    print(json.dumps(report.to_dict(), indent=2) if args.json else render_report(report))
    return 0


_BENCH_SIZES = (
    "warmup", "pairs", "transport_reps", "seconds", "interval_s", "sizes", "size_reps", "details", "streams",
    "captions_per_stream", "batch_windows", "change_thresholds",
)  # fmt: skip


def _bench(args: argparse.Namespace) -> int:
    from camcap.bench import BenchOptions, run_bench
    from camcap.bench.options import SMOKE_MODEL

    settings = _settings(args)
    if args.smoke and args.model is None:
        settings = settings.model_copy(update={"model": SMOKE_MODEL})
    changes: dict[str, Any] = {name: getattr(args, name) for name in _BENCH_SIZES if getattr(args, name) is not None}
    if args.new_tokens is not None:
        changes["new_tokens"] = args.new_tokens
    if args.scenarios is not None:
        changes["scenarios"] = args.scenarios
    try:
        options = BenchOptions.smoke(settings, **changes) if args.smoke else BenchOptions(settings=settings, **changes)
    except ValueError as exc:
        raise CamcapError(str(exc)) from None
    if not args.verbose:
        # Every server configuration the bench starts would repeat the random-weights warning.
        logging.getLogger("camcap.server.host").setLevel(logging.ERROR)
    report = run_bench(options, progress=lambda line: print(f"camcap bench: {line}", file=sys.stderr))
    print(report.markdown() if args.markdown else report.text())
    if args.json:
        report.write_json(args.json)
        print(f"camcap bench: wrote {args.json}", file=sys.stderr)
    if report.failed:
        print(f"camcap bench: failed: {', '.join(report.failed)} (see the errors above)", file=sys.stderr)
        return 1
    return 0


def _bench_scenarios() -> tuple[str, ...]:
    from camcap.bench.options import SCENARIOS

    return SCENARIOS


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(value) for value in _names(text))


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(value) for value in _names(text))


# --- helpers ----------------------------------------------------------------------------------


class _CaptionOutput:
    """Prints caption events as text, streamed text, or JSON Lines."""

    def __init__(self, *, json_lines: bool, stream: bool, name_files: bool) -> None:
        self.json_lines, self.stream, self.name_files = json_lines, stream, name_files
        self.streamed: set[int] = set()  # batch items whose words were already printed

    def show(self, event: Event, files: Sequence[str], info: ModelInfo) -> None:
        if isinstance(event, Token) and self.stream:
            if self.json_lines:
                self._json({"type": "token", "file": files[event.index], "text": event.text})
                return
            if event.index not in self.streamed and self.name_files:
                print(f"{files[event.index]}: ", end="")
            self.streamed.add(event.index)
            print(event.text, end="", flush=True)
        elif isinstance(event, Caption):
            path = files[event.index]
            if self.json_lines:
                self._json(_caption_record(path, event, info))
            else:
                prefix = f"{path}: " if self.name_files and event.index not in self.streamed else ""
                text = "" if event.index in self.streamed else event.text
                print(prefix + text + "".join(f"\n  {line}" for line in _places(event)), flush=True)
                self.streamed.discard(event.index)
            logger.info(
                "%s: %.0f ms (first token %.0f ms, %d tokens)",
                path, event.timings.total_ms, event.timings.first_token_ms, event.timings.tokens,
            )  # fmt: skip

    @staticmethod
    def _json(record: dict[str, Any]) -> None:
        print(json.dumps(record, ensure_ascii=False), flush=True)


def _caption_record(path: str, caption: Caption, info: ModelInfo) -> dict[str, Any]:
    task = caption.task
    record: dict[str, Any] = {
        "type": "caption",
        "file": path,
        "caption": caption.text,
        "task": task.kind.value,
        "model": info.name,
        "random_weights": info.random_weights,
        "timings": dataclasses.asdict(caption.timings),
        "boxes": [dataclasses.asdict(box) for box in caption.boxes],
        "points": [dataclasses.asdict(point) for point in caption.points],
    }
    if task.kind is TaskKind.CAPTION:
        record["length"] = task.length
    elif task.question is not None:
        record["question"] = task.question
    else:
        record["object"] = task.target
    return record


def _places(caption: Caption) -> list[str]:
    boxes = [f"box {b.x_min:.3f} {b.y_min:.3f} {b.x_max:.3f} {b.y_max:.3f}" for b in caption.boxes]
    return boxes + [f"point {p.x:.3f} {p.y:.3f}" for p in caption.points]


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the flags given; flags left out fall back to CAMCAP_* variables, then defaults."""
    names = (*_SETTINGS_FLAGS, *_ACCESS_FLAGS)
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'-'.join(str(part) for part in error['loc']).replace('_', '-')} "
            f"(or CAMCAP_{'_'.join(str(part) for part in error['loc']).upper()}): {error['msg']}"
            for error in exc.errors()
        )
        raise CamcapError(f"invalid setting {problems}.") from None


def _options(settings: Settings) -> ModelOptions:
    try:
        return settings.model_options()
    except ValueError as exc:
        raise CamcapError(str(exc)) from None


def _task(args: argparse.Namespace) -> Task:
    if args.length is not None and (args.ask or args.detect or args.point):
        raise CamcapError("--length only applies to captions; leave it out with --ask, --detect or --point.")
    try:
        if args.ask is not None:
            return Task.query(args.ask)
        if args.detect is not None:
            return Task.detect(args.detect)
        if args.point is not None:
            return Task.point(args.point)
        return Task.caption(args.length or "normal")
    except ValueError as exc:
        raise CamcapError(str(exc)) from None


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_port_free(host: str, port: int) -> None:
    """Fail with a clear message if uvicorn could not bind (host, port)."""
    if port == 0:
        return  # the OS picks a free port
    # The same socket uvicorn binds (Config.bind_socket), so the answer is the one it would get.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        if os.name != "nt":
            # Like uvicorn: a port whose last connection is in TIME_WAIT is free to reuse. (On
            # Windows this option would let us bind a port another process listens on.)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except socket.gaierror as exc:
            raise CamcapError(
                f"cannot listen on host {host!r} ({exc.strerror}); use --host 127.0.0.1 (this machine only) "
                "or --host 0.0.0.0 (every network interface)."
            ) from None
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                raise CamcapError(
                    f"port {port} is already in use; try --port {port + 1} or stop the other process."
                ) from None
            if exc.errno == errno.EACCES:
                raise CamcapError(
                    f"not allowed to listen on port {port} (ports below 1024 need administrator rights); "
                    "try --port 8000."
                ) from None
            raise CamcapError(
                f"cannot listen on {host}:{port} ({exc.strerror}); use an address of this machine, such as "
                "--host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every network interface)."
            ) from None


def _browser_host(host: str) -> str:
    # A wildcard address is not somewhere a browser can go; the camera also needs a secure
    # context, which http://127.0.0.1 is and a LAN address is not.
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _open_when_listening(host: str, port: int, url: str) -> None:
    """Open the page once the server accepts connections (the model may take minutes to load)."""
    target = _browser_host(host).strip("[]")
    while True:
        try:
            with socket.create_connection((target, port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    webbrowser.open(url)


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    fmt = "%(levelname)s: %(message)s" if verbose == 0 else "%(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
