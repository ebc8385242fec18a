#!/usr/bin/env bash
# Experiment 10 3c (docs/experiments.md, section d): synthetic + real, the paper's "SyCL + real".
# Real SciFact training pairs (judged positives relabelled 3, BM25 negatives at level 1) merged by
# query id with the per-level synthetic lists the bundled SmolLM2 wrote for the same queries, trained
# list-wise, against InfoNCE on the real pairs alone. Validation is *real*: a seeded DEV_SHARE of the
# SciFact train queries is held out of training (their real and synthetic lists alike) and scored
# against the whole SciFact corpus every EVAL_STEPS steps; the best step is the model. Test on
# beir/scifact test (in domain) and beir/nfcorpus test (zero-shot) against the untrained base,
# paired randomization tests with Holm correction, mean +- sd over seeds.
#
#   LISTRANK_DATA=../shared/data bash benchmarks/exp_synthetic_real.sh [OUT]
#
# Every stage writes one file and is skipped when that file exists, so a stopped run resumes and
# several copies can share the work (SEEDS="1" in one shell, SEEDS="2" in another).
# Knobs (environment): SEEDS, SETTINGS (NAME=LOSS[,KEY=VALUE...]@DATA with DATA real | mix | synth),
# BATCH, GROUP_REAL, GROUP_MIX, MINE_COUNT, GRAD_CACHE, EPOCHS, LR, DEV_SHARE, EVAL_STEPS, PRECISION,
# EVAL_PRECISION, THREADS, TESTS, TAG.
set -euo pipefail
source "$(dirname "$0")/settings.sh"

OUT=${1:-runs/exp/synthreal}
LISTRANK=${LISTRANK:-listrank}
PYTHON=${PYTHON:-python}
DATA=${LISTRANK_DATA:?set LISTRANK_DATA to the folder holding beir/scifact}
SEEDS=${SEEDS:-"1 2 3"}
SETTINGS=${SETTINGS:-"infonce-real=infonce@real ws-mix=wasserstein,label_temperature=0.25@mix infonce-mix=infonce@mix"}
BATCH=${BATCH:-64}
GROUP_REAL=${GROUP_REAL:-4}   # 1-2 judged positives + MINE_COUNT BM25 negatives
GROUP_MIX=${GROUP_MIX:-7}     # the paper's group size for synthetic + real
MINE_COUNT=${MINE_COUNT:-3}
# SciFact abstracts fill the 256-token window: 64 x 4 of them with a graph need > 20 GB, so the
# batch is embedded 16 queries at a time (GradCache; same gradients to 1e-5,
# tests/test_train_gradcache.py). Tokenising in the main process (--num-workers 0): with chunks of
# 32 the kernel killed the run at the first epoch boundary, when the trainer (12.9 GB) forked a new
# DataLoader worker, on this 24 GB machine (two runs side by side need ~6.5 + ~11.5 GB at chunk 16).
GRAD_CACHE=${GRAD_CACHE:-16}
EPOCHS=${EPOCHS:-1}
LR=${LR:-2e-5}
DEV_SHARE=${DEV_SHARE:-0.1}
EVAL_STEPS=${EVAL_STEPS:-4}
PRECISION=${PRECISION:-bf16}
EVAL_PRECISION=${EVAL_PRECISION:-bf16}
TESTS=${TESTS:-"beir/scifact beir/nfcorpus"}
TAG=${TAG:-}
export OMP_NUM_THREADS=${THREADS:-1}
METRICS=ndcg@10,mrr@10,recall@100
mkdir -p "$OUT"

# 1. SciFact with a dev split carved out of train: the corpus and queries are links to the shared
# files; qrels/train.tsv and qrels/dev.tsv are a seeded split of the real train qrels by query.
split="$OUT/scifact-dev"
if [ ! -f "$split/qrels/dev.tsv" ]; then
  mkdir -p "$split/qrels"
  ln -sf "$(realpath "$DATA/beir/scifact/corpus.jsonl")" "$split/corpus.jsonl"
  ln -sf "$(realpath "$DATA/beir/scifact/queries.jsonl")" "$split/queries.jsonl"
  "$PYTHON" - "$DATA/beir/scifact/qrels/train.tsv" "$split/qrels" "$DEV_SHARE" <<'EOF'
import hashlib, sys
src, out, share = sys.argv[1], sys.argv[2], float(sys.argv[3])
lines = open(src).read().splitlines()
header, rows = lines[0], [line for line in lines[1:] if line.strip()]
def is_dev(qid):  # a fixed, seed-free choice: the same dev queries for every run and seed
    return int(hashlib.sha256(f"scifact-dev:{qid}".encode()).hexdigest(), 16) % 10_000 < share * 10_000
parts = {"train": [], "dev": []}
for row in rows:
    parts["dev" if is_dev(row.split("\t")[0]) else "train"].append(row)
for name, part in parts.items():
    with open(f"{out}/{name}.tsv.tmp", "w") as f:
        f.write("\n".join([header] + part) + "\n")
for name in ("train", "dev"):  # dev last: its presence marks the split as complete
    import os; os.replace(f"{out}/{name}.tsv.tmp", f"{out}/{name}.tsv")
print(f"scifact-dev: {len({r.split(chr(9))[0] for r in parts['train']})} train / "
      f"{len({r.split(chr(9))[0] for r in parts['dev']})} dev queries", file=sys.stderr)
EOF
fi

# 2. The synthetic SciFact lists without the dev queries (they must not leak into training).
synth="$OUT/synth-scifact-train.nodev.jsonl"
if [ ! -f "$synth" ]; then
  gunzip -c benchmarks/data/synth-scifact-train-levels-fewshot-borrow-v1.jsonl.gz | "$PYTHON" -c '
import json, sys
dev = {line.split("\t")[0] for line in open(sys.argv[1]).read().splitlines()[1:] if line.strip()}
kept = dropped = 0
with open(sys.argv[2] + ".tmp", "w") as out:
    for line in sys.stdin:
        if json.loads(line)["query_id"] in dev:
            dropped += 1
            continue
        out.write(line)
        kept += 1
print(f"synthetic SciFact lists: {kept} kept, {dropped} dropped (dev queries)", file=sys.stderr)
' "$split/qrels/dev.tsv" "$synth"
  mv "$synth.tmp" "$synth"
fi
real="$split split=train labels=0:drop,*:3 mine=bm25 mine-label=1 mine-count=$MINE_COUNT name=scifact-real"

for seed in $SEEDS; do
  for setting in $SETTINGS; do
    data=${setting##*@}
    parse_setting "${setting%@*}"
    case "$data" in
      real) inputs=(--source "$real"); group=$GROUP_REAL ;;
      mix) inputs=("$synth" --source "$real"); group=$GROUP_MIX ;;
      synth) inputs=("$synth"); group=$GROUP_REAL ;;
      *) echo "setting $setting: DATA must be real, mix or synth" >&2; exit 2 ;;
    esac
    tag="$name$TAG-s$seed"
    model="$OUT/models/$tag"
    # cosine scoring at T 0.05, as all-MiniLM-L6-v2 was trained; the best validated step (or the
    # start model, if no step beats it) is the model
    if [ ! -f "$model/listrank.json" ]; then
      "$LISTRANK" train "${inputs[@]}" --loss "$loss" "${opts[@]}" -o "$model" \
        --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH" --group-size "$group" --grad-cache-chunk "$GRAD_CACHE" --num-workers 0 \
        --normalize --temperature 0.05 --seed "$seed" --precision "$PRECISION" \
        --eval-dataset "$split" --eval-split dev --eval-steps "$EVAL_STEPS" \
        --save-steps 0 --overwrite --no-progress > "$OUT/$tag.train.log" 2>&1
    fi
    eval_model "$model" "$tag"
  done
done

compare_to_base
