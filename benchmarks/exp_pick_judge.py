"""Which judge should pick among a small LLM's tries, and how many tries? (issue 11), offline.

    LISTRANK_DATA=../shared/data .venv/bin/python benchmarks/exp_pick_judge.py A.jsonl[.gz] B.jsonl[.gz] [C ...] \
        [--first 200] [--judges bm25,ql,encoder] [--pairs] [-o OUT.json] [--cache QL.json]

A, B (C, ...) are list sets (one passage per level: `--per-level 1`) that one per-level strategy
wrote for the same queries with different seeds (`listrank gen ... --seed 0`, `--seed 1`, ...): for
each query and each written level 3, 2, 1 they hold independent tries, which is what
`levels-fewshot-borrow-pick-v1` writes inside one run (two tries) before it keeps one. Level 0 is
taken from A (borrowed, not picked). Each judge scores the query's candidates and `pick_by_scores`
(the rule the pick strategy runs) keeps one per level: the highest-scoring for level 3, the lowest
for level 1, the one nearest the middle for level 2. Every resulting list set is audited with the
base encoder (`listrank eval --level-audit`'s judge).

With more than two sets, `--pairs` also picks by BM25 among every pair of them: each pair is an
independent draw of the two-try pick strategy on the same queries, so the pairs show how much its
shares move from draw to draw, next to the pick among all the tries.

Judges:

* `bm25`: what `levels-fewshot-borrow-pick-v1` uses (BM25 over the query's candidates).
* `ql`: query likelihood under the generating LLM, log P(query | passage) with the UPR prompt
  ("Passage: ... Please write a question based on this passage. Question:"; Sachan et al. 2022,
  "Improving Passage Retrieval with Zero-Shot Question Generation"). Semantic and independent of
  the encoder, at the cost of one forward pass over each candidate.
* `encoder`: the audit's own judge, shown as the ceiling a pick of two tries can reach; its audit
  measures agreement with itself, not quality (circular), so it is never a strategy.

Per-query 3>2 and 2>1 outcomes are compared with those of A (no pick), and those of the later
picks with the bm25 pick among all the tries (with `--pairs`: the pick among A and B), by an exact two-sided sign test on the queries where they differ
(McNemar): a share of 200 queries has a standard error of about 3.5 points.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np

from exp_filter import read_lists, write_json  # same folder: run as a script

from listrank.audit import level_audit, score_lists
from listrank.audit.stats import _win
from listrank.formats import SyntheticList, SyntheticPassage
from listrank.gen.filters import bm25_scores
from listrank.gen.strategies.per_level import pick_by_scores

PICKED = (3, 2, 1)
UPR = "Passage: {passage}\nPlease write a question based on this passage.\nQuestion:"


class QueryLikelihood:
    """log P(query | passage) under a GGUF chat model (llama.cpp), cached by (query, passage)."""

    def __init__(self, model: str | None, threads: int | None, cache: Path | None):
        from llama_cpp import Llama

        from listrank.gen.backends.llama_cpp import bundled_gguf

        self.path = str(model or bundled_gguf())
        self.llm = Llama(model_path=self.path, logits_all=True, n_ctx=2048, n_threads=threads, verbose=False)
        self.cache_path = cache
        self.cache: dict[str, float] = json.loads(cache.read_text()) if cache and cache.exists() else {}
        self.tokens = 0
        self.seconds = 0.0

    def __call__(self, query: str, passage: str) -> float:
        key = hashlib.sha256(f"{query}\0{passage}".encode()).hexdigest()
        if key not in self.cache:
            start = time.perf_counter()
            head = self.llm.tokenize(UPR.format(passage=passage).encode(), add_bos=True)
            q = self.llm.tokenize((" " + query).encode(), add_bos=False)
            self.llm.reset()
            self.llm.eval(head + q)
            logits = self.llm.scores[len(head) - 1: len(head) + len(q) - 1].astype(np.float64)
            top = logits.max(axis=1)
            lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
            self.cache[key] = float(sum(logits[i, t] - lse[i] for i, t in enumerate(q)))
            self.tokens += len(head) + len(q)
            self.seconds += time.perf_counter() - start
        return self.cache[key]

    def save(self) -> None:
        if self.cache_path:
            write_json(self.cache_path, self.cache)


def combine(tries: Sequence[SyntheticList]) -> tuple[dict[int, list[str]], SyntheticPassage]:
    """Each level's candidates, in the order of the sets, and the first set's level-0 passage."""
    by_level = {lv: [p.text for sl in tries for p in sl.passages if p.level == lv] for lv in PICKED}
    (zero,) = [p for p in tries[0].passages if p.level == 0]
    return by_level, zero


def as_list(a: SyntheticList, kept: dict[int, list[str]], zero: SyntheticPassage, judge: str) -> SyntheticList:
    passages = [SyntheticPassage(id=SyntheticList.passage_id(a.query_id, lv, 0), level=lv, text=kept[lv][0])
                for lv in PICKED]
    return SyntheticList(query_id=a.query_id, query=a.query, passages=passages + [zero],
                         generator={**a.generator, "picked_by": judge})


def outcomes(result) -> dict[str, list[float]]:
    """Per query, 1 / 0.5 / 0 for each adjacent pair of levels (encoder's mean scores)."""
    out: dict[str, list[float]] = {}
    for hi, lo in ((3, 0), (3, 2), (2, 1), (1, 0)):
        out[f"{hi}>{lo}"] = [_win(q.mean_score[hi], q.mean_score[lo]) for q in result.queries]
    return out


def sign_test(x: list[float], y: list[float]) -> float:
    """Exact two-sided sign test on the queries where x and y differ."""
    plus = sum(1 for a, b in zip(x, y) if a > b)
    minus = sum(1 for a, b in zip(x, y) if a < b)
    n = plus + minus
    if n == 0:
        return 1.0
    k = min(plus, minus)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", type=Path, nargs="+", help="two or more list sets: A B [C ...]")
    ap.add_argument("--first", type=int, default=None, help="only the first N common queries (A's order)")
    ap.add_argument("--judges", default="bm25,ql,encoder")
    ap.add_argument("--pairs", action="store_true", help="also pick by bm25 among every pair of the sets")
    ap.add_argument("--model", default=None, help="GGUF for the ql judge (default: the bundled SmolLM2-135M)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cache", type=Path, default=None, help="JSON cache of ql scores")
    ap.add_argument("-o", "--output", type=Path, default=None)
    args = ap.parse_args()
    if len(args.sets) < 2:
        ap.error("give at least two list sets")

    from listrank.encoder import Encoder

    names = [chr(ord("A") + i) for i in range(len(args.sets))]
    first, *others = [read_lists(path) for path in args.sets]
    by_id = [{sl.query_id: sl for sl in lists} for lists in others]
    rows_in: list[list[SyntheticList]] = [[sl] + [d[sl.query_id] for d in by_id]
                                         for sl in first if all(sl.query_id in d for d in by_id)]
    for tries in rows_in:
        for name, path, sl in zip(names, args.sets, tries):
            if sl.query != tries[0].query:
                raise SystemExit(f"query {sl.query_id} differs between {args.sets[0]} and {path}")
            counts = sorted(p.level for p in sl.passages)
            if counts != [0, 1, 2, 3]:
                raise SystemExit(f"{path}: query {sl.query_id}: expected one passage per level 3, 2, 1, 0 "
                                 f"(gen --per-level 1), got levels {counts}")
    rows_in = rows_in[: args.first] if args.first else rows_in
    if not rows_in:
        raise SystemExit(f"{', '.join(map(str, args.sets))} share no query id")
    encoder = Encoder(max_length=256, precision="fp32")
    judges = [j for j in args.judges.split(",") if j]
    ql = QueryLikelihood(args.model, args.threads, args.cache) if "ql" in judges else None

    def enc_scores(query: str, texts: list[str]) -> list[float]:
        candidates = [SyntheticPassage(id=str(i), level=0, text=t) for i, t in enumerate(texts)]
        return list(map(float, score_lists([SyntheticList("q", query, candidates)], encoder)[0]))

    scorers = {"bm25": bm25_scores, "ql": lambda q, texts: [ql(q, t) for t in texts], "encoder": enc_scores}
    sets: dict[str, list[SyntheticList]] = {
        f"{name}: {path.name} (no pick)": [tries[i] for tries in rows_in]
        for i, (name, path) in enumerate(zip(names, args.sets))}
    everyone = "+".join(names)

    def pick(judge: str, which: Sequence[int], orders: dict[str, float] | None = None) -> list[SyntheticList]:
        picked = []
        for n, tries in enumerate(rows_in, 1):
            by_level, zero = combine([tries[i] for i in which])
            texts = [t for lv in PICKED for t in by_level[lv]]
            scores = scorers[judge](tries[0].query, texts)
            kept = pick_by_scores(by_level, scores, 1)
            picked.append(as_list(tries[0], kept, zero, judge))
            if orders is not None:
                s = dict(zip(texts, scores))
                orders["3>2"] += s[kept[3][0]] > s[kept[2][0]]
                orders["2>1"] += s[kept[2][0]] > s[kept[1][0]]
            if ql is not None and judge == "ql" and n % 20 == 0:
                ql.save()
                print(f"ql: {n}/{len(rows_in)} queries, {ql.tokens} tokens in {ql.seconds:.0f} s", flush=True)
        if ql is not None and judge == "ql":
            ql.save()
        return picked

    judge_orders: dict[str, dict[str, float]] = {}
    for judge in judges:
        orders = {"3>2": 0.0, "2>1": 0.0}
        label = f"pick: {judge}" + (f" ({everyone})" if len(names) > 2 else "")
        sets[label + (" (the audit's own judge: circular)" if judge == "encoder" else "")] = pick(
            judge, range(len(names)), orders)
        judge_orders[judge] = {k: v / len(rows_in) for k, v in orders.items()}
    if args.pairs and len(names) > 2:
        for i, j in combinations(range(len(names)), 2):
            sets[f"pick: bm25 ({names[i]}+{names[j]})"] = pick("bm25", (i, j))

    reference = f"pick: bm25 ({everyone})" if len(names) > 2 else "pick: bm25"
    results = {name: level_audit(lists, encoder, name=name) for name, lists in sets.items()}
    audited = {name: outcomes(res) for name, res in results.items()}
    base, ref = next(iter(audited.values())), audited.get(reference)
    rows = []
    for name, per_query in audited.items():
        rows.append({"lists": name, "n": len(sets[name]),
                     "shares": {k: float(np.mean(v)) for k, v in per_query.items()},
                     "concordance": results[name].concordance,
                     "p_vs_A": {k: sign_test(per_query[k], base[k]) for k in ("3>2", "2>1")},
                     "p_vs_bm25_pick": ({k: sign_test(per_query[k], ref[k]) for k in ("3>2", "2>1")}
                                           if ref is not None and name != reference and not name.endswith("(no pick)")
                                           else None)})
    print(f"\n{len(rows_in)} queries; {len(names)} tries per level-3/2/1 passage ({', '.join(names)}); "
          f"level 0 from A\n")
    print(f"| lists | 3>0 | 3>2 | 2>1 | 1>0 | concordance | p (3>2, 2>1) vs A | vs {reference} |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        sh, vs_ref = r["shares"], r["p_vs_bm25_pick"]
        print(f"| {r['lists']} | " + " | ".join(f"{sh[k]:.1%}" for k in ("3>0", "3>2", "2>1", "1>0"))
              + f" | {r['concordance']:.3f} | {r['p_vs_A']['3>2']:.3f}, {r['p_vs_A']['2>1']:.3f} | "
              + (f"{vs_ref['3>2']:.3f}, {vs_ref['2>1']:.3f}" if vs_ref else "") + " |")
    print("\njudge's own order of its picks (3>2, 2>1): "
          + "; ".join(f"{j} {o['3>2']:.1%}, {o['2>1']:.1%}" for j, o in judge_orders.items()))
    if ql is not None and ql.tokens:
        print(f"ql judge: {ql.tokens} tokens in {ql.seconds:.0f} s ({ql.tokens / ql.seconds:.0f} tokens/s, "
              f"threads={args.threads or 'default'})")
    if args.output:
        write_json(args.output, {"sets": [str(p) for p in args.sets], "n": len(rows_in), "rows": rows, "bm25_pick": reference,
                                 "judge_orders": judge_orders,
                                 "ql": {"tokens": ql.tokens, "seconds": ql.seconds} if ql else None})


if __name__ == "__main__":
    main()
