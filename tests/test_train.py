"""listrank train: data sampling/padding/skipping, sources and label maps, a short training run,
sentence-transformers compatibility, resume equivalence, non-finite handling, bad records.

Kept cheap: the bundled MiniLM at max length 16, batch 2, a handful of steps, no DataLoader workers
except where worker-independence is the point.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from needs import missing
import torch

from listrank import losses
from listrank.errors import FormatError, ListrankError
from listrank.train.config import SourceConfig, TrainConfig, apply_label_map, build_config, parse_label_map
from listrank.train.data import (
    EpochBatches, Part, Passage, QueryList, TrainData, DataReport, load_sources, sample_group,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
DATA = Path(os.environ.get("LISTRANK_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# Tiny training steps: one torch thread (the `one_thread` fixture in conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_thread")



TOPICS = ["solar panels", "bread baking", "tax returns", "tide pools", "chess openings", "jazz piano",
          "volcano eruptions", "bicycle repair"]


def _write_synth(path: Path, n: int = 8, levels=(3, 2, 1, 0), extra_lines: list[str] | None = None) -> Path:
    lines = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        passages = [{"id": f"q{i}_l_{lv}_d_0", "level": lv,
                     "text": f"{'A precise' if lv == 3 else 'A loose' if lv else 'An unrelated'} note about "
                             f"{topic if lv else 'weather'} at level {lv}."} for lv in levels]
        lines.append(json.dumps({"query_id": f"q{i}", "query": f"how do {topic} work", "passages": passages,
                                 "generator": {}}))
    lines += extra_lines or []
    path.write_text("\n".join(lines) + "\n")
    return path


def _qlist(qid: str, labels: list[int], take: int = 0) -> QueryList:
    return QueryList(qid, f"query {qid}", [Part("s", [Passage(f"{qid}-{k}", f"text {k}", lab)
                                                      for k, lab in enumerate(labels)], take)])


# --- config ------------------------------------------------------------------------------------------

def test_label_map_and_source_spec():
    rules = parse_label_map("0:drop,1-2:1,>=3:3")
    assert [apply_label_map(rules, x) for x in (0, 1, 2, 3, 5)] == [None, 1, 1, 3, 3]
    assert apply_label_map(parse_label_map("*:3"), 0) == 3
    assert apply_label_map([], 2) == 2
    with pytest.raises(ListrankError, match="bad label transform"):
        parse_label_map("zero:1")
    src = SourceConfig.parse("msmarco/dl19-pool split=test labels=0:drop,*:3 mine=dense mine-count=2 take=3")
    assert (src.path, src.split, src.labels, src.mine, src.mine_count, src.take) == (
        "msmarco/dl19-pool", "test", "0:drop,*:3", "dense", 2, 3)
    with pytest.raises(ListrankError, match="bad option"):
        SourceConfig.parse("x.jsonl colour=red")
    with pytest.raises(ListrankError, match="mine="):
        SourceConfig.parse("x.jsonl mine=magic")


def test_preset_then_file_then_flags(tmp_path):
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text("lr: 3.0e-5\ngroup_size: 8\nsources:\n  - {path: a.jsonl, labels: '0:1'}\n")
    cfg = build_config(preset="sycl", config_file=cfg_file,
                       overrides={"output": "o", "group_size": 6, "sources": [SourceConfig("b.jsonl")], "lr": None})
    assert cfg.lr == 3e-5 and cfg.group_size == 6 and cfg.normalize is False and cfg.pooling == "mean"
    assert [s.path for s in cfg.sources] == ["a.jsonl", "b.jsonl"] and cfg.sources[0].labels == "0:1"
    assert cfg.preset == "sycl" and cfg.warmup_ratio == 0.05 and cfg.temperature == 1.0
    with pytest.raises(ListrankError, match="unknown preset"):
        build_config(preset="nope", overrides={"output": "o", "sources": [SourceConfig("b.jsonl")]})
    with pytest.raises(ListrankError, match="group-size"):
        build_config(overrides={"output": "o", "sources": [SourceConfig("b.jsonl")], "group_size": 0})


# --- sampling ----------------------------------------------------------------------------------------

def test_group_sampling_is_random_distinct_and_reproducible():
    ql = _qlist("a", [3, 2, 1, 0, 0, 1, 2])
    g1 = sample_group(ql, 4, seed=1, epoch=0, index=0)
    assert len(g1) == 4 and len({p.id for p in g1}) == 4  # without replacement
    assert sample_group(ql, 4, seed=1, epoch=0, index=0) == g1  # same (seed, epoch, index) -> same group
    groups = {tuple(p.id for p in sample_group(ql, 4, seed=1, epoch=e, index=0)) for e in range(20)}
    assert len(groups) > 10  # a new group each epoch
    orders = {tuple(p.id for p in sample_group(_qlist("b", [3, 2, 1, 0]), 4, seed=1, epoch=e, index=0))
              for e in range(20)}
    assert len(orders) > 5  # random order even when the whole list fits
    take = QueryList("c", "q", [Part("s", [Passage(str(k), "t", 1) for k in range(10)], take=2),
                                Part("t", [Passage("x", "t", 3)])])
    for e in range(5):
        g = sample_group(take, 3, seed=0, epoch=e, index=0)
        assert sorted(p.id for p in g)[-1] == "x" and len(g) == 3


def test_padding_by_repetition_and_skipping_are_counted():
    short = _qlist("s", [3, 0])
    g = sample_group(short, 5, seed=0, epoch=0, index=0)
    assert len(g) == 5 and {p.id for p in g} == {"s-0", "s-1"}
    counts = [sum(p.id == "s-0" for p in g), sum(p.id == "s-1" for p in g)]
    assert sorted(counts) == [2, 3]  # repetition spreads evenly

    def data():
        return TrainData([_qlist("long", [3, 2, 1, 0]), _qlist("short", [3, 0]), _qlist("flat", [1, 1, 1, 1]),
                          QueryList("empty", "q", [Part("s", [])])], DataReport(), [])

    d = data()
    d.prepare("wasserstein", 4, "repeat")
    assert [q.query_id for q in d.lists] == ["long", "short"]
    r = d.report
    assert (r.padded, r.skipped_short, r.skipped_one_label, r.skipped_empty, r.used) == (1, 0, 1, 1, 2)
    assert r.one_label_examples == ["flat"]
    d = data()
    d.prepare("wasserstein", 4, "skip")
    assert [q.query_id for q in d.lists] == ["long"] and d.report.skipped_short == 1
    d = data()
    d.prepare("infonce", 4, "repeat")  # not list-wise: a one-label list still gives negatives
    assert [q.query_id for q in d.lists] == ["long", "short", "flat"]


def test_batches_split_the_global_batch_across_ranks():
    from transformers import AutoTokenizer

    from listrank.encoder import default_model_path

    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    lists = [_qlist(f"q{i}", [3, 2, 1, 0]) for i in range(9)]
    kw = dict(tokenizer=tok, group_size=3, seed=5, epoch=2, query_max_length=8, passage_max_length=8)
    one = EpochBatches(lists, batch_size=4, world_size=1, rank=0, **kw)
    ranks = [EpochBatches(lists, batch_size=2, world_size=2, rank=r, **kw) for r in (0, 1)]
    assert len(one) == 2 == len(ranks[0])  # 9 lists, global batch 4: the last one is dropped
    for b in range(2):
        full = one[b]
        parts = [rk[b] for rk in ranks]
        assert full["query_ids"] == parts[0]["query_ids"] == parts[1]["query_ids"]
        assert torch.equal(full["labels"], parts[0]["labels"]) and full["labels"].shape == (4, 3)
        assert parts[0]["q_input_ids"].shape[0] == 2 and full["q_input_ids"].shape[0] == 4
        assert parts[0]["p_input_ids"].shape[0] == 6 and full["p_input_ids"].shape[0] == 12
    resumed = EpochBatches(lists, batch_size=4, world_size=1, rank=0, start=1, **kw)
    assert len(resumed) == 1 and resumed[0]["query_ids"] == one[1]["query_ids"]


# --- sources -----------------------------------------------------------------------------------------

def test_bad_synthetic_record_reports_file_and_line(tmp_path):
    path = _write_synth(tmp_path / "synth.jsonl", n=2, extra_lines=['{"query_id": "x", "query": "q", "passages": []}'])
    with pytest.raises(FormatError) as err:
        load_sources([SourceConfig(str(path))])
    assert f"{path}:3:" in str(err.value) and "non-empty" in str(err.value)
    data = load_sources([SourceConfig(str(path))], skip_invalid=True)
    assert data.report.sources[0].invalid_lines == 1 and f"{path}:3" in data.report.sources[0].invalid_examples[0]


def test_bad_record_through_the_cli_fails_fast(tmp_path):
    from typer.testing import CliRunner

    from listrank.cli import app

    path = _write_synth(tmp_path / "synth.jsonl", n=2, extra_lines=["{not json"])
    res = CliRunner().invoke(app, ["train", str(path), "-o", str(tmp_path / "m"), "--no-progress"])
    assert res.exit_code == 2
    assert "synth.jsonl:3: invalid JSON" in " ".join(res.output.split())


def test_cli_help_has_examples():
    from typer.testing import CliRunner

    from listrank.cli import app

    res = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "torchrun --nproc-per-node 4 -m listrank train" in res.output and "--group-size" in res.output


def test_qrels_source_label_transform_and_merge(tmp_path):
    if not (DATA / "msmarco" / "dl19-pool").is_dir():
        missing("needs the shared dl19-pool data")
    dl19 = str(DATA / "msmarco" / "dl19-pool")
    data = load_sources([SourceConfig(dl19, split="test", labels="0:drop,*:3")])
    qid, query_text = data.lists[0].query_id, data.lists[0].query
    rep = data.report.sources[0]
    assert rep.kind == "qrels" and rep.queries == 43 and set(rep.label_counts) == {"3"}
    assert rep.missing_docs > 0 and rep.dropped_by_label_map > 0
    data.prepare("wasserstein", 4, "repeat")
    assert data.report.used == 0 and data.report.skipped_one_label == 43  # all 3s: nothing to rank
    # synthetic + real on the same query ids merge into one list
    synth = tmp_path / "s.jsonl"
    def write(query_text):
        synth.write_text(json.dumps({"query_id": qid, "query": query_text, "passages": [
            {"id": "s0", "level": 2, "text": "a"}, {"id": "s1", "level": 0, "text": "b"}]}) + "\n")

    write("  " + query_text.upper() + " ")  # case and spacing do not make another query
    merged = load_sources([SourceConfig(str(synth)), SourceConfig(dl19, split="test", labels="0:drop,*:3")])
    ql = next(q for q in merged.lists if q.query_id == qid)
    assert len(ql.parts) == 2 and ql.labels() == {0, 2, 3}
    assert merged.report.lists == 43 and merged.fingerprint() != data.fingerprint()
    # the same id for another query (two datasets with numeric ids) is an error, not a silent merge
    write("an entirely different question")
    with pytest.raises(ListrankError, match=f"query id '{qid}' names different queries"):
        load_sources([SourceConfig(str(synth)), SourceConfig(dl19, split="test", labels="0:drop,*:3")])


def test_dense_mining_adds_unjudged_negatives(tmp_path):
    from listrank.formats import Document, Query, write_corpus, write_qrels, write_queries

    root = tmp_path / "ds"
    docs = [Document(f"d{i}", f"passage {i} about {TOPICS[i % 8]}") for i in range(12)]
    write_corpus(root / "corpus.jsonl", docs)
    write_queries(root / "queries.jsonl", [Query("q1", "solar panels"), Query("q2", "bread baking")])
    write_qrels(root / "qrels" / "train.tsv", {"q1": {"d0": 1}, "q2": {"d1": 1}})

    calls = []

    def fake_miner(corpus, queries, k, work_dir):  # rank by id: deterministic and model-free
        calls.append(k)
        return {q.id: [d.id for d in corpus][:k] for q in queries}

    data = load_sources([SourceConfig(str(root), split="train", labels="*:3", mine="dense", mine_count=3,
                                      mine_depth=5, mine_label=1)],
                        miner_factory=lambda kind: fake_miner, work_dir=tmp_path / "out", seed=0)
    for ql in data.lists:
        assert len(ql.parts) == 2
        mined = ql.parts[1].passages
        assert len(mined) == 3 and all(p.label == 1 for p in mined)
        judged = {"q1": "d0", "q2": "d1"}[ql.query_id]
        assert judged not in {p.id for p in mined} and {p.id for p in mined} <= {f"d{i}" for i in range(5)}
    assert data.report.sources[0].mined == 6
    # cached: a second load (e.g. --resume) does not mine again and gives the same negatives
    again = load_sources([SourceConfig(str(root), split="train", labels="*:3", mine="dense", mine_count=3,
                                       mine_depth=5, mine_label=1)],
                         miner_factory=lambda kind: fake_miner, work_dir=tmp_path / "out", seed=0)
    assert calls == [5] and again.fingerprint() == data.fingerprint()


# --- training ----------------------------------------------------------------------------------------

def _config(out: Path, synth: Path, **kw) -> TrainConfig:
    base = dict(output=str(out), sources=[SourceConfig(str(synth))], batch_size=2, group_size=4,
                query_max_length=16, passage_max_length=16, max_steps=4, save_steps=2, num_workers=0,
                progress=False, plot=False, lr=1e-4, seed=7, precision="fp32", device="cpu")
    base.update(kw)
    return build_config(preset="sycl", overrides=base)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from listrank.train import train

    tmp = tmp_path_factory.mktemp("train")
    synth = _write_synth(tmp / "synth.jsonl")
    result = train(_config(tmp / "model", synth, plot=True))
    return tmp, synth, result


def test_short_training_run_writes_a_model_logs_and_plot(trained):
    tmp, _, result = trained
    out = tmp / "model"
    assert result.steps == 4 and result.total_steps == 4 and result.skipped_steps == 0
    assert all(np.isfinite(r["loss"]) for r in result.log) and len(result.log) == 4
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and {"loss", "lr", "grad_norm", "queries_per_s"} <= set(log[0])
    # warmup (ceil(5% of 4) = 1 step) then linear decay
    assert log[0]["lr"] < log[1]["lr"] == pytest.approx(1e-4) and log[3]["lr"] < log[2]["lr"]
    assert (out / "train_curve.png").read_bytes()[:4] == b"\x89PNG"
    from listrank.encoder import default_model_path

    base = _weights(default_model_path())
    new = _weights(out)
    changed = [k for k in new if k in base and not torch.equal(base[k], new[k])]
    assert len(changed) > 10
    meta = json.loads((out / "listrank.json").read_text())
    assert meta["finished"] and meta["loss"] == "wasserstein" and meta["pooling"] == "mean" and not meta["normalize"]
    assert meta["base_model"]["weights_sha256"] and len(meta["data"]["fingerprint"]) == 64
    assert meta["hyperparameters"]["group_size"] == 4 and meta["steps"] == 4
    assert not (out / "checkpoints").exists()  # removed once the final model is written (no --keep-checkpoints)


def test_sentence_transformers_and_automodel_load_the_trained_model(trained):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from listrank.encoder import Encoder

    out = trained[0] / "model"
    texts = ["how do solar panels work", "A precise note about bread baking at level 3, with more words than "
             "sixteen tokens so that truncation matters for both libraries"]
    st = SentenceTransformer(str(out), device="cpu")
    ours = Encoder(str(out), max_length=16, device="cpu", precision="fp32")
    assert ours.pooling == "mean" and ours.normalize is False
    a = st.encode(texts, convert_to_numpy=True)
    b = ours.encode(texts)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(np.linalg.norm(a, axis=1), 1.0)  # no normalisation, as trained
    assert type(AutoModel.from_pretrained(str(out))).__name__ == "BertModel"


def test_resume_matches_an_uninterrupted_run(trained):
    from listrank.train import train

    tmp, synth, full = trained
    out = tmp / "interrupted"

    class Crash(Exception):
        pass

    def crash_at_3(step, record):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        train(_config(out, synth), on_step=crash_at_3)
    with pytest.raises(ListrankError, match="--resume"):
        train(_config(out, synth))
    # a different number of DataLoader workers must not change anything
    resumed = train(_config(out, synth, resume=True, num_workers=1, keep_checkpoints=True))
    assert resumed.resumed_from == 2 and resumed.steps == 4
    assert [r["loss"] for r in resumed.log] == pytest.approx([r["loss"] for r in full.log], abs=1e-6)
    a, b = _weights(tmp / "model"), _weights(out)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    with pytest.raises(ListrankError, match="settings differ"):
        # resuming under other settings is refused (a fresh copy of the checkpoint, lr changed)
        import shutil

        shutil.copytree(out / "checkpoints", tmp / "other" / "checkpoints")
        train(_config(tmp / "other", synth, resume=True, lr=5e-5))


@losses.register("nan-for-tests")
class _NanLoss(torch.nn.Module):
    def forward(self, scores, labels, temperature=1.0):
        return scores.sum() * float("nan")


def test_non_finite_loss_skips_then_aborts(tmp_path, capsys):
    from listrank.train import train

    synth = _write_synth(tmp_path / "synth.jsonl")
    with pytest.raises(ListrankError, match="non-finite loss or gradients for 2 steps in a row"):
        train(_config(tmp_path / "m", synth, loss="nan-for-tests", max_nonfinite=2, save_steps=0))
    err = capsys.readouterr().err
    assert "step 1: non-finite loss; step skipped" in " ".join(err.split())


def test_cli_mixes_synthetic_and_real_with_dense_mined_negatives(tmp_path):
    """The paper's synthetic + real setting, end to end: gen lists, real positives -> 3, negatives
    mined with the base encoder -> 1, merged by query id; one step through the CLI."""
    from typer.testing import CliRunner

    from listrank.cli import app
    from listrank.formats import Document, Query, write_corpus, write_qrels, write_queries

    synth = _write_synth(tmp_path / "synth.jsonl", n=4)
    root = tmp_path / "real"
    write_corpus(root / "corpus.jsonl", [Document(f"d{i}", f"a document about {TOPICS[i % 8]} number {i}")
                                         for i in range(16)])
    write_queries(root / "queries.jsonl", [Query(f"q{i}", f"how do {TOPICS[i]} work") for i in range(4)])
    write_qrels(root / "qrels" / "train.tsv", {f"q{i}": {f"d{i}": 1} for i in range(4)})
    out = tmp_path / "mix"
    res = CliRunner().invoke(app, [
        "train", str(synth), "--source", f"{root} split=train labels=*:3 mine=dense mine-count=2 mine-depth=6",
        "-o", str(out), "--batch-size", "2", "--max-length", "16", "--max-steps", "1", "--num-workers", "0",
        "--no-progress", "--no-plot", "--device", "cpu", "--precision", "fp32", "--save-steps", "0",
    ], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "listrank.json").read_text())
    real = meta["data"]["report"]["sources"][1]
    assert real["mined"] == 8 and real["label_counts"] == {"1": 8, "3": 4}
    assert meta["data"]["report"]["lists"] == 4 and meta["data"]["report"]["used"] == 4
    (cache,) = (out / "mining").glob("real_train-*/mined.json")
    assert len(json.loads(cache.read_text())["hits"]) == 4
    assert "4 queries, 12 passages, 8 mined" in " ".join(res.output.split())


def test_out_of_memory_names_the_knobs(tmp_path, monkeypatch):
    from listrank.train import trainer

    def boom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer.Trainer, "_run", boom)
    synth = _write_synth(tmp_path / "s.jsonl", n=2)
    with pytest.raises(ListrankError) as err:
        trainer.train(_config(tmp_path / "m", synth))
    for knob in ("--batch-size", "--grad-accum", "--passage-max-length", "--gradient-checkpointing"):
        assert knob in str(err.value)


def test_finished_model_is_not_resumed_or_overwritten_by_accident(trained):
    from listrank.train import train

    tmp, synth, _ = trained
    with pytest.raises(ListrankError, match="nothing to resume"):
        train(_config(tmp / "model", synth, resume=True))
    with pytest.raises(ListrankError, match="not empty"):
        train(_config(tmp / "model", synth))
    (tmp / "stranger").mkdir()
    (tmp / "stranger" / "notes.txt").write_text("mine")
    with pytest.raises(ListrankError, match="refusing to --overwrite"):
        train(_config(tmp / "stranger", synth, overwrite=True))


def test_bm25_mining_through_listrank_bm25(tmp_path):
    pytest.importorskip("pyserini")
    from listrank.formats import Document, Query, write_corpus, write_qrels, write_queries
    from listrank.train.data import bm25_miner

    root = tmp_path / "ds"
    write_corpus(root / "corpus.jsonl", [Document(f"d{i}", f"a document about {TOPICS[i % 8]} number {i}")
                                         for i in range(16)])
    write_queries(root / "queries.jsonl", [Query(f"q{i}", f"how do {TOPICS[i]} work") for i in range(4)])
    write_qrels(root / "qrels" / "train.tsv", {f"q{i}": {f"d{i}": 1} for i in range(4)})
    try:
        data = load_sources([SourceConfig(str(root), split="train", labels="*:3", mine="bm25", mine_depth=5)],
                            miner_factory=lambda kind: bm25_miner(), work_dir=tmp_path / "out", seed=0)
    except ListrankError as e:  # no Java here
        pytest.skip(f"BM25 unavailable: {e}")
    for i, ql in enumerate(data.lists):
        # BM25 ranks the other document on the same topic (d{i+8}) first; the judged d{i} is excluded
        assert [(p.id, p.label) for p in ql.all_passages()] == [(f"d{i}", 3), (f"d{i + 8}", 1)]


def test_length_buckets_give_the_same_embeddings_and_gradients():
    from listrank.encoder import Encoder
    from listrank.train.trainer import BiEncoder

    encoder = Encoder(max_length=64, precision="fp32", normalize=False)
    texts = [f"{TOPICS[i % 8]} " * (1 + 3 * i) for i in range(9)]  # 9 texts of very different lengths
    tok = encoder.tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    q = encoder.tokenizer(["a short query"] * 3, padding=True, return_tensors="pt")
    results = []
    for buckets in (1, 3):
        encoder.zero_grad()
        _, p = BiEncoder(encoder, buckets)(q["input_ids"], q["attention_mask"],
                                           tok["input_ids"], tok["attention_mask"])
        (p * torch.arange(p.numel(), dtype=p.dtype).reshape(p.shape)).sum().backward()  # order-sensitive
        grad = torch.cat([w.grad.flatten() for w in encoder.parameters() if w.grad is not None])
        results.append((p.detach(), grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-4, atol=1e-5)
    # padded positions add exact zeros in one case and float dust in the other: compare as vectors
    (_, g1), (_, g3) = results
    assert float((g3 - g1).norm() / g1.norm()) < 1e-5
