"""Generation strategies (listrank.gen.strategies) and --filter, through a scripted fake backend."""

from __future__ import annotations

import json
import re

import pytest

from listrank.errors import ListrankError
from listrank.formats import Query, read_synthetic
from listrank.gen import GenConfig, generate
from listrank.gen.backends.base import Backend, Completion
from listrank.gen.filters import bm25_scores
from listrank.gen.strategies import resolve_strategy


class PerLevelFake(Backend):
    """Answers one-passage JSON; the level is read from the instruction, the query from its end.

    `fail`: {query text: number of level-3 answers to spoil (too short) before a good one}."""

    name = "fake-per-level"

    def __init__(self, fail=None):
        super().__init__("fake")
        self.fail = dict(fail or {})
        self.requests = []

    def generate(self, requests):
        out = []
        for r in requests:
            self.requests.append(r)
            user = r.messages[-1]["content"]
            query = user.rsplit(": ", 1)[1]
            level = 3 if "answers this search query" in user else 2 if "background" in user else \
                1 if "wider field" in user else 0
            if level == 3 and self.fail.get(query, 0) > 0:
                self.fail[query] -= 1
                out.append(Completion(json.dumps({"passage": "too short"}), 5, 3))
                continue
            about = query if level else "something else entirely"  # level 0 off the query's words
            text = f"level {level} text for {about} " + " ".join(f"w{level}x{i}" for i in range(10))
            out.append(Completion(json.dumps({"passage": text}), 50, 20))
        return out


QUERIES = [Query("q0", "apple pie recipe"), Query("q1", "distance to the moon"), Query("q2", "python list sort")]


def _cfg(tmp_path, **kw):
    return GenConfig(output=tmp_path / "s.jsonl", per_level=1, passage_words=5, min_words=5, progress=False,
                     **{"strategy": "levels-fewshot-borrow-v1", **kw})


def test_borrowed_level0_is_another_querys_level3_and_flagged(tmp_path):
    backend = PerLevelFake()
    summary = generate(_cfg(tmp_path), QUERIES, backend)
    assert summary.done == 3 and summary.rejected == 0
    lists = {sl.query_id: sl for sl in read_synthetic(tmp_path / "s.jsonl")}
    for qid, sl in lists.items():
        assert [p.level for p in sl.passages] == [3, 2, 1, 0]
        zero = sl.passages[-1]
        donor, _, _ = zero.borrowed_from.partition("_l_")
        assert donor != qid and zero.borrowed_from == f"{donor}_l_3_d_0"
        assert zero.text == lists[donor].passages[0].text
        assert all(p.borrowed_from is None for p in sl.passages[:3])
        assert sl.generator["strategy"] == "levels-fewshot-borrow-v1"
        assert sl.generator["prompt_version"] == "levels-fewshot-borrow-v1"
    # Level 0 is never asked for; each call holds one level only (a shared prompt prefix).
    assert len(backend.requests) == 9
    assert not any("nothing to do" in r.messages[-1]["content"] for r in backend.requests)
    # The few-shot example precedes the query: a user turn and an assistant answer.
    assert [m["role"] for m in backend.requests[0].messages] == ["system", "user", "assistant", "user"]


def test_failed_level3_rejects_before_other_levels_and_keeps_good_passages(tmp_path):
    backend = PerLevelFake(fail={"apple pie recipe": 5, "distance to the moon": 1})
    summary = generate(_cfg(tmp_path, strategy="levels-v1", max_attempts=3), QUERIES, backend)
    assert summary.done == 2 and summary.rejected == 1
    rejects = [json.loads(line) for line in (tmp_path / "s.rejects.jsonl").read_text().splitlines()]
    assert rejects[0]["query_id"] == "q0" and "level_3[0] has 2 words" in rejects[0]["reason"]
    asked = [r.messages[-1]["content"].rsplit(": ", 1)[1] for r in backend.requests]
    assert asked.count("apple pie recipe") == 3  # three level-3 tries, nothing for levels 2, 1, 0
    assert asked.count("distance to the moon") == 5  # one retry of level 3, then 2, 1, 0 once each
    lists = {sl.query_id: sl for sl in read_synthetic(tmp_path / "s.jsonl")}
    assert lists["q1"].generator["attempts"] == 2
    assert [m["role"] for m in backend.requests[0].messages] == ["system", "user"]  # zero-shot


def test_resume_with_another_strategy_is_refused(tmp_path):
    generate(_cfg(tmp_path), QUERIES[:2], PerLevelFake())
    with pytest.raises(ListrankError, match="strategy"):
        generate(_cfg(tmp_path, strategy="levels-v1"), QUERIES, PerLevelFake())


def test_auto_and_unknown_strategy():
    assert resolve_strategy("auto", "llama-cpp") == "levels-fewshot-borrow-v1"
    assert resolve_strategy("auto", "vllm") == "sycl-v1"
    assert resolve_strategy("auto", "llama-cpp", custom_prompt=True) == "sycl-v1"
    with pytest.raises(ListrankError, match="unknown --strategy"):
        resolve_strategy("levels-v9", "llama-cpp")


def test_bm25_filter_rejects_list_whose_level0_matches_the_query_better(tmp_path):
    class Swapped(PerLevelFake):
        def generate(self, requests):
            out = super().generate(requests)
            for i, r in enumerate(requests):
                user = r.messages[-1]["content"]
                if "python list sort" in user and "answers this search query" in user:
                    out[i] = Completion(json.dumps({"passage": "an unrelated text about gardens and roses today"}))
                elif "python list sort" in user and "nothing to do" in user:
                    out[i] = Completion(json.dumps({"passage": "python list sort python list sort sorted lists"}))
            return out

    summary = generate(_cfg(tmp_path, strategy="levels-v1", filter="bm25"), QUERIES, Swapped())
    assert summary.done == 2 and summary.rejected == 1 and summary.filtered == 1
    reject = json.loads((tmp_path / "s.rejects.jsonl").read_text())
    assert reject["query_id"] == "q2" and re.match(r"filter bm25: level 3 scored 0\.000, not above level 0", reject["reason"])
    assert read_synthetic(tmp_path / "s.jsonl")[0].generator["filter"] == "bm25"


def test_bm25_scores_prefer_matching_passage():
    s = bm25_scores("moon distance", ["the moon is at a distance of 384400 km", "apples grow on trees"])
    assert s[0] > 0 and s[1] == 0


def test_pick_keeps_the_candidates_bm25_puts_in_the_levels_order(tmp_path):
    """Two candidates per passage: one full of the query's words, one without them. Level 3 must
    keep the first, level 1 the second, level 2 the one nearer the middle; twice the requests."""

    class TwoKinds(PerLevelFake):
        """Level 3: candidate 0 off the query, candidate 1 the query thrice; level 1 the other way
        round; level 2: the query thrice, or its first word once (nearer the middle)."""

        def generate(self, requests):
            out, count = [], {}
            for r in requests:
                self.requests.append(r)
                user = r.messages[-1]["content"]
                query = user.rsplit(": ", 1)[1]
                level = 3 if "answers this search query" in user else 2 if "background" in user else 1
                nth = count[(query, level)] = count.get((query, level), -1) + 1
                rich, poor = f"{query} {query} {query}", "unrelated words" if level != 2 else query.split()[0]
                words = {3: (poor, rich), 2: (rich, poor), 1: (rich, poor)}[level][nth]
                text = f"{words} level {level} " + " ".join(f"w{level}x{i}" for i in range(10))
                out.append(Completion(json.dumps({"passage": text}), 50, 20))
            return out

    backend = TwoKinds()
    generate(_cfg(tmp_path, strategy="levels-fewshot-borrow-pick-v1"), QUERIES, backend)
    assert len(backend.requests) == 2 * 9  # 3 queries x levels 3, 2, 1 x 2 candidates
    lists = {sl.query_id: sl for sl in read_synthetic(tmp_path / "s.jsonl")}
    assert len(lists) == 3
    for sl in lists.values():
        assert [p.level for p in sl.passages] == [3, 2, 1, 0]
        s3, s2, s1, _ = bm25_scores(sl.query, [p.text for p in sl.passages])
        assert s3 > s2 > s1, (sl.query_id, s3, s2, s1)
        assert sl.passages[0].text.startswith(f"{sl.query} {sl.query}")
        assert sl.passages[1].text.startswith(f"{sl.query.split()[0]} level 2")
        assert sl.passages[2].text.startswith("unrelated words")
        assert sl.generator["strategy"] == "levels-fewshot-borrow-pick-v1" and sl.generator["candidates"] == 2
        # Level 0 is borrowed from a *kept* level-3 passage of another query.
        donor = sl.passages[3].borrowed_from.partition("_l_")[0]
        assert sl.passages[3].text == lists[donor].passages[0].text


def test_pick3_writes_three_candidates_and_can_keep_the_third(tmp_path):
    """Three candidates per passage, where only the third of level 3 holds the query's words and
    only the third of level 1 lacks them: a pick of two would miss both."""

    class ThirdIsBest(PerLevelFake):
        def generate(self, requests):
            out, count = [], {}
            for r in requests:
                self.requests.append(r)
                user = r.messages[-1]["content"]
                query = user.rsplit(": ", 1)[1]
                level = 3 if "answers this search query" in user else 2 if "background" in user else 1
                nth = count[(query, level)] = count.get((query, level), -1) + 1
                words = {3: ("gardens", "roses", f"{query} {query}"), 2: (query, query, query),
                         1: (query, query, "unrelated words")}[level][nth]
                text = f"{words} level {level} try {nth} " + " ".join(f"w{level}x{i}" for i in range(10))
                out.append(Completion(json.dumps({"passage": text}), 50, 20))
            return out

    backend = ThirdIsBest()
    generate(_cfg(tmp_path, strategy="levels-fewshot-borrow-pick3-v1"), QUERIES, backend)
    assert len(backend.requests) == 3 * 9  # 3 queries x levels 3, 2, 1 x 3 candidates
    lists = read_synthetic(tmp_path / "s.jsonl")
    assert len(lists) == 3
    for sl in lists:
        assert sl.generator["strategy"] == "levels-fewshot-borrow-pick3-v1" and sl.generator["candidates"] == 3
        assert [p.level for p in sl.passages] == [3, 2, 1, 0]
        assert "level 3 try 2" in sl.passages[0].text and "level 1 try 2" in sl.passages[2].text


def test_gen_help_lists_every_registered_strategy_with_its_summary():
    from typer.testing import CliRunner

    from listrank.cli import app
    from listrank.gen.strategies import available, get_strategy

    out = CliRunner().invoke(app, ["gen", "--help"], env={"COLUMNS": "400"}).output
    text = " ".join(out.replace("│", " ").split())  # rich wraps long help inside its box
    assert len(available()) >= 5
    for name in available():
        summary = get_strategy(name).summary
        assert summary and f"{name} ({summary})" in text, name
    assert "auto: levels-fewshot-borrow-v1 for llama-cpp, sycl-v1 otherwise" in text


def test_pick_by_scores_orders_the_levels_by_any_scorer():
    """The pick rule on given scores: the top level keeps its highest, the bottom its lowest, the
    middle level the one nearest the middle of those two; kept passages keep their order of writing."""
    from listrank.gen.strategies.per_level import pick_by_scores

    by_level = {3: ["a3", "b3"], 2: ["a2", "b2"], 1: ["a1", "b1"]}
    #         a3   b3   a2   b2   a1   b1      level 2: middle (9 + 0) / 2 = 4.5, b2 (4) nearer than a2 (8)
    scores = [1.0, 9.0, 8.0, 4.0, 2.0, 0.0]
    assert pick_by_scores(by_level, scores, 1) == {3: ["b3"], 2: ["b2"], 1: ["b1"]}
    # ties keep the first written
    assert pick_by_scores(by_level, [5.0] * 6, 1) == {3: ["a3"], 2: ["a2"], 1: ["a1"]}
    # two of three kept per level, in order of writing
    three = {3: ["x", "y", "z"], 1: ["u", "v", "w"]}
    assert pick_by_scores(three, [3.0, 1.0, 2.0, 3.0, 1.0, 2.0], 2) == {3: ["x", "z"], 1: ["v", "w"]}
    with pytest.raises(ValueError, match="5 scores for 6 candidates"):
        pick_by_scores(by_level, scores[:5], 1)
