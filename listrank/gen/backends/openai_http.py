"""Any OpenAI-compatible chat endpoint: a running `vllm serve`, llama.cpp's `llama-server`, ...

Requests of a batch are sent concurrently (`concurrency` at a time) so the server can batch them.
The answer schema goes as `response_format: json_schema`, which both vLLM and llama-server
enforce by constrained decoding.

Options (`--backend-opt key=value`): base_url (default http://127.0.0.1:8000/v1), api_key_env
(name of the environment variable holding the key, default OPENAI_API_KEY; the key itself is
never a flag), concurrency (8), timeout (600 s), structured (true), retries (4), backoff (1.0 s).

Hostile replies never stop a run: HTTP 429/5xx, timeouts, dropped connections and truncated or
non-JSON bodies are retried `retries` times with exponential backoff (and the server's
Retry-After, capped at 60 s); a reply of the wrong shape (no `choices`, content that is not text,
an HTML page, absurdly nested JSON, a body over 32 MB) becomes a `Completion` with an `error`,
which `listrank gen` retries with feedback and then rejects with that reason. Only what dooms
every request stops the run: no server at `base_url`, or HTTP 401/403/404.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import time
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
        self.retries = max(0, pop_option(options, "retries", 4, int))
        self.backoff = max(0.0, pop_option(options, "backoff", 1.0, float))
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
        req = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=json.dumps(body).encode("utf-8"), headers=headers
        )
        last_error, retry_after = "no attempt", None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
            try:
                content_type, data = self._post(req)
                return _parse_reply(data, content_type)
            except _Transient as e:
                last_error, retry_after = str(e), e.retry_after
                continue
            except _Malformed as e:
                return Completion("", error=f"{self.base_url}: {e}")
        tries = self.retries + 1
        return Completion("", error=f"{self.base_url}: {last_error} ({tries} tr{'y' if tries == 1 else 'ies'})")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, 60.0)

    def _post(self, req: urllib.request.Request) -> tuple[str, bytes]:
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = resp.read(MAX_REPLY_BYTES + 1)
                if len(data) > MAX_REPLY_BYTES:
                    raise _Transient(f"reply larger than {MAX_REPLY_BYTES >> 20} MB")
                return resp.headers.get("Content-Type") or "", data
        except urllib.error.HTTPError as e:
            try:
                detail = e.read(2000).decode("utf-8", "replace")[:300]
            except (OSError, http.client.HTTPException):
                detail = ""
            if e.code in (401, 403, 404):
                raise ListrankError(f"{self.base_url}: HTTP {e.code}: {detail}") from None
            try:
                retry_after = float(e.headers.get("Retry-After") or "")
            except (TypeError, ValueError, AttributeError):
                retry_after = None
            # 429/5xx are the server's passing trouble; another 4xx may be this request's (too
            # long a prompt): retried all the same, then rejected with the server's words.
            raise _Transient(f"HTTP {e.code}: {detail}", retry_after) from None
        except urllib.error.URLError as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, ConnectionRefusedError):
                raise ListrankError(f"{self.base_url}: {reason} (is the server running?)") from None
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Transient(f"timed out after {self.timeout:g} s") from None
            raise _Transient(f"{reason}") from None
        except (TimeoutError, socket.timeout):
            raise _Transient(f"timed out after {self.timeout:g} s") from None
        except (http.client.HTTPException, ConnectionError, OSError) as e:
            # a dropped connection, a truncated body (IncompleteRead), a malformed status line
            raise _Transient(f"{type(e).__name__}: {e}") from None

    def generate(self, requests: list[Request]) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(self._safe_one, requests))

    def _safe_one(self, request: Request) -> Completion:
        try:
            return self._one(request)
        except ListrankError:
            raise
        except Exception as e:  # noqa: BLE001 - one request's surprise must not end a run of thousands
            return Completion("", error=f"{self.base_url}: unexpected {type(e).__name__}: {e}")


MAX_REPLY_BYTES = 32 << 20


class _Transient(Exception):
    """Worth another try: the server was busy or the reply did not arrive whole."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Malformed(Exception):
    """A whole reply of the wrong shape: retrying the same request will not help."""


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):
        return 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and all(
        isinstance(p, dict) and isinstance(p.get("text"), str) for p in content
    ):  # OpenAI content parts: [{"type": "text", "text": ...}]
        return "".join(p["text"] for p in content)
    if content is None:
        raise _Malformed("the reply has no text content")
    raise _Malformed(f"the reply's content is a {type(content).__name__}, not text")


def _parse_reply(data: bytes, content_type: str) -> Completion:
    """An OpenAI chat completion body -> Completion; `_Transient` / `_Malformed` say what was wrong."""
    text = data.decode("utf-8", "replace")
    stripped = text.lstrip()
    if "html" in content_type.lower() or stripped[:1] == "<":
        raise _Malformed(f"the server answered with an HTML page, not JSON ({stripped[:60]!r})")
    try:
        reply = json.loads(text)
    except RecursionError:
        raise _Malformed("the reply's JSON is nested too deeply") from None
    except json.JSONDecodeError as e:
        # Cut off mid-body (a dropped connection) or garbage: either way, worth another try.
        raise _Transient(f"the reply is not valid JSON ({e.msg} at char {e.pos} of {len(text)})") from None
    if not isinstance(reply, dict):
        raise _Malformed(f"the reply is a JSON {type(reply).__name__}, not an object")
    if "error" in reply and "choices" not in reply:
        raise _Transient(f"the server reported an error: {str(reply['error'])[:300]}")
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _Malformed("the reply has no choices")
    choice = choices[0]
    if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
        raise _Malformed("the reply's first choice has no message")
    content = _content_text(choice["message"].get("content"))
    usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
    finish = choice.get("finish_reason")
    return Completion(
        text=content,
        prompt_tokens=_int(usage.get("prompt_tokens")),
        completion_tokens=_int(usage.get("completion_tokens")),
        finish_reason=finish if isinstance(finish, str) and finish else "stop",
    )
