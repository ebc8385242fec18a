"""Any OpenAI-compatible chat endpoint: a running `vllm serve`, llama.cpp's `llama-server`, ...

Requests of a batch are sent concurrently (`concurrency` at a time) so the server can batch them.
The answer schema goes as `response_format: json_schema`, which both vLLM and llama-server
enforce by constrained decoding.

Options (`--backend-opt key=value`): base_url (default http://127.0.0.1:8000/v1), api_key_env
(name of the environment variable holding the key, default OPENAI_API_KEY; the key itself is
never a flag), concurrency (8), timeout (600 s), structured (true).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from listrank.errors import ListrankError
from listrank.gen.backends.base import Backend, Completion, Request, pop_option, register, reject_unknown


@register("openai-http")
class OpenAIHttpBackend(Backend):
    default_batch_size = 64

    def __init__(self, model: str | None = None, **options: Any):
        super().__init__(model or "default")
        self.base_url = pop_option(options, "base_url", "http://127.0.0.1:8000/v1", str).rstrip("/")
        key_env = pop_option(options, "api_key_env", "OPENAI_API_KEY", str)
        self.api_key = os.environ.get(key_env, "")
        self.concurrency = pop_option(options, "concurrency", 8, int)
        self.timeout = pop_option(options, "timeout", 600.0, float)
        self.structured = pop_option(options, "structured", True, bool)
        reject_unknown(self.name, options)

    @property
    def model_id(self) -> str:
        return f"{self.model}@{self.base_url}"

    def _one(self, request: Request) -> Completion:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "temperature": request.sampling.temperature,
            "top_p": request.sampling.top_p,
            "max_tokens": request.sampling.max_tokens,
            "seed": request.seed,
        }
        if request.sampling.repeat_penalty != 1.0:
            # Not an OpenAI field: vLLM and llama-server read it (as `repetition_penalty` and
            # `repeat_penalty`); sent only when set, so plain OpenAI-style servers never see it.
            body["repetition_penalty"] = body["repeat_penalty"] = request.sampling.repeat_penalty
        if self.structured and request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "graded_passages", "schema": request.json_schema, "strict": True},
            }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        http = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=json.dumps(body).encode("utf-8"), headers=headers
        )
        try:
            with urllib.request.urlopen(http, timeout=self.timeout) as resp:
                reply = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:300]
            raise ListrankError(f"{self.base_url}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            raise ListrankError(f"{self.base_url}: {getattr(e, 'reason', e)} (is the server running?)") from None
        choice = reply["choices"][0]
        usage = reply.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason") or "stop",
        )

    def generate(self, requests: list[Request]) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(self._one, requests))
