#!/usr/bin/env bash
# Experiment 10b (docs/experiments.md): graded synthetic lists written by the bundled SmolLM2 for
# real training queries (MS MARCO train-sample and beir/scifact train), Wasserstein vs InfoNCE from
# the same base and budget, evaluated on beir/scifact and beir/nfcorpus test next to the untrained
# base and BM25.
#
#   LISTRANK_DATA=../shared/data bash benchmarks/exp_synthetic.sh [OUT]     # default runs/exp/synth
#
# Every stage writes one file and is skipped when that file exists; gen resumes a stopped run.
# Knobs (environment): MSMARCO_QUERIES, SCIFACT_QUERIES, EPOCHS, LR, BATCH, PRECISION, THREADS.
set -euo pipefail

OUT=${1:-runs/exp/synth}
LISTRANK=${LISTRANK:-listrank}
MSMARCO_QUERIES=${MSMARCO_QUERIES:-200}
SCIFACT_QUERIES=${SCIFACT_QUERIES:-48}
EPOCHS=${EPOCHS:-5}
LR=${LR:-2e-5}
BATCH=${BATCH:-8}
PRECISION=${PRECISION:-bf16}
export OMP_NUM_THREADS=${THREADS:-1}
GEN_FLAGS=(--per-level 1 --max-tokens 800 --seed 0 --no-progress --backend-opt "n_threads=$OMP_NUM_THREADS")
mkdir -p "$OUT"

# 1. gen (one passage per level, as in the paper; MS MARCO passages are ~50 words, SciFact longer)
"$LISTRANK" gen "$LISTRANK_DATA/msmarco/train-sample/queries.tsv" --first "$MSMARCO_QUERIES" \
  -o "$OUT/msmarco.synth.jsonl" --passage-words 50 "${GEN_FLAGS[@]}"
"$LISTRANK" gen --dataset beir/scifact --split train --first "$SCIFACT_QUERIES" \
  -o "$OUT/scifact.synth.jsonl" --passage-words 60 "${GEN_FLAGS[@]}"
for part in msmarco scifact; do
  [ -f "$OUT/$part.audit.json" ] || "$LISTRANK" eval --dataset "$OUT/$part.synth.jsonl" --level-audit \
    -o "$OUT/$part.audit.json" --plot "$OUT/$part.levels.png"
done

# 2. train: the same lists, base, budget and seed for both losses
for loss in wasserstein infonce; do
  [ -f "$OUT/$loss/listrank.json" ] || "$LISTRANK" train "$OUT/msmarco.synth.jsonl" "$OUT/scifact.synth.jsonl" \
    --loss "$loss" -o "$OUT/$loss" --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH" --group-size 4 \
    --precision "$PRECISION" --seed 42 --save-steps 0 --overwrite --no-progress 2>&1 | tee "$OUT/$loss.train.log"
done

# 3. eval: base first (the baseline of the significance tests), the base scored as training
#    scores (dot product of unnormalised embeddings), the trained models and BM25
for ds in beir/scifact beir/nfcorpus; do
  name=${ds#beir/}
  runs=()
  for sys in base base-dot wasserstein infonce bm25; do
    run="$OUT/$name.$sys.run.jsonl"
    case $sys in
      base) flags=() ;;
      base-dot) flags=(--no-normalize) ;;
      bm25) flags=(--bm25) ;;
      *) flags=(--model "$OUT/$sys") ;;
    esac
    [ -f "$run" ] || "$LISTRANK" eval --dataset "$ds" "${flags[@]}" --save-run "$run" -o "${run%.run.jsonl}.metrics.json"
    runs+=("$run")
  done
  "$LISTRANK" eval "${runs[@]}" --dataset "$ds" -o "$OUT/$name.compare.json" --plot "$OUT/$name.compare.png"
done
