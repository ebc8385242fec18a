"""Dataset ids resolve to BEIR folders; BEIR zips download (from a loopback server) and verify."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import threading
import zipfile

import pytest

from listrank import datasets
from listrank.datasets import resolve
from listrank.errors import ListrankError


def test_resolves_id_from_env_and_reads_splits(data_root, monkeypatch):
    monkeypatch.setenv("LISTRANK_DATA", str(data_root))
    ds = resolve("beir/scifact")
    assert ds.root == data_root / "beir" / "scifact"
    assert ds.splits() == ["test", "train"] and ds.default_split() == "test"
    assert len(ds.queries("test")) == 300 and len(ds.queries("train")) == 809
    assert len(ds.corpus) == 5183


def test_data_dir_beats_env(tmp_path, data_root, monkeypatch):
    fake = tmp_path / "beir" / "scifact"
    (fake / "qrels").mkdir(parents=True)
    (fake / "queries.jsonl").write_text('{"_id": "1", "text": "q"}\n')
    (fake / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td\t1\n")
    monkeypatch.setenv("LISTRANK_DATA", str(data_root))
    assert resolve("beir/scifact", data_dir=tmp_path).root == fake


def test_queries_skip_invalid_lines_and_count_them(tmp_path):
    from listrank.formats import FormatError, ReadStats

    root = tmp_path / "ds"
    (root / "qrels").mkdir(parents=True)
    (root / "queries.jsonl").write_text('{"_id": "1", "text": "q one"}\nnot json\n{"_id": "2", "text": "q two"}\n')
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n2\td\t1\n")
    ds = resolve(str(root))
    with pytest.raises(FormatError, match="queries.jsonl:2"):
        ds.queries()
    stats = ReadStats()
    assert [q.id for q in ds.queries(skip_invalid=True, stats=stats)] == ["1", "2"]
    assert (stats.read, stats.skipped) == (2, 1)
    assert [q.id for q in ds.queries("test", skip_invalid=True)] == ["2"]


def test_judgements_from_a_split_or_a_qrels_file(tmp_path):
    root = tmp_path / "ds"
    (root / "qrels").mkdir(parents=True)
    (root / "queries.jsonl").write_text('{"_id": "1", "text": "q"}\n')
    for split in ("dev", "test"):
        (root / "qrels" / f"{split}.tsv").write_text(f"query-id\tcorpus-id\tscore\n1\t{split}\t2\n")
    ds = resolve(str(root))
    assert ds.judgements() == ({"1": {"test": 2}}, "test", f"{root}/test")
    assert ds.judgements("dev") == ({"1": {"dev": 2}}, "dev", f"{root}/dev")
    own = tmp_path / "own.tsv"
    own.write_text("1\tx\t1\n")
    assert ds.judgements(None, own) == ({"1": {"x": 1}}, None, str(own))


def test_judged_lists_pair_queries_with_their_graded_documents():
    from listrank.datasets import judged_lists
    from listrank.formats import Document, Query

    corpus = [Document("d1", "", "one"), Document("d2", "", "two")]
    queries = [Query("q1", "first"), Query("q2", "second")]
    found = judged_lists(corpus, queries, {"q2": {"d2": 3, "gone": 1}, "q1": {"d1": 0}, "q9": {"d1": 2}})
    assert [(q.id, [(d.id, g) for d, g in p]) for q, p in found.lists] == [("q2", [("d2", 3)]), ("q1", [("d1", 0)])]
    assert (found.missing_queries, found.missing_docs) == (["q9"], 1)


def test_path_and_queries_file(data_root):
    assert resolve(str(data_root / "msmarco" / "dl19-pool")).splits() == ["test"]
    ds = resolve(str(data_root / "msmarco" / "train-sample" / "queries.tsv"))
    assert len(ds.queries()) == 2000
    with pytest.raises(ListrankError, match="has no corpus.jsonl"):
        ds.corpus_file


def test_missing_split_is_clear(data_root):
    ds = resolve("beir/scifact", data_dir=data_root)
    with pytest.raises(ListrankError, match=r"has no split 'dev' \(qrels splits here: test, train\)"):
        ds.qrels("dev")


def test_unknown_dataset_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTRANK_DATA", str(tmp_path))
    with pytest.raises(ListrankError) as err:
        resolve("msmarco/nope")
    message = str(err.value)
    assert "not found" in message and str(tmp_path / "msmarco" / "nope") in message and "LISTRANK_DATA" in message
    with pytest.raises(ListrankError, match="not a file, not a BEIR folder"):
        resolve("no-such-thing")


def _beir_zip(name: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{name}/corpus.jsonl", '{"_id": "d1", "title": "", "text": "hello"}\n')
        zf.writestr(f"{name}/queries.jsonl", '{"_id": "q1", "text": "hi"}\n')
        zf.writestr(f"{name}/qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return buf.getvalue()


@pytest.fixture
def beir_server(tmp_path):
    """A loopback HTTP server for zips in tmp_path/www (the real BEIR host is unreachable here)."""
    www = tmp_path / "www"
    www.mkdir()
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/{{name}}.zip"
    server.shutdown()
    server.server_close()


def test_download_verifies_md5_and_unpacks_atomically(beir_server, tmp_path, monkeypatch):
    www, url = beir_server
    blob = _beir_zip("scifact")
    (www / "scifact.zip").write_bytes(blob)
    monkeypatch.setenv("LISTRANK_BEIR_URL", url)
    monkeypatch.setenv("LISTRANK_DATA", str(tmp_path / "empty"))
    monkeypatch.setitem(datasets.BEIR_MD5, "scifact", hashlib.md5(blob).hexdigest())
    ds = resolve("beir/scifact")
    assert ds.root == datasets.cache_dir() / "datasets" / "beir" / "scifact"
    assert ds.qrels("test") == {"q1": {"d1": 1}} and ds.corpus[0].text == "hello"
    assert [p.name for p in ds.root.parent.iterdir()] == ["scifact"]  # no temporary leftovers
    # Second resolution uses the cache: the server no longer has the file.
    (www / "scifact.zip").unlink()
    assert resolve("beir/scifact").root == ds.root


def test_download_with_wrong_checksum_leaves_nothing(beir_server, tmp_path, monkeypatch):
    www, url = beir_server
    (www / "nfcorpus.zip").write_bytes(_beir_zip("nfcorpus"))
    monkeypatch.setenv("LISTRANK_BEIR_URL", url)
    monkeypatch.setenv("LISTRANK_DATA", str(tmp_path / "empty"))
    with pytest.raises(ListrankError, match=r"corrupt: md5 .* != published a89dba18a62ef92f7d323ec890a0d38d"):
        resolve("beir/nfcorpus")
    cache = datasets.cache_dir() / "datasets" / "beir"
    assert not any(cache.iterdir())


def test_download_unreachable_and_not_a_zip(beir_server, tmp_path, monkeypatch):
    www, url = beir_server
    monkeypatch.setenv("LISTRANK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("LISTRANK_BEIR_URL", url)
    with pytest.raises(ListrankError, match=r"could not download .*fiqa\.zip.*LISTRANK_DATA"):
        resolve("beir/fiqa")
    (www / "arguana.zip").write_bytes(b"not a zip at all")
    monkeypatch.setitem(datasets.BEIR_MD5, "arguana", hashlib.md5(b"not a zip at all").hexdigest())
    with pytest.raises(ListrankError, match="is not a zip file"):
        resolve("beir/arguana")


def test_zip_slip_is_refused(beir_server, tmp_path, monkeypatch):
    www, url = beir_server
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../evil.txt", "x")
    (www / "quora.zip").write_bytes(buf.getvalue())
    monkeypatch.setitem(datasets.BEIR_MD5, "quora", hashlib.md5(buf.getvalue()).hexdigest())
    monkeypatch.setenv("LISTRANK_BEIR_URL", url)
    monkeypatch.setenv("LISTRANK_DATA", str(tmp_path / "empty"))
    with pytest.raises(ListrankError, match="outside the target folder"):
        resolve("beir/quora")
    assert not (tmp_path / "evil.txt").exists()
