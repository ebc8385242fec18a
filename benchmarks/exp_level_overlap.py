"""How lexically apart are a list set's levels? BM25 order and the query's words per level (issue 11).

    LISTRANK_DATA=../shared/data .venv/bin/python benchmarks/exp_level_overlap.py SET.jsonl[.gz] [...] \
        [--first 200] [-o OUT.json]

For lists with one passage per level 3, 2, 1 (`gen --per-level 1`): the share of queries whose
level-3 passage BM25 (over the list's passages 3, 2, 1, as the pick strategy scores them) puts
above its level-2 one, and level 2 above level 1 (ties count half); and the mean share of the
query's distinct words (casefolded `\\w+`) that each level's passage contains. It tells whether
a lexical judge can see the difference the prompts ask for: when level 2 repeats the query's
words as often as level 3, BM25 cannot tell which of them answers.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from exp_filter import read_lists, write_json  # same folder: run as a script

from listrank.gen.filters import bm25_scores


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def overlap(lists) -> dict:
    n, order, cover = 0, {"3>2": 0.0, "2>1": 0.0}, {3: 0.0, 2: 0.0, 1: 0.0}
    for sl in lists:
        by = {p.level: p.text for p in sl.passages}
        if sorted(by) != [0, 1, 2, 3] or len(sl.passages) != 4:
            raise SystemExit(f"query {sl.query_id}: expected one passage per level 3, 2, 1, 0 (gen --per-level 1)")
        s3, s2, s1 = bm25_scores(sl.query, [by[3], by[2], by[1]])
        order["3>2"] += (s3 > s2) + 0.5 * (s3 == s2)
        order["2>1"] += (s2 > s1) + 0.5 * (s2 == s1)
        q = words(sl.query)
        for lv in cover:
            cover[lv] += len(q & words(by[lv])) / max(1, len(q))
        n += 1
    return {"n": n, "bm25_order": {k: v / n for k, v in order.items()},
            "query_words": {str(lv): v / n for lv, v in cover.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", type=Path, nargs="+")
    ap.add_argument("--first", type=int, default=None)
    ap.add_argument("-o", "--output", type=Path, default=None)
    args = ap.parse_args()
    out = {}
    print("| lists | n | BM25 3>2 | BM25 2>1 | query words in level 3 / 2 / 1 |\n|---|---|---|---|---|")
    for path in args.sets:
        lists = read_lists(path)
        r = out[str(path)] = overlap(lists[: args.first] if args.first else lists)
        qw = r["query_words"]
        print(f"| {path.name} | {r['n']} | {r['bm25_order']['3>2']:.1%} | {r['bm25_order']['2>1']:.1%} | "
              f"{qw['3']:.1%} / {qw['2']:.1%} / {qw['1']:.1%} |")
    if args.output:
        write_json(args.output, out)


if __name__ == "__main__":
    main()
