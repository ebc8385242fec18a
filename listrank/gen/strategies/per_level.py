"""One call per level: short one-passage answers that small models can write.

Why: a 135M model asked for one JSON object holding every level (`sycl-v1`) loses its way in
the long answer: it writes one-word "passages", loops until the token limit, or copies one level
into another, and most of its levels blur together (docs/gen.md). Here each passage is its own
request:

* the answer is `{"passage": "..."}`, a one-string grammar whose `minLength`/`maxLength` come
  from `--passage-words` / `--min-words` (about 2 and 10 characters a word), so the model can
  neither stop at one word nor loop: the grammar closes the string and the backend stops there,
  and `max_tokens` is bounded per level (`maxLength` / 2 + 32, capped by `--max-tokens`);
* every request of one call asks for the same level, so all prompts of the call share everything
  before the query (instructions, few-shot example) and the llama-cpp backend decodes that prefix
  once per call, not once per query;
* levels are asked best first, each with its own retries (a new seed); a query whose level 3
  fails every try is rejected before any token is spent on its other levels, and a valid
  passage is never asked again because a sibling failed.

Variants (registered names, recorded in `generator.strategy` and `generator.prompt_version`):

* `levels-v1`: zero-shot instructions, one per level;
* `levels-fewshot-v1`: + one worked example (a user turn and its answer) per level;
* `levels-fewshot-borrow-v1`: levels 3, 2, 1 as in `levels-fewshot-v1`; level 0 is not
  written but taken from the level-3 passage of another query of the same batch, the one whose
  query shares the fewest words with this one. That passage is realistic text that is certainly
  about something else, which a small model asked for an "irrelevant" passage rarely writes (it
  stays on the query's topic). Each such passage carries `borrowed_from: <source passage id>`
  in the record. A batch with a single accepted query borrows from the previous batch; the very
  first one alone is rejected ("no other query to borrow a level-0 passage from").
* `levels-fewshot-borrow-pick-v1`: `levels-fewshot-borrow-v1` that writes two candidates for
  each passage of levels 3, 2, 1 (twice the tokens) and keeps, per level, the one a lexical
  scorer puts in the levels' order: BM25 over the query's candidates, highest for level 3,
  lowest for level 1, nearest the middle for level 2 (`pick_by_scores`). The small model's
  levels 3, 2 and 1 often read alike; the bet is that of two tries, the one a lexical scorer
  ranks where its level belongs is the better example of that level. Measured (docs/gen.md):
  over four draws of the tries it raises the encoder's 2>1 share from about 55 % to 64.5-68.8 %
  and its 3>2 share from about 56 % to 59.7-68.0 % (mean 63.9 %); query likelihood under the
  LLM, as the judge, did no better. A query is rejected if any
  candidate fails every try, as a passage is in `levels-fewshot-borrow-v1`. The choice is
  recorded as `generator.candidates` and `generator.picked_by`.
* `levels-fewshot-borrow-pick3-v1`: the same with three candidates per passage. Measured on the
  same 200 queries (docs/gen.md, "How many tries"): a third try raises 2>1 by another 5-9
  points over the pick of two (73.5 % against 64.5-68.5 %), and leaves 3>2 where the pick of two
  puts it (66.0 % against 61.5-68.0 %). It writes three times the tokens of
  `levels-fewshot-borrow-v1`: 2.8 valid lists/min against 9.0 in one benchmark session.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar, Sequence

from listrank.errors import ListrankError
from listrank.gen.backends.base import Completion, Request, Sampling
from listrank.gen.strategies.base import Generated, Strategy, register

SYSTEM = "You write paragraphs for web pages. You answer with JSON only."

# One instruction per level. {query} comes last, so all prompts of one call share their prefix.
INSTRUCTIONS = {
    3: "Write a paragraph of about {passage_words} words from a web page that answers this search query "
       "exactly, with facts: {query}",
    2: "Write a paragraph of about {passage_words} words of background about the subject of this search query "
       "(its history, uses or context), without giving the exact answer: {query}",
    1: "Write a paragraph of about {passage_words} words about the wider field that this search query belongs "
       "to, without naming its subject: {query}",
    0: "Write a paragraph of about {passage_words} words from a web page about a subject that has nothing to do "
       "with this search query: {query}",
}

# The worked example of the few-shot variants: one query, one passage per level (hand-written).
EXAMPLE_QUERY = "how long to boil an egg"
EXAMPLES = {
    3: "A large egg needs about 9 to 12 minutes in boiling water for a firm yolk and 6 to 7 minutes for a soft, "
       "runny yolk. Start the timer once the water boils again, then cool the egg in cold water so it stops "
       "cooking and peels easily.",
    2: "Eggs have been boiled since ancient times and are a cheap source of protein. Fresh eggs are harder to "
       "peel than older ones, and adding salt or vinegar to the water is an old kitchen habit. Cooking time "
       "depends on the size of the egg and how firm you like it.",
    1: "Home cooking covers many simple skills, from chopping vegetables to baking bread. Most recipes list "
       "ingredients, tools and steps, and beginners often start with breakfast dishes because they are quick, "
       "cheap and forgiving of small mistakes.",
    0: "The Amazon river carries more water than any other river on Earth. Its basin covers about seven "
       "million square kilometres across nine countries and holds the largest rainforest in the world, home "
       "to millions of species of insects, plants, birds and fish.",
}


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def pick_by_scores(by_level: dict[int, list[str]], scores: Sequence[float], per_level: int) -> dict[int, list[str]]:
    """Keep `per_level` of each level's candidates so that `scores` order the levels.

    `scores` are aligned with the candidates of every level, best level first and each level's
    candidates in order of writing. The top level keeps its highest-scoring candidates, the
    bottom one its lowest, and a level in between those closest to the middle of the kept
    scores of the level above it and of the bottom level. Ties keep the order of writing.
    """
    levels = sorted(by_level, reverse=True)
    if len(scores) != sum(len(by_level[lv]) for lv in levels):
        raise ValueError(f"{len(scores)} scores for {sum(len(by_level[lv]) for lv in levels)} candidates")
    it = iter(scores)
    scored = {lv: [(float(next(it)), i, t) for i, t in enumerate(by_level[lv])] for lv in levels}
    n = per_level

    def keep(lv: int, key) -> list[tuple[float, int, str]]:
        return sorted(sorted(scored[lv], key=key)[:n], key=lambda c: c[1])

    kept = {levels[0]: keep(levels[0], lambda c: (-c[0], c[1]))}
    if len(levels) > 1:
        kept[levels[-1]] = keep(levels[-1], lambda c: (c[0], c[1]))
    for pos in range(1, len(levels) - 1):  # middle levels, best first: between their neighbours
        above = sum(c[0] for c in kept[levels[pos - 1]]) / n
        below = sum(c[0] for c in kept[levels[-1]]) / n
        mid = (above + below) / 2
        kept[levels[pos]] = keep(levels[pos], lambda c, mid=mid: (abs(c[0] - mid), c[1]))
    return {lv: [t for _, _, t in kept[lv]] for lv in levels}


@register("levels-v1")
class PerLevel(Strategy):
    """One request per passage, one backend call per level; see the module docstring."""

    summary = "one call per level"

    few_shot: ClassVar[bool] = False
    borrow_level0: ClassVar[bool] = False
    candidates: ClassVar[int] = 1  # passages written per wanted passage; > 1: `_pick` keeps the best

    def __init__(self, config):
        super().__init__(config)
        unknown = [lv for lv in config.levels if lv not in INSTRUCTIONS]
        if unknown:
            raise ListrankError(f"--strategy {self.name}: no prompt for level(s) {unknown} (has 3, 2, 1, 0)")
        if len(set(config.levels)) != len(config.levels) or not config.levels:
            raise ListrankError(f"levels must be distinct and non-empty, got {list(config.levels)}")
        if config.per_level < 1:
            raise ListrankError("passages per level must be at least 1")
        if config.prompt_file is not None:
            raise ListrankError(f"--prompt-file is a single-call template; use it with --strategy sycl-v1, "
                                f"not {self.name}")
        self.min_chars = max(4 * config.min_words, 2 * config.passage_words)
        self.max_chars = max(self.min_chars + 1, min(8 * config.max_words, 10 * config.passage_words))
        self.max_tokens = min(config.max_tokens, self.max_chars // 2 + 32)
        self.schema = {
            "type": "object",
            "properties": {"passage": {"type": "string", "minLength": self.min_chars, "maxLength": self.max_chars}},
            "required": ["passage"],
            "additionalProperties": False,
        }
        self.written = [lv for lv in config.levels if not (self.borrow_level0 and lv == 0)]
        self._pool: list[tuple[str, str, dict[int, list[str]]]] = []  # the previous batch's accepted lists

    def record_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"max_tokens_per_passage": self.max_tokens,
                                 "passage_chars": [self.min_chars, self.max_chars]}
        if self.borrow_level0 and 0 in self.config.levels:
            extra["level0"] = "borrowed from another query's level-3 passage"
        if self.candidates > 1:
            extra["candidates"] = self.candidates
            extra["picked_by"] = ("bm25 over the query's candidates: highest for the top level, lowest for the "
                                 "bottom one, nearest the middle of those for the levels between")
        return extra

    def _pick(self, query: str, by_level: dict[int, list[str]]) -> dict[int, list[str]]:
        """Keep `per_level` of each level's candidates, so that BM25 orders the levels (`pick_by_scores`).

        Every candidate of the query is scored with BM25 (the candidates being the corpus, as
        `--filter bm25` does). BM25 is independent of the dense encoders that train on the lists
        and audit them.
        """
        from listrank.gen.filters import bm25_scores

        levels = sorted(by_level, reverse=True)
        return pick_by_scores(by_level, bm25_scores(query, [t for lv in levels for t in by_level[lv]]),
                              self.config.per_level)

    def messages(self, level: int, query: str) -> list[dict[str, str]]:
        def user(q: str) -> str:
            text = INSTRUCTIONS[level].replace("{passage_words}", str(self.config.passage_words))
            return text.replace("{query}", q)

        msgs = [{"role": "system", "content": SYSTEM}]
        if self.few_shot:
            msgs += [{"role": "user", "content": user(EXAMPLE_QUERY)},
                     {"role": "assistant", "content": json.dumps({"passage": EXAMPLES[level]})}]
        msgs.append({"role": "user", "content": user(query)})
        return msgs

    def _check(self, completion, query: str, seen: dict[str, str], where: str) -> str:
        """The passage of one answer, or `InvalidAnswer` with the reason."""
        from listrank.gen.generate import InvalidAnswer, _encodable, _normalise, parse_json_answer

        if not isinstance(completion, Completion):
            raise InvalidAnswer(f"the backend returned a {type(completion).__name__}, not a Completion")
        obj = parse_json_answer(completion, where)
        passage = obj.get("passage") if isinstance(obj, dict) else None
        if not isinstance(passage, str) or not passage.strip():
            raise InvalidAnswer(f"{where} is empty or not a string")
        if not _encodable(passage):
            raise InvalidAnswer(f"{where} is not valid Unicode (a lone surrogate)")
        passage = " ".join(passage.split())
        words = len(passage.split())
        if not self.config.min_words <= words <= self.config.max_words:
            raise InvalidAnswer(f"{where} has {words} words, expected {self.config.min_words} to "
                                f"{self.config.max_words}")
        norm = _normalise(passage)
        if norm in seen:
            raise InvalidAnswer(f"{where} repeats {seen[norm]}")
        return passage

    def generate_batch(self, batch, backend, summary):
        from listrank.gen.generate import InvalidAnswer, _count, _normalise, clean_text, request_seed

        config = self.config
        sampling = Sampling(temperature=config.temperature, top_p=config.top_p, max_tokens=self.max_tokens,
                            repeat_penalty=1.0 if config.repeat_penalty is None else config.repeat_penalty)
        slots_per_level = config.per_level * self.candidates
        passages: dict[str, dict[int, list[str | None]]] = {q.id: {} for q in batch}
        seen: dict[str, dict[str, str]] = {q.id: {_normalise(q.text): "the query"} for q in batch}
        tries: dict[str, int] = {q.id: 1 for q in batch}
        bad: dict[str, tuple[str, str]] = {}
        alive = list(batch)
        for lv in self.written:
            key = f"level_{lv}"
            slots = [(q, i) for q in alive for i in range(slots_per_level)]
            for q in alive:
                passages[q.id][lv] = [None] * slots_per_level
            last: dict[tuple[str, int], tuple[str, str]] = {}
            for attempt in range(config.max_attempts):
                if not slots:
                    break
                requests = [Request(self.messages(lv, q.text), sampling,
                                    request_seed(config.seed, f"{q.id}\0{key}\0{i}", attempt), self.schema)
                            for q, i in slots]
                completions = backend.generate(requests)
                if not isinstance(completions, (list, tuple)) or len(completions) != len(requests):
                    raise ListrankError(f"backend {backend.name!r} returned {len(completions)} answers for "
                                        f"{len(requests)} prompts")
                summary.attempts += len(requests)
                failed = []
                for (q, i), completion in zip(slots, completions):
                    summary.prompt_tokens += _count(getattr(completion, "prompt_tokens", 0))
                    summary.completion_tokens += _count(getattr(completion, "completion_tokens", 0))
                    where = f"{key}[{i}]"
                    try:
                        text = self._check(completion, q.text, seen[q.id], where)
                    except InvalidAnswer as e:
                        last[(q.id, i)] = (clean_text(str(e), 1000), clean_text(getattr(completion, "text", ""), 4000))
                        failed.append((q, i))
                    else:
                        passages[q.id][lv][i] = text
                        seen[q.id][_normalise(text)] = where
                        tries[q.id] = max(tries[q.id], attempt + 1)
                slots = failed
            for q, i in slots:  # every try of this slot failed: the query is rejected, no more tokens on it
                if q.id not in bad:
                    bad[q.id] = last[(q.id, i)]
            alive = [q for q in alive if q.id not in bad]
        good = {q.id: Generated({lv: list(passages[q.id][lv]) for lv in self.written}, tries[q.id]) for q in alive}
        for qid in good:
            if tries[qid] > 1:
                summary.retried += 1
        summary.retried += len(bad) if config.max_attempts > 1 else 0
        if self.candidates > 1:
            for q in batch:
                if q.id in good:
                    good[q.id].by_level = self._pick(q.text, good[q.id].by_level)
        if self.borrow_level0 and 0 in config.levels:
            self._borrow(batch, good, bad, seen)
        return good, bad

    def _borrow(self, batch, good: dict[str, Generated], bad, seen) -> None:
        """Level 0 of each accepted query := the level-3 passages of the batch's least similar other query."""
        from listrank.formats import SyntheticList
        from listrank.gen.generate import _normalise

        order = [q for q in batch if q.id in good]
        donors = [(q.id, q.text, good[q.id].by_level) for q in order]
        if len(donors) < 2:
            donors += [d for d in self._pool if d[0] not in good]
        per_level = self.config.per_level
        for pos, q in enumerate(order):
            words = _words(q.text)
            # Fewest shared query words first; ties: the next queries of the batch in order.
            candidates = sorted(
                (d for d in donors if d[0] != q.id),
                key=lambda d: (len(words & _words(d[1])), (donors.index(d) - pos) % max(len(donors), 1)))
            chosen = None
            for donor_id, _, donor_levels in candidates:
                texts = donor_levels[3][:per_level]
                if len(texts) == per_level and all(_normalise(t) not in seen[q.id] for t in texts):
                    chosen = (donor_id, texts)
                    break
            if chosen is None:
                del good[q.id]
                bad[q.id] = ("no other query to borrow a level-0 passage from (a batch with one accepted list)", "")
                continue
            donor_id, texts = chosen
            good[q.id].by_level[0] = list(texts)
            for i in range(per_level):
                good[q.id].borrowed[(0, i)] = SyntheticList.passage_id(donor_id, 3, i)
        if good:
            self._pool = [(q.id, q.text, good[q.id].by_level) for q in order if q.id in good]


@register("levels-fewshot-v1")
class PerLevelFewShot(PerLevel):
    """`levels-v1` with one hand-written example per level in the (shared, cached) prompt prefix."""

    summary = "levels-v1 with an example per level"

    few_shot = True


@register("levels-fewshot-borrow-v1")
class PerLevelFewShotBorrow(PerLevel):
    """`levels-fewshot-v1` for levels 3, 2, 1; level 0 borrowed from another query's level 3."""

    summary = "levels-fewshot-v1, level 0 borrowed from another query"

    few_shot = True
    borrow_level0 = True


@register("levels-fewshot-borrow-pick-v1")
class PerLevelFewShotBorrowPick(PerLevelFewShotBorrow):
    """`levels-fewshot-borrow-v1` writing two candidates per passage; `_pick` keeps one per level by BM25."""

    summary = "levels-fewshot-borrow-v1 with two tries per passage, BM25 keeps one"

    candidates = 2


@register("levels-fewshot-borrow-pick3-v1")
class PerLevelFewShotBorrowPick3(PerLevelFewShotBorrowPick):
    """`levels-fewshot-borrow-pick-v1` with three candidates per passage (1.5x its tokens)."""

    summary = "levels-fewshot-borrow-v1 with three tries per passage, BM25 keeps one"

    candidates = 3
