"""Dense encoding, indexing and search with the bundled all-MiniLM-L6-v2 on a slice of SciFact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from listrank.encoder import Encoder, default_model_path
from listrank.errors import ListrankError
from listrank.index import DenseIndex, build_dense_index, index_matches, corpus_fingerprint
from listrank.search import search


@pytest.fixture(scope="module")
def scifact_slice(data_root):
    from listrank.datasets import resolve

    ds = resolve("beir/scifact", data_dir=data_root)
    qrels = ds.qrels("test")
    queries = ds.queries("test")[:8]
    relevant = {d for q in queries for d in qrels[q.id]}
    docs = [d for d in ds.corpus if d.id in relevant] + [d for d in ds.corpus[:40] if d.id not in relevant]
    return docs, queries, qrels


def test_bundled_model_settings_come_from_its_sentence_transformers_files(encoder):
    assert encoder.pooling == "mean" and encoder.normalize is True
    emb = encoder.encode(["a short text", "another one, a bit longer than the first"])
    assert emb.shape == (2, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)


def test_encode_keeps_input_order_despite_length_sorting(encoder):
    texts = ["tiny", "a much longer text about proteins and cells " * 5, "medium length text here"]
    together = encoder.encode(texts, batch_size=2)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=2e-2)  # bf16 may differ slightly with padding
    assert together[0] @ alone[0] > together[0] @ alone[1]


def test_matches_sentence_transformers(data_root):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = ["Vitamin D deficiency and bone health", "BM25 is a lexical ranking function", "x"]
    ours = Encoder(max_length=256, precision="fp32").encode(texts)
    st = sentence_transformers.SentenceTransformer(str(default_model_path()), device="cpu")
    st.max_seq_length = 256
    theirs = st.encode(texts, convert_to_numpy=True)
    assert np.allclose(ours, theirs, atol=1e-5)


def test_index_and_search(tmp_path, encoder, scifact_slice):
    docs, queries, qrels = scifact_slice
    index_dir = build_dense_index(encoder, docs, tmp_path / "idx", show_progress=False, dataset="slice")
    meta = json.loads((index_dir / "meta.json").read_text())
    assert meta["kind"] == "dense" and meta["n_docs"] == len(docs) and meta["dim"] == 384
    assert meta["encoder"]["pooling"] == "mean" and meta["encoder"]["normalize"] is True
    assert meta["encoder"]["max_length"] == 128 and len(meta["encoder"]["weights_sha256"]) == 64
    assert index_matches(index_dir, "dense", corpus_fingerprint(docs), encoder.spec())
    assert not index_matches(index_dir, "dense", corpus_fingerprint(docs[1:]), encoder.spec())
    run = search(index_dir, queries, k=5, encoder=encoder, show_progress=False)
    assert set(run) == {q.id for q in queries} and all(len(h) == 5 for h in run.values())
    # On this easy slice most queries find a judged document at rank 1.
    top1 = [max(hits, key=hits.get) in qrels[qid] for qid, hits in run.items()]
    assert sum(top1) >= 5
    # A document's own text retrieves it first.
    from listrank.formats import Query

    self_run = search(index_dir, [Query("x", docs[3].full_text())], k=1, encoder=encoder, show_progress=False)
    assert list(self_run["x"]) == [docs[3].id]


def test_search_reads_the_encoder_from_the_index(tmp_path, encoder, scifact_slice):
    docs, queries, _ = scifact_slice
    index_dir = build_dense_index(encoder, docs[:10], tmp_path / "idx", show_progress=False)
    run = search(index_dir, queries[:2], k=3, show_progress=False)  # no encoder given
    assert all(len(h) == 3 for h in run.values())


def test_search_encodes_queries_in_the_index_precision(tmp_path, scifact_slice):
    docs, queries, _ = scifact_slice
    fp32 = Encoder(max_length=128, precision="fp32")
    index_dir = build_dense_index(fp32, docs[:10], tmp_path / "idx", show_progress=False)
    run = search(index_dir, queries[:2], k=10, show_progress=False)  # the encoder comes from the index
    expected = fp32.encode([q.text for q in queries[:2]]) @ DenseIndex.open(index_dir).embeddings.T
    for row, query in zip(expected, queries[:2]):
        got = run[query.id]
        ids = DenseIndex.open(index_dir).docids
        np.testing.assert_allclose([got[d] for d in ids], row, rtol=1e-5, atol=1e-6)


def test_search_with_another_model_is_an_error(tmp_path, encoder, scifact_slice, other_model):
    docs, queries, _ = scifact_slice
    index_dir = build_dense_index(encoder, docs[:10], tmp_path / "idx", show_progress=False)
    with pytest.raises(ListrankError, match="max_length differ"):
        search(index_dir, queries[:1], encoder=Encoder(max_length=64), show_progress=False)
    # Same architecture, different weights: the weights hash tells them apart.
    with pytest.raises(ListrankError, match="weights_sha256 differ"):
        search(index_dir, queries[:1], encoder=Encoder(other_model, max_length=128), show_progress=False)


def test_empty_corpus_and_bad_k(tmp_path, encoder, scifact_slice):
    docs, queries, _ = scifact_slice
    with pytest.raises(ListrankError, match="empty corpus"):
        build_dense_index(encoder, [], tmp_path / "idx")
    index_dir = build_dense_index(encoder, docs[:3], tmp_path / "idx", show_progress=False)
    with pytest.raises(ListrankError, match="-k must be at least 1"):
        search(index_dir, queries[:1], k=0, encoder=encoder)
    with pytest.raises(ListrankError, match="not a listrank index"):
        search(tmp_path, queries[:1])


def test_bf16_autocast_follows_hardware_and_flag():
    from listrank.encoder import bf16_supported

    assert Encoder(precision="fp32").use_bf16 is False
    assert Encoder(precision="auto").use_bf16 is bf16_supported(torch.device("cpu"))
    with pytest.raises(ListrankError, match="unknown precision"):
        Encoder(precision="fp8")
