#!/usr/bin/env bash
# The CUDA paths of listrank, checked on a GPU machine (first of the two device calls in
# benchmarks/gpu/README.md). The encoder has random weights here: these are checks of arithmetic
# and plumbing, not of quality.
#   bash benchmarks/gpu/verify_cuda.sh OUT
# 1. the machine; 2. GradCache on CUDA: cached = direct loss and gradients for every loss, dropout
# masks replayed from the CUDA RNG, bf16 autocast, the trainer (tests/test_train_gradcache.py with
# LISTRANK_TEST_DEVICE=cuda); 3. `listrank train` on CUDA with the default precision (auto: bf16),
# GradCache and a checkpoint, then --resume; 4. torchrun with 2 processes on the one GPU (NCCL).
set -u
OUT=${1:-/tmp/verify}
mkdir -p "$OUT"
source benchmarks/gpu/env.sh random
step() { echo; echo "== $(date +%T) $*"; }

step machine
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 - <<'EOF'
import sys, torch, transformers
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}")
print(f"{torch.cuda.get_device_name(0)}, bf16 supported: {torch.cuda.is_bf16_supported()}, "
      f"tf32 matmul allowed: {torch.backends.cuda.matmul.allow_tf32}")
EOF
listrank --version

step "GradCache on CUDA (pytest)"
LISTRANK_TEST_DEVICE=cuda timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_train_gradcache.py \
  -k "not ddp" -o addopts="" 2>&1 | tail -15

step "listrank train on CUDA: precision auto, GradCache 16, checkpoint every 2 steps, 4 steps"
T=/tmp/verify-train
rm -rf "$T"
timeout 120 listrank train --dataset msmarco/dl19-pool --split test --loss wasserstein -o "$T/m" --max-steps 4 \
  --batch-size 43 --group-size 4 --grad-cache-chunk 16 --save-steps 2 --no-progress --no-plot --seed 1 \
  > "$OUT/train.log" 2>&1; echo "rc $?"; tail -5 "$OUT/train.log"
python3 - "$T/m/listrank.json" <<'EOF'
import json, sys
meta = json.load(open(sys.argv[1]))
print({k: meta.get(k) for k in ("precision", "world_size", "global_batch", "steps", "finished", "final_loss",
                                "seconds", "queries_per_second", "versions")})
EOF
step "--resume to 6 steps"
timeout 120 listrank train --dataset msmarco/dl19-pool --split test --loss wasserstein -o "$T/m" --max-steps 6 \
  --batch-size 43 --group-size 4 --grad-cache-chunk 16 --save-steps 2 --no-progress --no-plot --seed 1 --resume \
  > "$OUT/resume.log" 2>&1; echo "rc $?"; tail -5 "$OUT/resume.log"

step "torchrun, 2 processes on the one GPU (NCCL)"
timeout 150 torchrun --nproc-per-node 2 -m listrank train --dataset msmarco/dl19-pool --split test --loss wasserstein \
  -o "$T/ddp" --max-steps 2 --batch-size 20 --group-size 4 --grad-cache-chunk 8 --save-steps 0 --no-progress \
  --no-plot --seed 1 > "$OUT/ddp.log" 2>&1; echo "rc $?"; grep -v "^\s*$" "$OUT/ddp.log" | tail -12
[ -f "$T/ddp/listrank.json" ] && python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print({k: m[k] for k in ('precision','world_size','global_batch','steps','finished')})" "$T/ddp/listrank.json"
step done
