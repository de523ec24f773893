"""One `Settings` object for the whole process, built by the CLI and passed down.

Values come from (highest first) command-line flags, environment variables prefixed `CAMCAP_`
(e.g. `CAMCAP_MODEL=random:blip-tiny`), then the defaults below. No module reads the
environment at import time; `Settings()` reads it when the CLI builds one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from camcap.engine.batching import DEFAULT_BATCH_WINDOW_MS
from camcap.engine.options import (
    DEFAULT_CHANGE_THRESHOLD,
    DEFAULT_MAX_UNCHANGED_S,
    DEFAULT_STALE_AFTER_MS,
    StreamOptions,
)
from camcap.models.options import ModelOptions

# FRAME_MAGIC, a uint32 length and a JSON header of at most 4096 bytes (server/messages.py).
_FRAME_ENVELOPE_BYTES = 4 + 4 + 4096
# Multipart boundaries, part headers and the text fields (a question is at most 500 characters).
_FORM_OVERHEAD_BYTES = 64 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAMCAP_", extra="ignore")

    # --- model -------------------------------------------------------------------------------
    model: str = Field("moondream2", description="Model spec: moondream2, hf:<repo-or-folder>, random:<arch>.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    dtype: str = Field("auto", description="auto, float32, float16 or bfloat16.")
    max_new_tokens: int = Field(40, ge=1, le=1024)
    min_new_tokens: int | None = Field(None, ge=0)
    cache_dir: Path | None = Field(None, description="Model cache folder (default: the Hugging Face cache).")
    allow_download: bool = True
    compile: bool = False
    detail: Literal["low", "high"] = "low"
    max_batch: int | None = Field(None, ge=1)
    # --- openai: models (models/openai_api.py, docs/openai.md) ----------------------------------
    input_size: int | None = Field(None, ge=16, le=4096, description="openai: frames' short side, px (512).")
    max_inflight: int = Field(8, ge=1, le=256, description="openai: requests in flight at once.")
    # Only from the environment (no flag: a command line is visible in `ps`); never logged or shown.
    openai_api_key: SecretStr | None = Field(None, description="API key of the openai: server.")
    openai_timeout_s: float = Field(60.0, gt=0, description="openai: longest wait for the server, in seconds.")
    # From the environment as JSON, e.g. CAMCAP_OPENAI_PROMPTS='{"caption_short": "Say what you see."}'.
    openai_prompts: dict[str, str] = Field(default_factory=dict, description="openai: prompt templates per task.")
    # Fetching an http(s) image URL from a /v1/chat/completions request is server-side request forgery bait.
    allow_image_urls: bool = Field(False, description="/v1/chat/completions may fetch http(s) image URLs.")

    # --- server ------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    open_browser: bool = True
    # Per-frame limits (WebSocket frames and HTTP uploads). Pixels are checked from the image
    # header, before anything is decoded.
    max_frame_bytes: int = Field(8 * 1024 * 1024, ge=1, description="Largest frame image, in bytes.")
    # A 12-megapixel photo (4032 x 3024) fits, a poster does not: decoding costs memory per pixel
    # before any downscale (docs/security.md has the measurements).
    max_frame_pixels: int = Field(4096 * 3072, ge=1, description="Largest frame, width x height.")

    # --- live sources (camcap/sources/, server/sources.py) -----------------------------------------
    # NAME=URL each; from the environment as JSON: CAMCAP_SOURCES='["door=rtsp://cam/stream1"]'.
    # SecretStr: URLs often hold a password, which must stay out of repr(), logs and tracebacks.
    sources: list[SecretStr] = Field(
        default_factory=list, description="Live sources the server captions continuously: NAME=URL each."
    )
    # Unset: rtsps:// and https:// sources are encrypted but their certificates are not verified
    # (FFmpeg's default: most cameras' certificates are self-signed).
    source_ca_file: Path | None = Field(
        None, description="Verify rtsps:// and https:// sources' certificates against this PEM file."
    )

    # --- alerts (camcap/alerts/, docs/alerts.md) ------------------------------------------------
    # NAME=QUESTION each; from the environment as JSON: CAMCAP_ALERTS='["person=Is there a person?"]'.
    alerts: list[str] = Field(default_factory=list, description="Alert rules asked of every camera: NAME=QUESTION.")
    rules: Path | None = Field(None, description="A TOML file of [[rule]] tables (docs/alerts.md).")
    # SecretStr: a webhook URL often carries a token.
    webhooks: list[SecretStr] = Field(default_factory=list, description="POST each alert as JSON to these URLs.")
    # Only from the environment or a file (no flag: a command line is visible in `ps`); never logged or shown.
    webhook_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key signing webhook bodies.")
    webhook_secret_file: Path | None = Field(None, description="A file holding the webhook secret.")
    webhook_snapshot: bool = Field(False, description="Webhook bodies carry the frame as base64 JPEG.")
    webhook_timeout_s: float = Field(5.0, gt=0, description="Longest wait for a webhook receiver (s).")
    webhook_retries: int = Field(3, ge=0, le=10, description="Retries of a failed webhook POST (0.5 s, doubling).")
    mqtt: str | None = Field(None, description="MQTT broker for captions, rule states and Home Assistant discovery.")
    mqtt_password: SecretStr | None = Field(None, description="MQTT password (only from the environment).")
    mqtt_password_file: Path | None = Field(None, description="A file holding the MQTT password.")

    # --- real-time policies (engine/options.py, engine/scheduler.py) ------------------------------
    # Defaults of every stream; a stream's `config` message may override change_threshold and
    # cut_stale. Measurements behind the threshold: engine/options.py.
    change_threshold: float = Field(
        DEFAULT_CHANGE_THRESHOLD,
        ge=0,
        le=100,
        description="Skip a frame if less than this % of the picture changed since the last caption; 0: off.",
    )
    max_unchanged_s: float = Field(
        DEFAULT_MAX_UNCHANGED_S, ge=0, description="Caption at least this often, changed or not (s); 0: never forced."
    )
    cut_stale: bool = Field(False, description="Cut a caption short when a much newer, changed frame waits.")
    stale_after_ms: float = Field(
        DEFAULT_STALE_AFTER_MS, ge=0, description="How much newer a waiting frame must be to cut (cut_stale)."
    )
    # Measured and bounded in engine/batching.py: it never holds a lone stream or a quiet one.
    batch_window_ms: float = Field(
        DEFAULT_BATCH_WINDOW_MS,
        ge=0,
        le=1000,
        description="Longest an idle model waits for other streams' frames to fill a batch (ms); 0: off.",
    )

    # --- access (server/security.py, tokens.py, addresses.py; docs/security.md) -----------------------
    # SecretStr keeps the token out of repr(), logs and tracebacks; read it with get_secret_value().
    token: SecretStr | None = Field(
        None, description="Access token; required by every client. Generated when listening beyond loopback."
    )
    # Jupyter's answer for a shared machine: a token even on loopback, handed to the browser in the URL
    # `camcap serve` opens (docs/security.md). Only the CLI makes one; create_app requires a token
    # only beyond loopback, so libraries and tests that build their own app are unchanged.
    loopback_token: bool = Field(
        True, description="camcap serve makes an access token on 127.0.0.1 too; false: any local process may connect."
    )
    # Lists read from the environment as JSON, e.g. CAMCAP_ALLOW_ORIGINS='["https://example.com"]'.
    allow_origins: list[str] = Field(default_factory=list, description="Other web origins that may call the API.")
    allow_hosts: list[str] = Field(default_factory=list, description="More names this server is reached by.")
    # None: on when listening beyond loopback, because browsers open the camera only on HTTPS pages
    # (or http://localhost), so a phone on the LAN needs it.
    https: bool | None = Field(None, description="Serve HTTPS (default: only when listening beyond loopback).")
    cert: Path | None = Field(None, description="PEM certificate (chain) for HTTPS; default: a self-signed one.")
    key: Path | None = Field(None, description="PEM private key of --cert.")

    # --- resource limits (server/limits.py) ------------------------------------------------------
    # None: derived from max_frame_bytes (see ws_max_size / upload_max_size), so raising the frame
    # limit alone keeps working.
    max_ws_message_bytes: int | None = Field(None, ge=1024, description="Largest WebSocket message, in bytes.")
    max_upload_bytes: int | None = Field(None, ge=1024, description="Largest HTTP request body, in bytes.")
    max_fps_per_stream: float = Field(30.0, gt=0, description="Frames a stream may send per second; more wait.")
    max_streams: int = Field(8, ge=1, description="Live streams plus one-shot captions served at once.")
    # --- exhaustion (server/limits.py, server/uploads.py, server/connections.py; docs/security.md) ---
    # 60 s: longer than the page's longest minimum gap, so a live page never loses its slot.
    stream_idle_s: float = Field(
        60.0, gt=0, description="A stream that sends no frame for this long, none in flight, gives its slot back (s)."
    )
    upload_timeout_s: float = Field(30.0, gt=0, description="Longest an HTTP request body may take to arrive (s).")
    # None: max_streams uploads of the largest size.
    max_upload_bytes_in_flight: int | None = Field(
        None, ge=1024, description="Request body bytes being received at once, all clients together."
    )
    max_decode_pixels: int = Field(
        4096 * 4096, ge=1, description="Image pixels being decoded at once, all clients together; more wait."
    )
    # None: the process's descriptor limit (raised to its hard limit at start) less a reserve.
    max_connections: int | None = Field(None, ge=1, description="Open connections at once; more are closed at once.")
    header_timeout_s: float = Field(
        10.0, gt=0, description="Longest a new connection may take to send its request (s)."
    )
    # The wire schema (server/messages.py) caps a question at 500 characters; this can only lower it.
    max_question_chars: int = Field(500, ge=1, le=500, description="Longest question or object name, in characters.")

    # --- outputs (outputs/log.py) -----------------------------------------------------------------
    log: Path | None = Field(None, description="Append every caption event to this JSON Lines file (serve --log).")
    log_max_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Rotate the caption log past this size.")

    def serves_https(self) -> bool:
        """Whether the server speaks TLS: as set, else when given a certificate or listening beyond loopback."""
        if self.https is not None:
            return self.https
        from camcap.server.addresses import is_loopback_host  # not at import: config stays light

        return self.cert is not None or not is_loopback_host(self.host)

    def ws_max_size(self) -> int:
        """The largest WebSocket message: set, else a largest frame plus its binary header."""
        if self.max_ws_message_bytes is not None:
            return self.max_ws_message_bytes
        return self.max_frame_bytes + _FRAME_ENVELOPE_BYTES

    def upload_max_size(self) -> int:
        """The largest HTTP request body: set, else a largest frame plus room for the form."""
        if self.max_upload_bytes is not None:
            return self.max_upload_bytes
        return self.max_frame_bytes + _FORM_OVERHEAD_BYTES

    def upload_bytes_in_flight(self) -> int:
        """Request body bytes being received at once: set, else max_streams largest uploads."""
        if self.max_upload_bytes_in_flight is not None:
            return self.max_upload_bytes_in_flight
        return self.max_streams * self.upload_max_size()

    def stream_options(self) -> StreamOptions:
        """The real-time policies every stream starts with."""
        return StreamOptions(
            change_threshold=self.change_threshold,
            max_unchanged_s=self.max_unchanged_s,
            cut_stale=self.cut_stale,
            stale_after_ms=self.stale_after_ms,
        )

    def model_options(self) -> ModelOptions:
        return ModelOptions(
            device=self.device,
            dtype=self.dtype,
            max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.min_new_tokens,
            cache_dir=self.cache_dir,
            allow_download=self.allow_download,
            compile=self.compile,
            detail=self.detail,
            max_batch=self.max_batch,
            input_size=self.input_size,
            max_inflight=self.max_inflight,
            openai_api_key=self.openai_api_key,
            openai_timeout_s=self.openai_timeout_s,
            openai_prompts=tuple(self.openai_prompts.items()),
        )
