"""listrank.retrieval: one seam for every index kind; exact flat search against faiss; HNSW and
IVF-PQ recall; shards (in-process, `index merge`, torchrun with 2 gloo processes) against one
process; fp16 memory-mapped embeddings; the registry. Real SciFact text where encoding is cheap,
seeded synthetic vectors where a test needs thousands of rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import expect_user_error, invoke
from listrank.errors import ListrankError
from listrank.retrieval import (
    available, build_index, corpus_fingerprint, index_class, index_is_current, open_index, read_meta,
    read_meta_or_none, register,
)
from listrank.retrieval.dense import DenseIndex, exact_topk
from listrank.retrieval.flat import FlatIndex
from listrank.retrieval.sharded import ShardedIndex, merge
from listrank.search import search


@pytest.fixture(scope="module")
def fp32():
    from listrank.encoder import Encoder

    return Encoder(max_length=64, precision="fp32")


@pytest.fixture(scope="module")
def scifact_small(data_root):
    from listrank.datasets import resolve

    ds = resolve("beir/scifact", data_dir=data_root)
    qrels = ds.qrels("test")
    queries = ds.queries("test")[:6]
    relevant = {d for q in queries for d in qrels[q.id]}
    docs = [d for d in ds.corpus if d.id in relevant] + [d for d in ds.corpus[:53] if d.id not in relevant]
    return docs, queries


def clustered(n: int, dim: int = 64, nq: int = 50, seed: int = 0):
    """Unit vectors around 100 random centres (text embeddings are clustered, unlike uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((100, dim)).astype(np.float32)
    x = centres[rng.integers(0, 100, n)] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
    q = centres[rng.integers(0, 100, nq)] + 0.7 * rng.standard_normal((nq, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def write_kind(kind, path, emb, encoder, params=None, dtype="float32"):
    meta = {"encoder": encoder.spec().to_json(), "corpus": "synthetic", "n_docs": len(emb), "dim": emb.shape[1],
            "precision": "fp32", "dtype": dtype, "params": params or {}}
    return index_class(kind).write(path, emb, [f"d{i}" for i in range(len(emb))], meta)


def assert_same_ranking(s1, r1, s2, r2, tol=1e-5):
    """Equal rankings up to float rounding: scores agree to `tol`, and ids differ only where two
    documents' scores are that close (BLAS rounds a dot product by the shape of the product)."""
    assert s1.shape == s2.shape and np.allclose(s1, s2, atol=tol)
    differ = r1 != r2
    assert differ.mean() < 0.01
    for i, j in zip(*np.nonzero(differ)):
        near = np.abs(s1[i] - s1[i, j]) <= 2 * tol
        assert set(r1[i][near]) & {r2[i, j]} or abs(s2[i, j] - s1[i, j]) <= 2 * tol


def recall(run_rows: np.ndarray, truth_rows: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(run_rows, truth_rows)]))


# --- exact search --------------------------------------------------------------------------------

def test_exact_topk_equals_faiss_flat_and_ignores_blocking():
    import faiss

    rng = np.random.default_rng(1)
    x = rng.standard_normal((3000, 48), dtype=np.float32)
    q = rng.standard_normal((40, 48), dtype=np.float32)
    raw = faiss.IndexFlatIP(48)
    raw.add(x)
    for k in (1, 10, 100, 1000):
        ref_s, ref_r = raw.search(q, k)
        s, r = exact_topk(q, x, k)
        s7, r7 = exact_topk(q, x, k, doc_block=7)  # 429 blocks, each partially selected and merged
        assert s.shape == r.shape == (40, k)
        assert_same_ranking(s, r, ref_s, ref_r)
        assert_same_ranking(s, r, s7, r7, tol=1e-6)
    assert exact_topk(q, x[:5], 10)[0].shape == (40, 5)  # k above n: every row


def test_flat_index_build_search_and_meta(tmp_path, fp32, scifact_small):
    docs, queries = scifact_small
    out = build_index("flat", docs, tmp_path / "idx", encoder=fp32, show_progress=False, dataset="slice")
    meta = read_meta(out)
    assert (meta["kind"], meta["index"], meta["dtype"], meta["n_docs"]) == ("dense", "flat", "float32", len(docs))
    assert meta["corpus"] == corpus_fingerprint(docs)
    idx = open_index(out)
    assert isinstance(idx, FlatIndex) and isinstance(idx.embeddings, np.memmap)
    run = search(out, queries, 10, encoder=fp32, show_progress=False)
    q = fp32.encode([x.text for x in queries])
    full = q @ np.asarray(idx.embeddings).T
    for i, qry in enumerate(queries):
        top = [idx.docids[j] for j in np.argsort(-full[i], kind="stable")[:10]]
        assert list(run[qry.id]) == top
    assert index_is_current(out, "flat", docs, fp32) and index_is_current(out, "dense", docs, fp32)
    assert not index_is_current(out, "flat", docs[1:], fp32)
    assert not index_is_current(out, "hnsw", docs, fp32)
    assert read_meta_or_none(tmp_path / "none") is None
    with pytest.raises(ListrankError, match="not a listrank index"):
        read_meta(tmp_path / "none")


def test_fp16_embeddings_are_memory_mapped_and_rank_alike(tmp_path, fp32, scifact_small):
    docs, queries = scifact_small
    f32 = build_index("flat", docs, tmp_path / "f32", encoder=fp32, show_progress=False)
    f16 = build_index("flat", docs, tmp_path / "f16", encoder=fp32, show_progress=False, dtype="float16")
    e16 = open_index(f16).embeddings
    assert isinstance(e16, np.memmap) and e16.dtype == np.float16
    assert (f16 / "embeddings.npy").stat().st_size < 0.6 * (f32 / "embeddings.npy").stat().st_size
    a = search(f32, queries, 10, encoder=fp32, show_progress=False)
    b = search(f16, queries, 10, encoder=fp32, show_progress=False)
    for qid in a:
        assert list(a[qid])[:3] == list(b[qid])[:3]
        assert np.allclose([a[qid][d] for d in a[qid] if d in b[qid]], [b[qid][d] for d in a[qid] if d in b[qid]],
                           atol=2e-3)
    with pytest.raises(ListrankError, match="dtype"):
        build_index("flat", docs, tmp_path / "bad", encoder=fp32, dtype="int8")


# --- approximate kinds ------------------------------------------------------------------------------

def test_hnsw_and_ivfpq_recall_against_flat(tmp_path, encoder):
    x, q = clustered(8_000)
    flat = write_kind("flat", tmp_path / "flat", x, encoder)
    truth = open_index(flat).search_embeddings(q, 100)[1]
    hnsw = open_index(write_kind("hnsw", tmp_path / "hnsw", x, encoder))
    assert hnsw.params == {"m": 32, "ef_construction": 200, "ef_search": 256}
    assert recall(hnsw.search_embeddings(q, 100)[1], truth) >= 0.95
    low = recall(hnsw.search_embeddings(q, 100, {"ef_search": 1})[1], truth)  # ef raised to k: still decent
    assert low >= 0.8
    ivf = open_index(write_kind("ivfpq", tmp_path / "ivf", x, encoder))
    assert (ivf.path / "faiss.index").exists()
    with_rerank = recall(ivf.search_embeddings(q, 100)[1], truth)
    pq_only = recall(ivf.search_embeddings(q, 100, {"rerank": 0})[1], truth)
    one_cell = recall(ivf.search_embeddings(q, 100, {"nprobe": 1, "rerank": 0})[1], truth)
    assert with_rerank >= 0.9 and with_rerank > pq_only > one_cell
    s, r = ivf.search_embeddings(q, 100)
    exact = np.einsum("qd,qkd->qk", q, x[r])  # reranked scores are exact inner products
    assert np.allclose(s, exact, atol=1e-5)
    run = ivf.rank([f"q{i}" for i in range(len(q))], q, 5)
    assert all(len(h) == 5 for h in run.values())


def test_params_are_checked(tmp_path, encoder):
    x, _ = clustered(500)
    with pytest.raises(ListrankError, match="unknown"):
        write_kind("hnsw", tmp_path / "h", x, encoder, params={"nprobe": 3})
    with pytest.raises(ListrankError, match="expected int"):
        index_class("hnsw").resolve_params({"m": "many"})
    with pytest.raises(ListrankError, match="at least"):
        write_kind("ivfpq", tmp_path / "i", x[:100], encoder, params={"nlist": 64})
    with pytest.raises(ListrankError, match="unknown index kind"):
        index_class("annoy")
    assert available() == ["flat", "hnsw", "ivfpq", "bm25"]


# --- shards -----------------------------------------------------------------------------------------

def test_shards_merge_to_the_one_process_index(tmp_path, fp32, scifact_small):
    docs, queries = scifact_small
    whole = build_index("flat", docs, tmp_path / "whole", encoder=fp32, show_progress=False)
    parts = [build_index("flat", docs, tmp_path / f"part{i}", encoder=fp32, show_progress=False, shard=(i, 3))
             for i in (2, 0, 1)]
    assert sum(read_meta(p)["n_docs"] for p in parts) == len(docs)
    flat = merge(parts, tmp_path / "flat", kind="flat")
    sharded = merge(parts, tmp_path / "sharded")
    w, f, s = (open_index(p) for p in (whole, flat, sharded))
    assert isinstance(s, ShardedIndex) and len(s.shards) == 3 and not (tmp_path / "sharded" / "embeddings.npy").exists()
    assert w.docids == f.docids == s.docids
    assert np.allclose(w.embeddings, f.embeddings, atol=1e-5)  # other batches, other padding: rounding only
    assert read_meta(flat)["corpus"] == read_meta(sharded)["corpus"] == corpus_fingerprint(docs)
    runs = [search(p, queries, 20, encoder=fp32, show_progress=False) for p in (whole, flat, sharded)]
    for qid in runs[0]:
        assert list(runs[0][qid]) == list(runs[1][qid]) == list(runs[2][qid])
        assert np.allclose(list(runs[0][qid].values()), list(runs[2][qid].values()), atol=1e-5)
        assert runs[1][qid] == pytest.approx(runs[2][qid], abs=1e-6)  # same embeddings: same scores
    s.check_corpus(docs, "slice")
    with pytest.raises(ListrankError, match="not built from the corpus"):
        open_index(parts[0]).check_corpus(docs, "slice")  # one shard alone is not the corpus
    hnsw = open_index(merge(parts, tmp_path / "hnsw", kind="hnsw", params={"m": 8}))
    assert hnsw.params["m"] == 8 and hnsw.docids == w.docids


def test_search_merge_joins_the_runs_of_shards_into_the_corpus_run(tmp_path, fp32, scifact_small):
    """Cross-machine search: each shard searched alone (as on the machine that holds it), then
    `search merge`: the exact top-k of the whole corpus, and parts that do not belong together refused."""
    from listrank.formats import read_run, write_queries, write_run
    from listrank.search import SearchOptions, merge_runs, part_meta_path, run_search

    docs, queries = scifact_small
    qfile = tmp_path / "q.jsonl"
    write_queries(qfile, queries)
    shards = [build_index("flat", docs, tmp_path / f"shard{i}", encoder=fp32, show_progress=False, shard=(i, 3))
              for i in range(3)]
    whole = build_index("flat", docs, tmp_path / "whole", encoder=fp32, show_progress=False)
    parts = [tmp_path / f"part{i}.run.jsonl" for i in range(3)]
    for shard, part in zip(shards, parts):
        run_search(shard, SearchOptions(queries=qfile, output=part, k=20))
    run_search(merge(shards, tmp_path / "sharded"), SearchOptions(queries=qfile, output=tmp_path / "s.run.jsonl", k=20))
    run_search(whole, SearchOptions(queries=qfile, output=tmp_path / "w.run.jsonl", k=20))
    sharded, one = read_run(tmp_path / "s.run.jsonl"), read_run(tmp_path / "w.run.jsonl")

    merged, shared = merge_runs(parts[::-1])  # any order of the parts
    assert shared["k"] == 20 and shared["shard"]["count"] == 3 and set(merged) == {q.id for q in queries}
    write_run(tmp_path / "m.run.jsonl", merged)
    assert read_run(tmp_path / "m.run.jsonl") == sharded  # the same embeddings: the same run, to the written digit
    for qid in one:  # the one-process index (other batches, other padding): the same ranking
        assert list(one[qid]) == list(merged[qid])
        assert list(one[qid].values()) == pytest.approx(list(merged[qid].values()), abs=1e-5)
    top5, _ = merge_runs(parts, k=5)
    assert {q: list(h) for q, h in top5.items()} == {q: list(h)[:5] for q, h in merged.items()}
    with pytest.raises(ListrankError, match="needs shards searched with -k 21"):
        merge_runs(parts, k=21)

    # parts that do not belong together
    with pytest.raises(ListrankError, match=r"expected the runs of shards 0..2 of 3 once each, got \[0, 0, 1\]"):
        merge_runs([parts[0], parts[0], parts[1]])
    fewer = tmp_path / "q2.jsonl"
    write_queries(fewer, queries[:3])
    other = tmp_path / "other2.run.jsonl"
    run_search(shards[2], SearchOptions(queries=fewer, output=other, k=20))
    with pytest.raises(ListrankError, match="other queries"):
        merge_runs([parts[0], parts[1], other])
    deeper = tmp_path / "deeper2.run.jsonl"
    run_search(shards[2], SearchOptions(queries=qfile, output=deeper, k=30))
    with pytest.raises(ListrankError, match="another -k"):
        merge_runs([parts[0], parts[1], deeper])
    text = parts[1].read_text()
    parts[1].write_text(text.replace('"score": 0.', '"score": 0.9', 1))
    with pytest.raises(ListrankError, match="changed after `listrank search` wrote it"):
        merge_runs(parts)
    parts[1].write_text(text)
    assert merge_runs(parts)[0] == merged

    # the record beside a run: never over a file listrank did not write; dropped when the run is no shard's
    foreign = tmp_path / "mine.run.jsonl"
    part_meta_path(foreign).write_text('{"my": "notes"}')
    with pytest.raises(ListrankError, match="was not written by `listrank search`"):
        run_search(shards[0], SearchOptions(queries=qfile, output=foreign, k=20))
    assert part_meta_path(foreign).read_text() == '{"my": "notes"}' and not foreign.exists()
    run_search(whole, SearchOptions(queries=qfile, output=parts[0], k=20))  # the whole corpus into a part's file
    assert not part_meta_path(parts[0]).exists()
    with pytest.raises(ListrankError, match="only runs that `listrank search` wrote from one shard"):
        merge_runs(parts)


def test_sharded_search_equals_flat_on_many_rows(tmp_path, encoder):
    x, q = clustered(12_000, seed=3)
    bounds = [0, 2500, 7000, 12_000]
    spec = encoder.spec().to_json()
    parts = []
    for i in range(3):
        lo, hi = bounds[i], bounds[i + 1]
        meta = {"encoder": spec, "corpus": f"part{i}", "n_docs": hi - lo, "dim": 64, "precision": "fp32",
                "shard": {"index": i, "count": 3, "start": lo, "stop": hi, "corpus": "all", "n_docs_total": 12_000}}
        parts.append(FlatIndex.write(tmp_path / f"p{i}", x[lo:hi], [f"d{j}" for j in range(lo, hi)], meta))
    sharded = open_index(merge(parts, tmp_path / "sharded"))
    flat = open_index(write_kind("flat", tmp_path / "flat", x, encoder))
    for k in (1, 100, 1000):
        ss, sr = sharded.search_embeddings(q, k)
        fs, fr = flat.search_embeddings(q, k)
        assert_same_ranking(ss, sr, fs, fr, tol=1e-6)


def test_merge_refuses_what_is_not_one_corpus(tmp_path, encoder):
    x, _ = clustered(300, seed=4)
    spec = encoder.spec().to_json()

    def part(name, i, n, lo, hi, corpus="all", total=300):
        meta = {"encoder": spec, "corpus": name, "n_docs": hi - lo, "dim": 64, "precision": "fp32",
                "shard": {"index": i, "count": n, "start": lo, "stop": hi, "corpus": corpus, "n_docs_total": total}}
        return FlatIndex.write(tmp_path / name, x[lo:hi], [f"d{j}" for j in range(lo, hi)], meta)

    a, b = part("a", 0, 2, 0, 150), part("b", 1, 2, 150, 300)
    with pytest.raises(ListrankError, match="expected shards 0..1"):
        merge([a], tmp_path / "m")
    with pytest.raises(ListrankError, match="expected shards"):
        merge([a, a], tmp_path / "m")
    with pytest.raises(ListrankError, match="another corpus"):
        merge([a, part("c", 1, 2, 150, 300, corpus="other")], tmp_path / "m")
    whole = write_kind("flat", tmp_path / "whole", x, encoder)
    with pytest.raises(ListrankError, match="not a shard"):
        merge([a, whole], tmp_path / "m")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ListrankError, match="not written by listrank"):
        merge([a, b], foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
    expect_user_error(invoke("index", "merge", a, "-o", tmp_path / "m"), "expected shards 0..1")
    expect_user_error(invoke("index", "merge", a, b, "-o", tmp_path / "m", "--dataset", "x"), "do not apply")
    assert invoke("index", "merge", a, b, "-o", tmp_path / "m").exit_code == 0
    assert open_index(tmp_path / "m").docids == [f"d{j}" for j in range(300)]


# --- CLI ---------------------------------------------------------------------------------------------

def test_cli_kinds_params_and_errors(tmp_path, make_scifact_folder):
    ds = make_scifact_folder(tmp_path / "ds", n_queries=4, n_docs=30)
    common = ("--max-length", 32, "--precision", "fp32")
    expect_user_error(invoke("index", "--dataset", ds, "-o", tmp_path / "x", "--kind", "annoy"), "unknown --kind")
    expect_user_error(invoke("index", "--dataset", ds, "-o", tmp_path / "x", "--kind", "hnsw", "--param", "nprobe=2"),
                      "parameter 'nprobe' is unknown")
    expect_user_error(invoke("index", "--dataset", ds, "-o", tmp_path / "x", "--param", "m"), "KEY=VALUE")
    expect_user_error(invoke("index", "--dataset", ds, "-o", tmp_path / "x", "--bm25", "--kind", "hnsw"), "disagree")
    expect_user_error(invoke("index", "--dataset", ds, "-o", tmp_path / "x", "--shard", "2/2"), "0 <= i < n")
    expect_user_error(invoke("index", "-o", tmp_path / "x"), "give --dataset")
    assert invoke("index", "--dataset", ds, "-o", tmp_path / "h", "--kind", "hnsw", "--param", "m=8",
                  "--dtype", "float16", *common).exit_code == 0
    meta = read_meta(tmp_path / "h")
    assert (meta["index"], meta["params"]["m"], meta["dtype"]) == ("hnsw", 8, "float16")
    run = tmp_path / "h.run.jsonl"
    assert invoke("search", tmp_path / "h", "--dataset", ds, "-o", run, "--param", "ef_search=16").exit_code == 0
    assert len(run.read_text().splitlines()) == 4
    expect_user_error(invoke("search", tmp_path / "h", "--dataset", ds, "-o", run, "--param", "m=4"),
                      "search parameter 'm' is unknown")
    for i in (0, 1):
        assert invoke("index", "--dataset", ds, "-o", tmp_path / f"s{i}", "--shard", f"{i}/2", *common).exit_code == 0
    assert invoke("index", "merge", tmp_path / "s0", tmp_path / "s1", "-o", tmp_path / "m").exit_code == 0
    a, b = tmp_path / "m.run.jsonl", tmp_path / "one.run.jsonl"
    assert invoke("index", "--dataset", ds, "-o", tmp_path / "one", *common).exit_code == 0
    assert invoke("search", tmp_path / "m", "--dataset", ds, "-o", a).exit_code == 0
    assert invoke("search", tmp_path / "one", "--dataset", ds, "-o", b).exit_code == 0
    from listrank.formats import read_run

    one, merged = read_run(b), read_run(a)
    assert {q: list(h) for q, h in one.items()} == {q: list(h) for q, h in merged.items()}
    # one shard alone: searchable (on the machine that holds it), recorded as a part, and never scored as the corpus
    parts = [tmp_path / f"s{i}.run.jsonl" for i in (0, 1)]
    for i, part in enumerate(parts):
        res = invoke("search", tmp_path / f"s{i}", "--dataset", ds, "-o", part)
        assert res.exit_code == 0 and "search merge" in res.output, res.output
        assert json.loads(Path(f"{part}.part.json").read_text())["shard"]["index"] == i
    expect_user_error(invoke("eval", parts[0], "--dataset", ds), "is the run of shard 0/2 only")
    joined = tmp_path / "joined.run.jsonl"
    assert invoke("search", "merge", parts[1], parts[0], "-o", joined).exit_code == 0
    assert read_run(joined) == read_run(a)  # the parts' top-k joined: the sharded index's run, scores and all
    assert not Path(f"{joined}.part.json").exists()
    assert invoke("eval", joined, "--dataset", ds).exit_code == 0
    expect_user_error(invoke("search", "merge", parts[0], "-o", joined), "expected the runs of shards 0..1")
    expect_user_error(invoke("search", "merge", parts[0], parts[1], "-o", joined, "-k", 101), "searched with -k 101")
    expect_user_error(invoke("search", "merge", parts[0], parts[1], "-o", joined, "--dataset", ds), "not --dataset")
    expect_user_error(invoke("search", "merge", a, parts[1], "-o", joined), "only runs that `listrank search` wrote")
    expect_user_error(invoke("search", tmp_path / "s0", "extra", "--dataset", ds, "-o", joined), "unexpected argument")
    other = make_scifact_folder(tmp_path / "ds2", n_queries=4, n_docs=31)
    expect_user_error(invoke("search", tmp_path / "s0", "--dataset", other, "-o", tmp_path / "x.run"),
                      "shard 0/2 of another corpus")


def test_eval_with_an_approximate_kind_is_cached_apart(tmp_path, make_scifact_folder):
    ds = make_scifact_folder(tmp_path / "ds", n_queries=4, n_docs=30)
    common = ("--max-length", 32, "--precision", "fp32", "-o")
    flat = invoke("eval", "--dataset", ds, *common, tmp_path / "flat.json")
    hnsw = invoke("eval", "--dataset", ds, "--kind", "hnsw", "--param", "ef_search=64", *common, tmp_path / "h.json")
    assert flat.exit_code == 0 and hnsw.exit_code == 0, flat.output + hnsw.output
    from listrank.evaluate import read_results_json

    (a,), _ = read_results_json(tmp_path / "flat.json")
    (b,), _ = read_results_json(tmp_path / "h.json")
    assert a.aggregate == pytest.approx(b.aggregate, abs=1e-6)  # ~35 documents: ef_search 64 visits them all
    entries = sorted(p.name for p in (tmp_path / "listrank-cache" / "indexes").glob("*/*") if p.is_dir())
    assert len(entries) == 2 and any(e.startswith("hnsw-") for e in entries)
    again = invoke("eval", "--dataset", ds, "--kind", "hnsw", *common, tmp_path / "h2.json")
    assert "reusing index" in again.output
    expect_user_error(invoke("eval", tmp_path / "flat.json", "--dataset", ds, "--kind", "hnsw"), "only apply")


# --- the seam: a new kind is one class --------------------------------------------------------------

def test_a_new_kind_is_one_class(tmp_path, encoder):
    @register("test-negated")
    class Negated(DenseIndex):
        """Ranks by the negated inner product: the worst documents first."""

        def search_embeddings(self, q, k, params=None):
            s, r = exact_topk(-q, self.embeddings, k)
            return s, r

    x, q = clustered(200, seed=5)
    path = Negated.write(tmp_path / "neg", x, [f"d{i}" for i in range(200)],
                         {"encoder": encoder.spec().to_json(), "corpus": "c", "n_docs": 200, "dim": 64,
                          "precision": "fp32"})
    assert read_meta(path)["index"] == "test-negated"
    idx = open_index(path)
    assert isinstance(idx, Negated)
    worst = int(np.argmin(x @ q[0]))
    assert next(iter(idx.rank(["q"], q[:1], 3)["q"])) == f"d{worst}"


# --- torchrun: 2 gloo processes on CPU ---------------------------------------------------------------

@pytest.mark.slow  # ~100 s on the loaded 2-core machine: four model loads in torchrun workers
def test_torchrun_two_processes_write_the_one_process_index(tmp_path, make_scifact_folder):
    ds = make_scifact_folder(tmp_path / "ds", n_queries=4, n_docs=40)
    flags = ["--dataset", str(ds), "--max-length", "32", "--precision", "fp32", "--batch-size", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for kind in ("flat", "sharded"):
        done = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "listrank",
             "index", *flags, "--kind", kind, "-o", str(tmp_path / f"tr-{kind}")],
            env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    assert invoke("index", *flags, "-o", tmp_path / "one").exit_code == 0
    one, flat, sharded = (open_index(tmp_path / n) for n in ("one", "tr-flat", "tr-sharded"))
    assert isinstance(flat, FlatIndex) and isinstance(sharded, ShardedIndex) and len(sharded.shards) == 2
    assert [s.meta["shard"]["index"] for s in sharded.shards] == [0, 1]
    assert one.docids == flat.docids == sharded.docids
    assert np.allclose(one.embeddings, flat.embeddings, atol=1e-5)
    assert np.allclose(one.embeddings, sharded.embeddings, atol=1e-5)
    assert one.meta["corpus"] == flat.meta["corpus"] == sharded.meta["corpus"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # parts cleaned up
    from listrank.datasets import resolve

    queries = resolve(str(ds)).queries("test")
    runs = [search(tmp_path / n, queries, 10, show_progress=False) for n in ("one", "tr-flat", "tr-sharded")]
    for qid in runs[0]:
        assert list(runs[0][qid]) == list(runs[1][qid]) == list(runs[2][qid])
        assert list(runs[0][qid].values()) == pytest.approx(list(runs[2][qid].values()), abs=1e-5)
