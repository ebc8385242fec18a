#!/usr/bin/env bash
# Experiment 10 3a (docs/experiments.md, section a): train on one TREC DL year's graded judgements
# with ALL its queries in one loss call (DL19: 43, DL20: 54), test on the other year; each loss
# setting from the same base, data and budget, over several seeds; the untrained base beside.
#
#   LISTRANK_DATA=../shared/data bash benchmarks/exp_dl_fullbatch.sh [OUT]     # default runs/exp/dlfull
#
# Every stage writes one file and is skipped when that file exists, so a stopped run resumes and
# several copies can share the work (e.g. SEEDS="1" in one shell, SEEDS="2" in another); the last
# stage (one `listrank eval` per test set of the base against every trained run, paired
# randomization tests with Holm correction) and the mean ± sd tables run after each copy.
#
# Knobs (environment): TAG (suffix of the setting names, for a variant of STEPS/LR/GROUP), DIRECTIONS ("dl19:dl20" = train DL19, test DL20; add "dl20:dl19"), SEEDS,
# SETTINGS (space-separated NAME=LOSS[,KEY=VALUE...] where KEY=VALUE are loss options, e.g.
# "ws-tl0.25=wasserstein,label_temperature=0.25"), STEPS, LR, GROUP, PRECISION, THREADS,
# GRAD_CACHE (--grad-cache-chunk; 0 = one direct step, the same gradients; DL20's 54 x 4 passages in
# one graph take ~8 GB, so two DL20 copies side by side on a 23 GB machine need e.g. 16), SCORING ("cos":
# --normalize --temperature 0.05, as all-MiniLM-L6-v2 was trained; "dot": --no-normalize,
# temperature 1, the SyCL preset), EVAL_PRECISION (encoding of the test corpus, base and trained alike), TABLES (0: skip the base and
# the tables, for copies run side by side).
set -euo pipefail
source "$(dirname "$0")/settings.sh"

OUT=${1:-runs/exp/dlfull}
LISTRANK=${LISTRANK:-listrank}
PYTHON=${PYTHON:-python}
DIRECTIONS=${DIRECTIONS:-"dl19:dl20"}
SEEDS=${SEEDS:-"1 2 3"}
SETTINGS=${SETTINGS:-"ws=wasserstein ws-tl0.25=wasserstein,label_temperature=0.25 infonce=infonce"}
STEPS=${STEPS:-5}
LR=${LR:-3e-5}
GROUP=${GROUP:-4}
PRECISION=${PRECISION:-bf16}
EVAL_PRECISION=${EVAL_PRECISION:-bf16}  # base and trained runs encoded alike; bf16 is ~2x faster on this CPU
GRAD_CACHE=${GRAD_CACHE:-0}
SCORING=${SCORING:-cos}
TAG=${TAG:-}  # added to the run names of a variant, e.g. TAG=-20st with STEPS=20
TABLES=${TABLES:-1}  # 0: train and evaluate only (copies running side by side leave the tables to a last pass)
export OMP_NUM_THREADS=${THREADS:-1}
METRICS=ndcg@10,mrr@10,map@100,recall@100
case "$SCORING" in
  cos) SCORE_FLAGS=(--normalize --temperature 0.05); BASE_FLAGS=() ;;
  dot) SCORE_FLAGS=(--no-normalize --temperature 1); BASE_FLAGS=(--no-normalize) ;;
  *) echo "SCORING must be cos or dot" >&2; exit 2 ;;
esac
mkdir -p "$OUT"

for seed in $SEEDS; do
  for dir in $DIRECTIONS; do
    train=${dir%%:*} test=${dir#*:}
    # all queries of the training year in one batch: one loss call per optimizer step
    batch=$("$PYTHON" -c "import json,sys; print(sum(1 for _ in open(sys.argv[1])))" \
      "${LISTRANK_DATA:-../shared/data}/msmarco/$train-pool/queries.jsonl")
    for setting in $SETTINGS; do
      parse_setting "$setting"
      tag="$train-$name$TAG-$SCORING-s$seed"
      model="$OUT/models/$tag"
      if [ ! -f "$model/listrank.json" ]; then
        "$LISTRANK" train --dataset "msmarco/$train-pool" --split test --loss "$loss" "${opts[@]}" -o "$model" \
          --max-steps "$STEPS" --lr "$LR" --batch-size "$batch" --group-size "$GROUP" --grad-cache-chunk "$GRAD_CACHE" \
          --seed "$seed" --precision "$PRECISION" "${SCORE_FLAGS[@]}" \
          --save-steps 0 --overwrite --no-progress --no-plot > "$OUT/$tag.train.log" 2>&1
      fi
      run="$OUT/$test.from-$tag.run.jsonl"
      [ -f "$run" ] || "$LISTRANK" eval --dataset "msmarco/$test-pool" --model "$model" --precision "$EVAL_PRECISION" \
        --relevance-level 2 --metrics "$METRICS" --save-run "$run" -o "${run%.run.jsonl}.metrics.json"
    done
  done
done

[ "$TABLES" = 1 ] || exit 0

# The untrained base on each test set, in this scoring.
for dir in $DIRECTIONS; do
  test=${dir#*:}
  base="$OUT/$test.base-$SCORING.run.jsonl"
  [ -f "$base" ] || "$LISTRANK" eval --dataset "msmarco/$test-pool" "${BASE_FLAGS[@]}" --precision "$EVAL_PRECISION" --relevance-level 2 \
    --metrics "$METRICS" --save-run "$base" -o "${base%.run.jsonl}.metrics.json"
done

# Every trained run so far against the untrained base: paired randomization tests, Holm-corrected.
for dir in $DIRECTIONS; do
  train=${dir%%:*} test=${dir#*:}
  runs=()
  for run in "$OUT/$test.from-$train-"*"-$SCORING-s"*.run.jsonl; do [ -f "$run" ] && runs+=("$run"); done
  [ ${#runs[@]} -gt 0 ] || continue
  "$LISTRANK" eval "$OUT/$test.base-$SCORING.run.jsonl" "${runs[@]}" --dataset "msmarco/$test-pool" \
    --relevance-level 2 --metrics "$METRICS" -o "$OUT/$test.from-$train-$SCORING.compare.json"
  "$PYTHON" benchmarks/exp_tables.py "$OUT/$test.from-$train-$SCORING.compare.json" --seeds \
    --metrics nDCG@10,MRR@10,MAP@100,Recall@100 | tee "$OUT/$test.from-$train-$SCORING.table.md"
done
