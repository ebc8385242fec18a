"""`sycl-v1`: the SyCL paper's recipe, one call per query for all levels at once.

One prompt (the template of `--prompt-version` / `--prompt-file`) asks for a JSON object
`{"level_3": [...], "level_2": [...], ...}`; an invalid answer is asked again with the rejected
answer and the reason appended to the conversation. Large instruction-tuned models follow it
well, and it is the paper's setting, so it stays the default for them and reproduces earlier data.
"""

from __future__ import annotations

from listrank.errors import ListrankError
from listrank.gen.backends.base import Completion, Request
from listrank.gen.prompts import PromptBuilder, load_template
from listrank.gen.strategies.base import Generated, Strategy, register


@register("sycl-v1")
class SingleCall(Strategy):
    summary = "one call for all levels, the paper's"

    def __init__(self, config):
        super().__init__(config)
        self.template = load_template(config.prompt_version, config.prompt_file)
        # ~4 characters a word: the schema then rules out the one-word passages small models love.
        self.builder = PromptBuilder(self.template, config.levels, config.per_level, config.passage_words,
                                     min_chars=4 * config.min_words)
        self.schema = self.builder.json_schema()

    @property
    def prompt_version(self) -> str:
        return self.template.version

    def generate_batch(self, batch, backend, summary):
        from listrank.gen.generate import InvalidAnswer, _count, clean_text, request_seed, validate_answer

        config, builder = self.config, self.builder
        good: dict[str, Generated] = {}
        bad: dict[str, tuple[str, str]] = {}
        previous: dict[str, tuple[str, str]] = {}
        active = list(batch)
        for attempt in range(config.max_attempts):
            requests = []
            for q in active:
                if q.id in previous:
                    messages = builder.retry_messages(q.text, *previous[q.id])
                else:
                    messages = builder.messages(q.text)
                requests.append(Request(messages, config.sampling, request_seed(config.seed, q.id, attempt), self.schema))
            completions = backend.generate(requests)
            if not isinstance(completions, (list, tuple)) or len(completions) != len(requests):
                raise ListrankError(f"backend {backend.name!r} returned {len(completions)} answers for {len(requests)} prompts")
            summary.attempts += len(requests)
            still_invalid = []
            for q, completion in zip(active, completions):
                if not isinstance(completion, Completion):
                    completion = Completion("", error=f"the backend returned a {type(completion).__name__}, not a Completion")
                summary.prompt_tokens += _count(completion.prompt_tokens)
                summary.completion_tokens += _count(completion.completion_tokens)
                try:
                    by_level = validate_answer(
                        completion, q.text, config.levels, config.per_level, config.min_words, config.max_words
                    )
                except InvalidAnswer as e:
                    previous[q.id] = (clean_text(getattr(completion, "text", ""), 8000), clean_text(str(e), 1000))
                    still_invalid.append(q)
                else:
                    good[q.id] = Generated(by_level, attempt + 1)
                    if attempt:
                        summary.retried += 1
            active = still_invalid
            if not active:
                break
        for q in active:
            answer, reason = previous[q.id]
            bad[q.id] = (reason, answer)
            if config.max_attempts > 1:
                summary.retried += 1
        return good, bad
