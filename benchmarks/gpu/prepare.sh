#!/usr/bin/env bash
# Make what the two device calls carry (benchmarks/gpu/README.md): .whl/ (cp312 wheels the GPU
# image lacks), .gpu/data.tar.xz (the datasets), .gpu/model/{hi,lo,files} (the bundled encoder in
# lossless halves), and keep both folders out of git. Run in the checkout's root, on this machine.
#   LISTRANK_DATA=../shared/data bash benchmarks/gpu/prepare.sh
set -euo pipefail
DATA=${LISTRANK_DATA:-../shared/data}
PY=${PYTHON:-.venv/bin/python}
mkdir -p .git/info
for p in /.whl/ /.gpu/; do grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude; done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl pytrec-eval-terrier==0.5.11 jsonlines==4.0.0
mkdir -p .gpu
tar cJf .gpu/data.tar.xz.tmp -C "$DATA" README.md SOURCES.md beir/scifact beir/nfcorpus msmarco/dl19-pool msmarco/dl20-pool
mv .gpu/data.tar.xz.tmp .gpu/data.tar.xz
rm -rf .gpu/model
"$PY" benchmarks/gpu/model_halves.py split "$("$PY" -c 'from listrank.encoder import default_model_path; print(default_model_path())')" .gpu/model
du -sh .whl .gpu/data.tar.xz .gpu/model/*
