"""What `camcap serve` picks by itself: start it with no --device or --dtype, read /v1/info.

    python benchmarks/serve_picks.py random:blip-base

Prints the model's device and dtype as the server reports them. On a machine with a CUDA GPU
that supports bf16 the answer must be cuda:0 and bfloat16; the exit status says whether it was.
Used by gpu_bench.sh; needs nothing but camcap (the server is a real `camcap serve` subprocess).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request


def main(spec: str) -> int:
    import torch

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "camcap", "serve", "--model", spec, "--port", str(port), "--no-open", "--no-token"]
    server = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 80
        info: dict = {}
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/info", timeout=2) as reply:
                    info = json.load(reply)
            except OSError:
                info = {}
            if info.get("status") in ("ready", "error"):
                break
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=20)
    model = info.get("model") or {}
    print(json.dumps({"status": info.get("status"), "device": model.get("device"), "dtype": model.get("dtype")}))
    if info.get("status") != "ready":
        print(f"serve_picks: the server did not get ready: {info.get('error') or 'no answer'}", file=sys.stderr)
        return 1
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return 0 if (model.get("device"), model.get("dtype")) == ("cuda:0", "bfloat16") else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
