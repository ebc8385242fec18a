#!/usr/bin/env bash
# Experiment 10a (docs/experiments.md): train on one TREC DL year's graded judgements, evaluate on
# the other year, for each loss from the same base and budget; the untrained base and BM25 beside.
#
#   LISTRANK_DATA=../shared/data bash benchmarks/exp_dl_cross.sh [OUT]      # default runs/exp/dl
#
# Every stage writes one file and is skipped when that file exists, so a stopped run resumes.
# Budget knobs (environment): EPOCHS, LR, BATCH, GROUP, PRECISION, LOSSES, THREADS. TRAIN_FLAGS adds
# training flags and TAG names that variant, e.g. TAG=-cos TRAIN_FLAGS="--normalize --temperature 0.05"
# (cosine scores, all-MiniLM-L6-v2's own scoring, instead of the SyCL preset's dot product). The defaults
# fit a 2-core CPU (about 4 minutes a training run); a GPU run would use the SyCL preset at larger
# batch and group sizes.
set -euo pipefail

OUT=${1:-runs/exp/dl}
LISTRANK=${LISTRANK:-listrank}
EPOCHS=${EPOCHS:-10}
LR=${LR:-3e-5}
BATCH=${BATCH:-8}
GROUP=${GROUP:-4}
PRECISION=${PRECISION:-bf16}
TAG=${TAG:-}
read -r -a TRAIN_FLAGS <<< "${TRAIN_FLAGS:-}"
LOSSES=${LOSSES:-"wasserstein infonce listnet"}
export OMP_NUM_THREADS=${THREADS:-1}
METRICS=ndcg@10,mrr@10,map@100,recall@100
mkdir -p "$OUT"

other() { if [ "$1" = dl19 ]; then echo dl20; else echo dl19; fi; }

for train in dl19 dl20; do
  test=$(other "$train")
  for loss in $LOSSES; do
    model="$OUT/$train-$loss$TAG"
    if [ ! -f "$model/listrank.json" ]; then
      "$LISTRANK" train --dataset "msmarco/$train-pool" --split test --loss "$loss" -o "$model" \
        --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH" --group-size "$GROUP" --seed 42 --precision "$PRECISION" \
        --save-steps 0 --overwrite --no-progress "${TRAIN_FLAGS[@]}" 2>&1 | tee "$OUT/$train-$loss$TAG.train.log"
    fi
    run="$OUT/$test.from-$train-$loss$TAG.run.jsonl"
    [ -f "$run" ] || "$LISTRANK" eval --dataset "msmarco/$test-pool" --model "$model" \
      --relevance-level 2 --metrics "$METRICS" --save-run "$run" -o "${run%.run.jsonl}.metrics.json"
  done
done

for test in dl19 dl20; do
  # The base as shipped (cosine) and in the training's scoring (dot product, no normalisation).
  [ -f "$OUT/$test.base.run.jsonl" ] || "$LISTRANK" eval --dataset "msmarco/$test-pool" \
    --relevance-level 2 --metrics "$METRICS" --save-run "$OUT/$test.base.run.jsonl" -o "$OUT/$test.base.metrics.json"
  [ -f "$OUT/$test.base-dot.run.jsonl" ] || "$LISTRANK" eval --dataset "msmarco/$test-pool" --no-normalize \
    --relevance-level 2 --metrics "$METRICS" --save-run "$OUT/$test.base-dot.run.jsonl" -o "$OUT/$test.base-dot.metrics.json"
  train=$(other "$test")
  runs=("$LISTRANK_DATA/msmarco/$test-pool/bm25.run" "$OUT/$test.base.run.jsonl" "$OUT/$test.base-dot.run.jsonl")
  for run in "$OUT/$test.from-$train-"*.run.jsonl; do runs+=("$run"); done  # every variant trained so far
  # BM25 is the baseline of the significance tests (the floor every model should clear).
  "$LISTRANK" eval "${runs[@]}" --dataset "msmarco/$test-pool" --relevance-level 2 --metrics "$METRICS" \
    -o "$OUT/$test.compare.json" --plot "$OUT/$test.compare.png"
done
