#!/usr/bin/env bash
# The second device call of a GPU session (benchmarks/gpu/README.md): the bundled encoder joined
# from its two halves, then, each phase bounded by the time left:
#   1. the untrained base on CUDA (SciFact nDCG@10 in fp32 and bf16; the CPU gives 0.6457 / 0.6451);
#   2. issue 10's DL grid (benchmarks/exp_dl_fullbatch.sh): train one TREC DL year with all its
#      queries in one loss call, test on the other; both directions, cosine and dot scoring, 4 loss
#      settings, seeds 1-3, 200 steps at the paper's lr 1e-5, bf16 autocast; copies side by side;
#   3. its tables (paired randomization tests against the base, Holm);
#   4. the speed benchmarks on CUDA against sentence-transformers (encode, train) and GradCache.
# Everything lands in WORK and is packed into OUT/results.tar.gz after each phase (the device tool
# brings back at most 8 files).
#   bash benchmarks/gpu/session.sh OUT [BUDGET_SECONDS]
set -u
OUT=${1:-/tmp/session-out}
BUDGET=${2:-450}
START=$(date +%s)
WORK=/tmp/gpu-work
mkdir -p "$OUT" "$WORK/dl/logs" "$WORK/bench"
source benchmarks/gpu/env.sh exact > "$WORK/env.log" 2>&1
cat "$WORK/env.log"
left() { echo $((START + BUDGET - $(date +%s))); }
step() { echo; echo "== $(date +%T) (+$(($(date +%s) - START)) s, $(left) s left) $*"; }
pack() { tar czf "$OUT/results.tar.gz.tmp" -C "$WORK" --exclude=models . && mv "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

step "1. the untrained base on CUDA"
for prec in fp32 bf16; do
  timeout 90 listrank eval --dataset beir/scifact --precision "$prec" --metrics ndcg@10 \
    -o "$WORK/scifact.base-cuda-$prec.metrics.json" > "$WORK/scifact.base-cuda-$prec.log" 2>&1
  echo "$prec rc $?: $(python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))" \
    "$WORK/scifact.base-cuda-$prec.metrics.json" 2>/dev/null | head -c 600)"
done
pack

step "2. DL grid, 12 copies side by side"
GRID_S=$(( $(left) - ${RESERVE:-210} ))  # kept for the tables and the benchmarks
export STEPS=${STEPS:-200} LR=1e-5 TAG=-200st PRECISION=bf16 EVAL_PRECISION=fp32 THREADS=1 TABLES=0 GROUP=4
export SETTINGS="ws=wasserstein ws-tl0.25=wasserstein,label_temperature=0.25 infonce=infonce listnet=listnet"
export WORK
for scoring in cos dot; do for dir in dl19:dl20 dl20:dl19; do for seed in 1 2 3; do
  echo "$scoring $dir $seed"
done; done; done | timeout "$GRID_S" xargs -P "${PAR:-12}" -L 1 bash -c \
  'SCORING=$0 DIRECTIONS=$1 SEEDS=$2 bash benchmarks/exp_dl_fullbatch.sh "$WORK/dl" > "$WORK/dl/logs/$0-${1/:/-}-s$2.log" 2>&1; echo "copy $0 $1 s$2 rc $?"'
echo "grid rc $?; trained models: $(ls -d "$WORK"/dl/models/* 2>/dev/null | wc -l), test runs: $(ls "$WORK"/dl/*.from-*.run.jsonl 2>/dev/null | wc -l)"
python3 - "$WORK/dl/models" <<'EOF'
import json, pathlib, statistics, sys
secs = [json.loads(p.read_text()).get("seconds") for p in pathlib.Path(sys.argv[1]).glob("*/listrank.json")]
secs = [s for s in secs if s]
if secs:
    print(f"training wall time per run: median {statistics.median(secs):.1f} s, max {max(secs):.1f} s over {len(secs)} runs")
EOF
pack

step "3. tables"
for scoring in cos dot; do
  SCORING=$scoring SEEDS=" " DIRECTIONS="dl19:dl20 dl20:dl19" TABLES=1 timeout 120 bash benchmarks/exp_dl_fullbatch.sh "$WORK/dl" \
    > "$WORK/dl/tables-$scoring.log" 2>&1
  echo "tables $scoring rc $?"; cat "$WORK"/dl/*.from-*-"$scoring".table.md 2>/dev/null
done
pack

step "4. speed on CUDA"
bench() {  # NAME SECONDS COMMAND...: run one benchmark if time is left
  local name=$1 limit=$2; shift 2
  if [ "$(left)" -lt 20 ]; then echo "$name: skipped, no time left"; return; fi
  [ "$limit" -gt "$(left)" ] && limit=$(left)
  timeout "$limit" "$@" > "$WORK/bench/$name.log" 2>&1
  echo "$name rc $?"; tail -25 "$WORK/bench/$name.log"
}
B=benchmarks
bench gradcache-64 60 python3 $B/bench_gradcache.py --device cuda --precision bf16 --batch-size 64 --chunks 0,16 --steps 3 --json "$WORK/bench/gc-64.json"
bench encode 90 python3 $B/bench_encode.py --device cuda --docs 5183 --batch-size 256 --repeats 2 --json "$WORK/bench/encode-cuda.json"
pack
bench train-bf16 90 python3 $B/bench_train.py --device cuda --dataset beir/nfcorpus --split dev --loss wasserstein --batch-size 64 \
  --group-size 4 --steps 20 --warmup-steps 2 --precision bf16 --out "$WORK/bench/train-cuda-bf16.json"
bench gradcache-1024 60 python3 $B/bench_gradcache.py --device cuda --precision bf16 --batch-size 1024 --chunks 64 --steps 3 --cycle-lists \
  --json "$WORK/bench/gc-1024.json"
pack
bench train-fp32 90 python3 $B/bench_train.py --device cuda --dataset beir/nfcorpus --split dev --loss wasserstein --batch-size 64 \
  --group-size 4 --steps 20 --warmup-steps 2 --precision fp32 --out "$WORK/bench/train-cuda-fp32.json"
pack
step done
