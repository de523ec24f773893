#!/usr/bin/env bash
# camcap bench on a GPU machine: bf16, random:blip-base and random:smolvlm-256m, every scenario
# sized to finish in about 8 minutes of wall-clock (model builds included). Writes JSON and a
# markdown section per model under $OUT (default: benchmarks/results/gpu-<date>).
#
#   benchmarks/gpu_bench.sh                 # from the repository root, or anywhere
#   OUT=/tmp/out PYTHON=.venv/bin/python benchmarks/gpu_bench.sh
#
# Needs a Python with a CUDA build of torch and camcap's dependencies installed; nothing is
# downloaded (random: checkpoints are built locally, the hub is never asked).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results/gpu-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# The checkout itself, whether or not camcap is pip-installed.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$PYTHON" - <<'EOF'
import sys
try:
    import torch, transformers, fastapi, uvicorn, websockets, PIL  # noqa: F401
except ImportError as exc:
    sys.exit(f"gpu_bench: {exc}; install camcap's dependencies first (pip install -e .).")
if not torch.cuda.is_available():
    sys.exit(f"gpu_bench: torch {torch.__version__} sees no CUDA GPU; this script is for a GPU machine.")
print(f"gpu_bench: torch {torch.__version__}, {torch.cuda.get_device_name(0)}", file=sys.stderr)
EOF

"$PYTHON" -m camcap doctor --json > "$OUT/doctor.json" || true
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

common=(--device cuda --dtype bfloat16 --new-tokens 10)

# Every scenario for BLIP base: overhead and transports with more frames than on a CPU (a GPU
# caption takes tens of ms), freshness/gating/stale-cut at 5 s per run, the model alone on
# batches of 1-8 (batching's ceiling), 1-8 streams with and without batching and with three
# batching windows (the default, 50 ms, is capped at a quarter of a batch's time).
timeout 300 "$PYTHON" -m camcap bench --model random:blip-base "${common[@]}" \
    --pairs 30 --transport-reps 20 --seconds 5 --size-reps 5 \
    --streams 1,2,4,8 --captions-per-stream 8 --batch-windows 0,20,50 \
    --json "$OUT/blip-base.json" --markdown > "$OUT/blip-base.md"

# SmolVLM-256M: overhead, frame size with and without image splitting, batching's ceiling
# (the model alone on batches of 1-8) and streams with batching.
timeout 200 "$PYTHON" -m camcap bench --model random:smolvlm-256m "${common[@]}" \
    --scenarios overhead,frame_size,batch_scaling,streams --pairs 20 --sizes 384,512,768 --size-reps 3 --also-detail high \
    --streams 1,2,4,8 --captions-per-stream 6 --batch-windows 0,20 \
    --json "$OUT/smolvlm-256m.json" --markdown > "$OUT/smolvlm-256m.md"

echo "gpu_bench: wrote $OUT" >&2
