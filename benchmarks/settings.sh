# Sourced by the experiment scripts. parse_setting: one SETTINGS entry NAME=LOSS[,KEY=VALUE...] ->
# $name, $loss and the array $opts (--loss-opt KEY=VALUE per option).
parse_setting() {
  name=${1%%=*}
  local spec=${1#*=}
  loss=${spec%%,*}
  opts=()
  if [ "$spec" != "$loss" ]; then
    local kv o
    IFS=, read -r -a kv <<< "${spec#*,}"
    for o in "${kv[@]}"; do opts+=(--loss-opt "$o"); done
  fi
}

# Test one trained model on every dataset of $TESTS (one run + metrics file each, skipped when the
# run exists). Uses $OUT, $LISTRANK, $EVAL_PRECISION, $METRICS.
eval_model() {
  local model=$1 tag=$2 ds test run
  for ds in $TESTS; do
    test=${ds##*/}
    run="$OUT/$test.from-$tag.run.jsonl"
    [ -f "$run" ] || "$LISTRANK" eval --dataset "$ds" --model "$model" --precision "$EVAL_PRECISION" \
      --metrics "$METRICS" --save-run "$run" -o "${run%.run.jsonl}.metrics.json"
  done
}

# Per test set: the untrained base, one paired comparison of every trained run against it and its
# mean +- sd table; then which step validation kept, per model.
compare_to_base() {
  local ds test base run runs
  for ds in $TESTS; do
    test=${ds##*/}
    base="$OUT/$test.base.run.jsonl"
    [ -f "$base" ] || "$LISTRANK" eval --dataset "$ds" --precision "$EVAL_PRECISION" --metrics "$METRICS" \
      --save-run "$base" -o "${base%.run.jsonl}.metrics.json"
    runs=()
    for run in "$OUT/$test.from-"*"-s"*.run.jsonl; do [ -f "$run" ] && runs+=("$run"); done
    [ ${#runs[@]} -gt 0 ] || continue
    "$LISTRANK" eval "$base" "${runs[@]}" --dataset "$ds" --metrics "$METRICS" -o "$OUT/$test.compare.json"
    "$PYTHON" benchmarks/exp_tables.py "$OUT/$test.compare.json" --seeds --metrics nDCG@10,MRR@10,Recall@100 \
      | tee "$OUT/$test.table.md"
  done
  "$PYTHON" benchmarks/exp_tables.py --validation "$OUT"/models/*/listrank.json | tee "$OUT/validation.md"
}
