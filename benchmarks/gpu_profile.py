"""Where a model's time per token goes: camcap's generate vs the raw `model.generate`, and a profile.

    python benchmarks/gpu_profile.py random:smolvlm-256m [random:blip-base ...]

For each model spec: camcap's preprocessing of one 640x480 frame (the processor, on the CPU), the
time to caption it through camcap's backend and through the raw transformers `generate` on the
same inputs, at 3 and at 20 new tokens (the difference over 17 is the time per token), then a
torch.profiler table of one raw 12-token generate sorted by self CPU time and by device time. A
per-token cost far above what the kernels take is launch or Python overhead, not compute. Written
for gpu_bench.sh's findings (docs/benchmarks.md, run L); it runs on a CPU too.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def profile(spec: str) -> None:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    (camcap_3, raw_3), (camcap_20, raw_20) = (_measure(spec, device, tokens) for tokens in (3, 20))
    per_token = f"camcap {(camcap_20 - camcap_3) / 17:.1f} ms, raw generate {(raw_20 - raw_3) / 17:.1f} ms"
    print(f"{spec}: per token: {per_token}", flush=True)


def _measure(spec: str, device: str, tokens: int) -> tuple[float, float]:
    """(camcap's ms, the raw generate's ms) for one frame and `tokens` new tokens, medians of 5;
    at 20 tokens, also a profile of one raw generate."""
    import torch
    from PIL import Image
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from camcap.config import Settings
    from camcap.models.base import Task
    from camcap.models.registry import create_captioner

    request = [(Image.new("RGB", (640, 480), (90, 140, 200)), Task.caption())]
    settings = Settings(model=spec, device=device).model_copy(
        update={"max_new_tokens": tokens, "min_new_tokens": tokens}
    )
    captioner = create_captioner(settings.model, settings.model_options())
    captioner.setup()
    loaded = captioner._loaded  # a measuring tool: the raw model beside camcap's own path
    assert loaded is not None
    inputs = captioner._preprocess(loaded, request)

    def preprocess() -> float:
        start = time.perf_counter()
        captioner._preprocess(loaded, request)
        return (time.perf_counter() - start) * 1000

    def through_camcap() -> float:
        start = time.perf_counter()
        list(captioner.generate(request))
        return (time.perf_counter() - start) * 1000

    def raw(count: int = tokens) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            loaded.model.generate(**inputs, max_new_tokens=count, min_new_tokens=count, do_sample=False)
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1000

    try:
        for _ in range(2):
            through_camcap(), raw()
        camcap_ms = statistics.median(through_camcap() for _ in range(5))
        raw_ms = statistics.median(raw() for _ in range(5))
        if tokens == 3:
            print(f"{spec}: preprocess {statistics.median(preprocess() for _ in range(5)):.1f} ms", flush=True)
        print(f"{spec}: {tokens} tokens: camcap {camcap_ms:.1f} ms, raw generate {raw_ms:.1f} ms", flush=True)
        if tokens == 20:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
            with torch_profile(activities=activities) as prof:
                raw(12)
            averages = prof.key_averages()
            print(averages.table(sort_by="self_cpu_time_total", row_limit=18), flush=True)
            if device == "cuda":
                print(averages.table(sort_by="self_device_time_total", row_limit=12), flush=True)
    finally:
        captioner.close()
    return camcap_ms, raw_ms


if __name__ == "__main__":
    for spec in sys.argv[1:]:
        profile(spec)
