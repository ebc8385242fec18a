#!/usr/bin/env bash
# Experiment 10 3b (docs/experiments.md, section c): synthetic lists only, at volume. Train on
# >= 1,000 graded lists written by the bundled SmolLM2 (per-level strategy), with B queries in one
# loss call and a held-out share of the *synthetic* lists as validation (the best step is kept);
# test on beir/scifact and beir/nfcorpus test against the untrained base, paired randomization
# tests with Holm correction, mean +- sd over seeds.
#
#   LISTRANK_DATA=../shared/data bash benchmarks/exp_synthetic_volume.sh [OUT] -- LISTS...
#   (default LISTS: the two committed data sets of section c, 896 MS MARCO + 704 SciFact train
#   lists of levels-fewshot-borrow-v1, unpacked into OUT; not every synth-*.jsonl.gz: the later
#   seed-1/seed-2/pick files repeat MS MARCO queries, and merging by query id would change the data)
#
# Every stage writes one file and is skipped when that file exists, so a stopped run resumes and
# several copies can share the work (SEEDS="1" in one shell, SEEDS="2" in another).
# Knobs (environment): SEEDS, SETTINGS (NAME=LOSS[,KEY=VALUE...]: loss options), BATCH, GROUP,
# EPOCHS, LR, HOLDOUT, EVAL_STEPS, PRECISION, EVAL_PRECISION, THREADS, TESTS, TAG.
set -euo pipefail
source "$(dirname "$0")/settings.sh"

OUT=${1:-runs/exp/synthvol}
shift || true
[ "${1:-}" = "--" ] && shift
LISTRANK=${LISTRANK:-listrank}
PYTHON=${PYTHON:-python}
SEEDS=${SEEDS:-"1 2 3"}
SETTINGS=${SETTINGS:-"ws=wasserstein ws-tl0.25=wasserstein,label_temperature=0.25 infonce=infonce"}
BATCH=${BATCH:-64}
GROUP=${GROUP:-4}
EPOCHS=${EPOCHS:-1}
LR=${LR:-2e-5}
HOLDOUT=${HOLDOUT:-0.1}
EVAL_STEPS=${EVAL_STEPS:-4}
PRECISION=${PRECISION:-bf16}
EVAL_PRECISION=${EVAL_PRECISION:-bf16}
TESTS=${TESTS:-"beir/scifact beir/nfcorpus"}
TAG=${TAG:-}
export OMP_NUM_THREADS=${THREADS:-1}
METRICS=ndcg@10,mrr@10,recall@100
mkdir -p "$OUT"

LISTS=("$@")
if [ ${#LISTS[@]} -eq 0 ]; then
  for gz in benchmarks/data/synth-levels-fewshot-borrow-v1.jsonl.gz \
            benchmarks/data/synth-scifact-train-levels-fewshot-borrow-v1.jsonl.gz; do
    plain="$OUT/$(basename "${gz%.gz}")"
    [ -f "$plain" ] || gunzip -c "$gz" > "$plain"
    LISTS+=("$plain")
  done
fi
n=$(cat "${LISTS[@]}" | wc -l)
echo "training lists: $n in ${#LISTS[@]} file(s)" >&2

for seed in $SEEDS; do
  for setting in $SETTINGS; do
    parse_setting "$setting"
    tag="$name$TAG-s$seed"
    model="$OUT/models/$tag"
    # cosine scoring at T 0.05, as all-MiniLM-L6-v2 was trained; validation on held-out synthetic
    # lists (never a test split): the best step, or the start if none beats it, is the model
    if [ ! -f "$model/listrank.json" ]; then
      "$LISTRANK" train "${LISTS[@]}" --loss "$loss" "${opts[@]}" -o "$model" \
        --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH" --group-size "$GROUP" \
        --normalize --temperature 0.05 --seed "$seed" --precision "$PRECISION" \
        --eval-holdout "$HOLDOUT" --eval-steps "$EVAL_STEPS" \
        --save-steps 0 --overwrite --no-progress > "$OUT/$tag.train.log" 2>&1
    fi
    eval_model "$model" "$tag"
  done
done

compare_to_base
