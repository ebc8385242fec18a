"""Generation strategies: how `listrank gen` turns a batch of queries into graded passage lists.

A strategy decides which prompts go to the backend, in how many calls, and how answers are
validated and retried; the backends only complete chat requests. Each strategy is registered by
a versioned name (`--strategy NAME`), and that name is recorded in every output line
(`generator.strategy`), so published data says how it was made and a resume cannot mix two.

Built in (docs/gen.md has their measured table):

* `sycl-v1`: the SyCL paper's single call (one JSON object with every level), with the prompt of
  `--prompt-version` / `--prompt-file`. The default for large models (vllm, openai-http).
* `levels-v1`: one short call per level (a one-string JSON answer, bounded length), zero-shot.
* `levels-fewshot-v1`: the same with one worked example per level in the shared prompt prefix.
* `levels-fewshot-borrow-v1`: the few-shot calls for levels 3, 2, 1; level 0 is a level-3
  passage written for another query of the batch (flagged `borrowed_from` in the record).
  The default for the llama-cpp backend (small local models).
* `levels-fewshot-borrow-pick-v1`: the same, writing two candidates per passage and keeping, per
  level, the one BM25 puts in the levels' order (twice the tokens).
* `levels-fewshot-borrow-pick3-v1`: the same with three candidates per passage (three times the
  tokens of `levels-fewshot-borrow-v1`).

`auto` (the default of `--strategy`) picks `levels-fewshot-borrow-v1` for llama-cpp and
`sycl-v1` otherwise, or whenever `--prompt-file` / a non-default `--prompt-version` is given
(those are single-call templates).
"""

from __future__ import annotations

from listrank.gen.strategies.base import Generated, Strategy, available, get_strategy, register, resolve_strategy

# Importing the modules registers their strategies.
from listrank.gen.strategies import per_level as _per_level  # noqa: E402,F401
from listrank.gen.strategies import single_call as _single_call  # noqa: E402,F401

__all__ = ["Generated", "Strategy", "available", "get_strategy", "register", "resolve_strategy"]
