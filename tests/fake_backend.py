"""Scripted stand-ins for an LLM, for `listrank gen` tests (importable as `fake_backend:Class`)."""

from __future__ import annotations

import json
import random
import re
import time

from listrank.gen.backends.base import Backend, Completion, pop_option, reject_unknown


def query_of(messages: list[dict[str, str]]) -> str:
    for m in messages:
        match = re.search(r"^Query: (.*)$", m["content"], re.M)
        if m["role"] == "user" and match:
            return match.group(1)
    raise AssertionError(f"no query in {messages}")


def valid_answer(query: str, seed: int, levels=(3, 2, 1, 0), per_level: int = 2) -> str:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    answer = {}
    for lv in levels:
        answer[f"level_{lv}"] = [
            f"Passage {lv}.{i} about {query}: " + " ".join(rng.choice(words) for _ in range(12))
            for i in range(per_level)
        ]
    return json.dumps(answer)


class EchoBackend(Backend):
    """Always answers validly; the text depends only on the query and the request seed.

    Options: delay (seconds per request, to give a kill test something to interrupt),
    per_level, levels ("3,2,1,0").
    """

    name = "fake-echo"

    def __init__(self, model=None, **options):
        super().__init__(model or "echo", **options)
        self.delay = pop_option(options, "delay", 0.0, float)
        self.per_level = pop_option(options, "per_level", 2, int)
        self.levels = tuple(int(x) for x in str(pop_option(options, "levels", "3,2,1,0", str)).split(","))
        reject_unknown(self.name, options)
        self.calls: list[list] = []

    def generate(self, requests):
        self.calls.append(requests)
        out = []
        for r in requests:
            time.sleep(self.delay)
            text = valid_answer(query_of(r.messages), r.seed, self.levels, self.per_level)
            out.append(Completion(text, prompt_tokens=10, completion_tokens=len(text.split())))
        return out


class ScriptedBackend(Backend):
    """Answers each query from a script: {query text: [answer for attempt 1, attempt 2, ...]}.

    An answer of None means "a valid answer"; queries not in the script always answer validly.
    Records every request so tests can look at the retry prompts.
    """

    name = "fake-scripted"

    def __init__(self, script: dict[str, list], model: str = "scripted"):
        super().__init__(model)
        self.script = script
        self.requests = []
        self.seen: dict[str, int] = {}

    def generate(self, requests):
        out = []
        for r in requests:
            self.requests.append(r)
            query = query_of(r.messages)
            attempt = self.seen.get(query, 0)
            self.seen[query] = attempt + 1
            answers = self.script.get(query, [])
            answer = answers[attempt] if attempt < len(answers) else None
            if answer is None:
                answer = valid_answer(query, r.seed)
            finish = "length" if answer.startswith("{") and not answer.rstrip().endswith("}") else "stop"
            out.append(Completion(answer, prompt_tokens=5, completion_tokens=7, finish_reason=finish))
        return out
