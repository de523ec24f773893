#!/usr/bin/env bash
# camcap bench on a GPU machine, in bf16, at most 8 minutes of wall-clock (DEADLINE=480 s; model
# builds included), most important first, each step under its own time limit so that a step that fails
# or overruns costs only itself. Writes JSON, a markdown section per run and a log under $OUT
# (default: benchmarks/results/gpu-<date>).
#
#   benchmarks/gpu_bench.sh                 # from the repository root, or anywhere
#   OUT=/tmp/out PYTHON=.venv/bin/python benchmarks/gpu_bench.sh
#   CPU_TRY=1 benchmarks/gpu_bench.sh       # the same steps and flags on a CPU, with tiny models:
#                                           # proves the script before GPU time is spent on it
#
# Steps: the machine (doctor, nvidia-smi, what `camcap serve` picks by itself); BLIP base
# (batching's ceiling, 1-8 streams at batching windows 0/20/50 ms, overhead); a Moondream-sized
# stand-in (SigLIP so400m at 378 px + Phi-1.5, random weights, `random:moondream-sized`):
# overhead with time to first token and per token at 30 and at 3 new tokens (Moondream's own
# engine's anchor points), batching's ceiling and streams, then the same overhead compiled
# (`--compile`); SmolVLM-256M's frame size with and without image splitting.
#
# Needs a Python with a CUDA build of torch and camcap's dependencies installed; nothing is
# downloaded (random: checkpoints are built locally, the hub is never asked).
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results/gpu-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# The checkout itself, whether or not camcap is pip-installed.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [[ -n "${CPU_TRY:-}" ]]; then
    device=(--device cpu --dtype float32)
    blip=random:blip-tiny moondream=random:moondream-sized-tiny smolvlm=random:smolvlm-tiny
else
    device=(--device cuda --dtype bfloat16)
    blip=random:blip-base moondream=random:moondream-sized smolvlm=random:smolvlm-256m
fi

"$PYTHON" - "${CPU_TRY:-}" <<'EOF' || exit 1
import sys
try:
    import torch, transformers, fastapi, uvicorn, websockets, PIL, av  # noqa: F401
    import camcap.bench, camcap.server.app  # noqa: F401  (everything a bench run imports)
except ImportError as exc:
    sys.exit(f"gpu_bench: {exc}; install camcap's dependencies first (pip install -e .).")
if not sys.argv[1] and not torch.cuda.is_available():
    sys.exit(f"gpu_bench: torch {torch.__version__} sees no CUDA GPU; this script is for a GPU machine.")
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (CPU_TRY)"
print(f"gpu_bench: torch {torch.__version__}, transformers {transformers.__version__}, {gpu}", file=sys.stderr)
EOF

failed=()
# Every step ends by this many seconds after the start (a device lease is short): a step gets
# its own limit or what is left, whichever is less, and is skipped when under 20 s are left.
DEADLINE=${DEADLINE:-480}
# step NAME SECONDS COMMAND...: run one step under its limit; stdout in $OUT/NAME.md, stderr in .log.
step() {
    local name=$1 limit=$2
    shift 2
    local began=$SECONDS
    if ((DEADLINE - SECONDS < limit)); then limit=$((DEADLINE - SECONDS)); fi
    if ((limit < 20)); then
        echo "gpu_bench: $name: skipped, ${limit} s left before the ${DEADLINE} s deadline" >&2
        failed+=("$name")
        return
    fi
    echo "gpu_bench: $name (limit ${limit} s)..." >&2
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.md" 2> "$OUT/$name.log"
    local rc=$?
    echo "gpu_bench: $name: exit $rc after $((SECONDS - began)) s" >&2
    if [[ $rc -ne 0 ]]; then
        failed+=("$name")
        tail -n 5 "$OUT/$name.log" >&2
    fi
}
bench=("$PYTHON" -m camcap bench "${device[@]}")

# 1. The machine: what doctor reports, and what `camcap serve` picks when told nothing.
step doctor 40 "$PYTHON" -m camcap doctor --json
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
step serve-picks 60 "$PYTHON" benchmarks/serve_picks.py "$blip"

# 2. BLIP base: the model alone on batches of 1-8 (the ceiling of any batching), then 1-8 streams
# with and without batching at three windows, and the overhead (a GPU caption is short, so the
# 5 % goal is hardest here).
step blip-base 120 "${bench[@]}" --model "$blip" --new-tokens 10 \
    --scenarios batch_scaling,streams,overhead --pairs 20 \
    --streams 1,2,4,8 --captions-per-stream 6 --batch-windows 0,20,50 \
    --json "$OUT/blip-base.json" --markdown

# 3. The Moondream-sized stand-in: its first run builds the checkpoint (about 7.3 GB, float32).
step moondream-30 240 "${bench[@]}" --model "$moondream" --new-tokens 30 \
    --scenarios overhead,batch_scaling,streams --pairs 10 \
    --streams 1,2,4,8 --captions-per-stream 3 --batch-windows 0,20,50 \
    --json "$OUT/moondream-30.json" --markdown
step moondream-3 60 "${bench[@]}" --model "$moondream" --new-tokens 3 --scenarios overhead --pairs 10 \
    --json "$OUT/moondream-3.json" --markdown

# 4. SmolVLM-256M: frame size with and without image splitting (is detail=high affordable live?).
step smolvlm 60 "${bench[@]}" --model "$smolvlm" --new-tokens 10 --scenarios frame_size \
    --sizes 384,512,768 --size-reps 3 --also-detail high \
    --json "$OUT/smolvlm-256m.json" --markdown

# 5. The stand-in compiled (`--compile`: a static KV cache, the decoding step through torch.compile),
# last because compiling takes a while; the warm-up captions pay for it.
step moondream-30-compiled 150 "${bench[@]}" --model "$moondream" --new-tokens 30 --compile \
    --scenarios overhead --pairs 10 --warmup 3 --json "$OUT/moondream-30-compiled.json" --markdown

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "gpu_bench: wrote $OUT; failed: ${failed[*]}" >&2
    exit 1
fi
echo "gpu_bench: wrote $OUT" >&2
