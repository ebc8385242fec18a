"""What `listrank gen --filter` does to a list set's level audit (issue 11, req 3), measured offline.

    LISTRANK_DATA=../shared/data .venv/bin/python benchmarks/exp_filter.py LISTS.jsonl[.gz] [--first 200] [-o OUT.json]
    ... exp_filter.py LISTS.jsonl[.gz] --against OTHER.jsonl[.gz]   # two strategies, on their common queries

Applies each registered filter (`listrank.gen.filters`, the code `gen --filter` runs) to lists that
`listrank gen` already wrote, and audits what is kept with the base encoder (the audit
`listrank eval --level-audit` runs): kept share, then 3>0 / 3>2 / 2>1 / 1>0 shares of queries and
concordance, for all lists and for each filter's kept lists. The `bm25` filter is independent of the
encoder; `encoder` is the audit's own judge (its 3>0 is 100 % by construction) and is shown only to
make that visible. Also shows how often BM25 orders each adjacent pair of levels, and the audit of
the lists where BM25 orders all of them (a stricter, hypothetical filter), to tell whether a
lexical scorer could pick the lists whose middle levels the encoder can separate.

`--against OTHER`: both list sets restricted to the queries they share (in LISTS' order), audited
alike, with how often BM25 orders each adjacent pair in each: two strategies on the same queries.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

from listrank.audit import level_audit, load_lists
from listrank.encoder import Encoder
from listrank.gen.filters import FILTERS, ListFilter, bm25_scores, level_means


def _row(name: str, lists: list, total: int, encoder) -> dict:
    res = level_audit(lists, encoder, name=name)
    shares = {p.label: p.query_share for p in res.pairs}
    return {"lists": name, "kept": len(lists), "kept_share": len(lists) / total, "pairs": shares,
            "concordance": res.concordance, "ndcg@10": res.ndcg10}


def _bm25_orders_adjacent(sl) -> dict[str, bool]:
    m = level_means(sl, bm25_scores(sl.query, [p.text for p in sl.passages]))
    levels = sorted(m, reverse=True)
    return {f"{a}>{b}": m[a] > m[b] for a, b in zip(levels, levels[1:])}


def read_lists(path: Path) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        if path.suffix == ".gz":  # load_lists reads plain JSONL
            plain = Path(tmp) / path.stem
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
            path = plain
        return load_lists(path).lists


def _compare(args, lists: list, other: list, encoder) -> None:
    by_id = {sl.query_id: sl for sl in other}
    common = [sl.query_id for sl in lists if sl.query_id in by_id]
    if not common:
        raise SystemExit(f"{args.lists} and {args.against} share no query id")
    rows = []
    for path, chosen in ((args.lists, [sl for sl in lists if sl.query_id in by_id]),
                         (args.against, [by_id[q] for q in common])):
        row = _row(path.name, chosen, len(common), encoder)
        orders = [_bm25_orders_adjacent(sl) for sl in chosen]
        row["bm25_orders"] = {k: sum(o.get(k, False) for o in orders) / len(orders) for k in orders[0]}
        rows.append(row)
    print(f"{len(common)} common queries\n")
    labels = list(rows[0]["pairs"])
    print("| lists | " + " | ".join(labels) + " | concordance | BM25 orders " + " / ".join(rows[0]["bm25_orders"]) + " |")
    print("|---|" + "---|" * len(labels) + "---|---|")
    for r in rows:
        print(f"| {r['lists']} | " + " | ".join(f"{r['pairs'].get(k, float('nan')):.1%}" for k in labels)
              + f" | {r['concordance']:.3f} | " + " / ".join(f"{v:.1%}" for v in r["bm25_orders"].values()) + " |")
    write_json(args.output, {"lists": str(args.lists), "against": str(args.against), "n": len(common), "rows": rows})


def write_json(path: Path | None, obj: dict) -> None:
    if path:
        tmp_out = path.with_suffix(".tmp")
        tmp_out.write_text(json.dumps(obj, indent=1))
        os.replace(tmp_out, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lists", type=Path, help="a `listrank gen` JSONL file (or .gz)")
    ap.add_argument("--first", type=int, default=None, help="only the first N lists (the docs' audits use 200)")
    ap.add_argument("-o", "--output", type=Path, default=None, help="write the table as JSON here")
    ap.add_argument("--against", type=Path, default=None, help="another gen JSONL: audit both on their common queries")
    args = ap.parse_args()

    lists = read_lists(args.lists)
    if args.first:
        lists = lists[: args.first]
    encoder = Encoder(max_length=256)
    if args.against:
        _compare(args, lists, read_lists(args.against), encoder)
        return
    total = len(lists)
    rows = [_row("all", lists, total, encoder)]
    for name in FILTERS:
        rejected = ListFilter(name).check(lists)
        rows.append(_row(f"--filter {name}", [sl for sl in lists if sl.query_id not in rejected], total, encoder))
    orders = [_bm25_orders_adjacent(sl) for sl in lists]
    bm25_pairs = {k: sum(o.get(k, False) for o in orders) / total for k in orders[0]}
    strict = [sl for sl, o in zip(lists, orders) if all(o.values())]
    rows.append(_row("bm25 orders every adjacent pair (hypothetical)", strict, total, encoder))

    print(f"{args.lists.name}: {total} lists; BM25 orders the adjacent pairs in "
          + ", ".join(f"{k} {v:.1%}" for k, v in bm25_pairs.items()) + " of the lists\n")
    labels = list(rows[0]["pairs"])
    print("| lists | kept | " + " | ".join(labels) + " | concordance |")
    print("|---|---|" + "---|" * len(labels) + "---|")
    for r in rows:
        print(f"| {r['lists']} | {r['kept']} ({r['kept_share']:.1%}) | "
              + " | ".join(f"{r['pairs'].get(k, float('nan')):.1%}" for k in labels) + f" | {r['concordance']:.3f} |")
    write_json(args.output, {"lists": str(args.lists), "n": total, "bm25_orders": bm25_pairs, "rows": rows})


if __name__ == "__main__":
    main()
