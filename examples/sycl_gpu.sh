#!/usr/bin/env bash
# The SyCL pipeline at GPU scale: vLLM writes graded passages for every MS MARCO training query in
# the query file, the bi-encoder trains with the paper's recipe on all GPUs, and the model is
# evaluated on BEIR sets next to the untrained base and BM25.
#
#   LISTRANK_DATA=../shared/data GPUS=8 TP=2 LLM=Qwen/Qwen2.5-7B-Instruct bash examples/sycl_gpu.sh runs/gpu
#
# It is examples/sycl_pipeline.py (synthetic lists only) with the sizes turned up; that CPU version
# runs in CI. (`make demo` trains on real in-domain pairs instead, the better recipe with the 135M
# LLM on a CPU.) This script itself has not been run by the project: no GPU was available to it. Every stage
# skips its work when its output exists, so a stopped run can be started again.
set -euo pipefail

OUT=${1:-runs/gpu}
GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}
TP=${TP:-1}                                   # GPUs per vLLM engine (tensor parallelism)
LLM=${LLM:-Qwen/Qwen2.5-7B-Instruct}          # any instruct model vLLM serves; bigger writes better levels
QUERIES=${QUERIES:-$LISTRANK_DATA/msmarco/train-sample/queries.tsv}
BASE=${BASE:-}                                # base encoder (empty: the bundled all-MiniLM-L6-v2)
BATCH=${BATCH:-32}                            # queries per GPU; global batch = BATCH x GPUS
EVAL=${EVAL:-"beir/scifact beir/nfcorpus"}
mkdir -p "$OUT"

# 1. gen: GPUS/TP engines side by side, each on its own shard of the queries (--shard i/n splits
#    by a hash of the query id, so the shards are disjoint and their union is the whole file).
engines=$((GPUS / TP))
if [ ! -f "$OUT/synth.jsonl" ]; then
  for ((i = 0; i < engines; i++)); do
    devices=$(seq -s, $((i * TP)) $((i * TP + TP - 1)))
    CUDA_VISIBLE_DEVICES=$devices listrank gen "$QUERIES" -o "$OUT/synth.part$i.jsonl" --shard "$i/$engines" \
      --backend vllm --model "$LLM" --tensor-parallel-size "$TP" --per-level 1 --passage-words 50 \
      --seed 0 --no-progress > "$OUT/gen.part$i.log" 2>&1 &
  done
  wait
  # name the parts: a glob would also catch each part's .rejects.jsonl file
  for ((i = 0; i < engines; i++)); do cat "$OUT/synth.part$i.jsonl"; done > "$OUT/synth.partial.jsonl"
  mv "$OUT/synth.partial.jsonl" "$OUT/synth.jsonl"
fi
[ -f "$OUT/levels.png" ] || listrank eval --dataset "$OUT/synth.jsonl" --level-audit -o "$OUT/audit.json" --plot "$OUT/levels.png"

# 2. train: the paper's recipe (docs/train.md), bf16 on CUDA, in-batch negatives over all GPUs.
for loss in wasserstein infonce; do
  [ -f "$OUT/$loss/listrank.json" ] || torchrun --nproc-per-node "$GPUS" -m listrank train "$OUT/synth.jsonl" \
    --preset sycl --loss "$loss" --batch-size "$BATCH" ${BASE:+--model "$BASE"} -o "$OUT/$loss" --resume
done

# 3. eval: base (the baseline of the significance tests), both trained models, BM25.
for ds in $EVAL; do
  name=${ds//\//_}
  runs=()
  for sys in base wasserstein infonce bm25; do
    run="$OUT/$name.$sys.run.jsonl"
    case $sys in
      base) flags=(${BASE:+--model "$BASE"}) ;;
      bm25) flags=(--bm25) ;;
      *) flags=(--model "$OUT/$sys") ;;
    esac
    [ -f "$run" ] || listrank eval --dataset "$ds" "${flags[@]}" --save-run "$run" -o "${run%.run.jsonl}.metrics.json"
    runs+=("$run")
  done
  listrank eval "${runs[@]}" --dataset "$ds" -o "$OUT/$name.compare.json" --plot "$OUT/$name.compare.png"
done
