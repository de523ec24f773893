#!/usr/bin/env bash
# The CPU runs behind docs/benchmarks.md: about 21 minutes on 2 cores. Writes JSON and a markdown
# section per run under $OUT (default: benchmarks/results/cpu-<date>).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results/cpu-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
common=(--device cpu --new-tokens 10)

# Every scenario, BLIP base (about 1.4 s per caption on 2 cores): 7.5 minutes.
"$PYTHON" -m camcap bench --model random:blip-base "${common[@]}" --seconds 15 --captions-per-stream 2 \
    --json "$OUT/blip-base.json" --markdown > "$OUT/blip-base.md"

# Freshness, frame size and the stale cut again, after two fixes to the bench (each design's own
# model time; pushed frames all distinct), with 3 captions per size: 3 minutes.
"$PYTHON" -m camcap bench --model random:blip-base "${common[@]}" --scenarios freshness,frame_size,stale_cut \
    --seconds 15 --size-reps 3 --json "$OUT/blip-base-rerun.json" --markdown > "$OUT/blip-base-rerun.md"

# SmolVLM-256M: overhead, and frame size without and with image splitting (detail high): 3 minutes.
"$PYTHON" -m camcap bench --model random:smolvlm-256m "${common[@]}" --scenarios overhead,frame_size \
    --pairs 6 --warmup 1 --sizes 384,768 --size-reps 2 --also-detail high \
    --json "$OUT/smolvlm-256m.json" --markdown > "$OUT/smolvlm-256m.md"

# The current server's overhead and transports (deflate declined), batching's ceiling, and the
# streams with every setting side by side: 7.5 minutes.
"$PYTHON" -m camcap bench --model random:blip-base "${common[@]}" --scenarios overhead,transports,batch_scaling,streams \
    --json "$OUT/blip-base-current.json" --markdown > "$OUT/blip-base-current.md"

echo "cpu_bench: wrote $OUT" >&2
