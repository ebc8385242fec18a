# Sourced by the experiment scripts: one SETTINGS entry NAME=LOSS[,KEY=VALUE...] ->
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
