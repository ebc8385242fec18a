"""Validation during training (`--eval-dataset/--eval-split/--eval-holdout/--eval-steps`): the best
step's model is the final model and is recorded with the start model's score, a run whose steps all
score below the start gives back the start model, a split named test is refused without
--eval-force, and held-out queries never reach training.

Real data: a few dozen SciFact documents and training queries (LISTRANK_DATA), the bundled MiniLM at
max length 16, batch 2, a handful of steps.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from listrank.errors import ListrankError
from listrank.train.config import SourceConfig, build_config
from listrank.train.data import Part, Passage, QueryList
from listrank.train.validate import ValidationSet, split_holdout

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytestmark = pytest.mark.usefixtures("one_thread")

TOPICS = ["solar panels", "bread baking", "tax returns", "tide pools", "chess openings", "jazz piano",
          "volcano eruptions", "bicycle repair"]


def _write_synth(path: Path, n: int = 8) -> Path:
    lines = []
    for i in range(n):
        topic = TOPICS[i % 8]
        passages = [{"id": f"q{i}_l_{lv}_d_0", "level": lv,
                     "text": f"{'A precise' if lv == 3 else 'A loose' if lv else 'An unrelated'} note about "
                             f"{topic if lv else 'weather'} at level {lv}."} for lv in (3, 2, 1, 0)]
        lines.append(json.dumps({"query_id": f"q{i}", "query": f"how do {topic} work (variant {i // 8})",
                                 "passages": passages}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def scifact_dev(tmp_path, data_root) -> Path:
    """SciFact's first 16 training queries as a `dev` split (and the same as `test`, for the refusal),
    their judged documents and the first 32 documents of the corpus."""
    from listrank.datasets import resolve
    from listrank.formats import write_corpus, write_qrels, write_queries

    ds = resolve("beir/scifact", data_dir=data_root)
    qrels = ds.qrels("train")
    queries = ds.queries("train")[:16]
    wanted = {d for q in queries for d in qrels[q.id]}
    docs = [d for d in ds.corpus if d.id in wanted] + ds.corpus[:32]
    root = tmp_path / "scifact-dev"
    write_corpus(root / "corpus.jsonl", list({d.id: d for d in docs}.values()))
    write_queries(root / "queries.jsonl", queries)
    for split in ("dev", "test"):
        write_qrels(root / "qrels" / f"{split}.tsv", {q.id: qrels[q.id] for q in queries})
    return root


def _config(out: Path, synth: Path, **kw):
    base = dict(output=str(out), sources=[SourceConfig(str(synth))], batch_size=2, group_size=4,
                query_max_length=16, passage_max_length=16, max_steps=4, save_steps=0, num_workers=0,
                progress=False, plot=False, lr=1e-4, seed=7, precision="fp32", device="cpu")
    base.update(kw)
    return build_config(preset="sycl", overrides=base)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    common = set(wa) & set(wb)  # the bundled file also holds the position_ids buffer
    return len(common) >= len(wa) - 1 and all(torch.equal(wa[k], wb[k]) for k in common)


def _scripted(monkeypatch, scores: list[float]) -> list[int]:
    """ValidationSet.score returns `scores` in turn (the selection logic, not the model, under test)."""
    calls: list[int] = []

    def score(self, encoder, batch_size=64, work_dir=None):
        calls.append(len(calls))
        return scores[len(calls) - 1]

    monkeypatch.setattr(ValidationSet, "score", score)
    return calls


# --- refusing the test split ---------------------------------------------------------------------------

def test_validating_on_test_is_refused_without_force(tmp_path, scifact_dev):
    synth = _write_synth(tmp_path / "s.jsonl")
    with pytest.raises(ListrankError, match="refusing to validate on the test split") as err:
        _config(tmp_path / "m", synth, eval_dataset=str(scifact_dev), eval_split="test")
    assert "\n" not in str(err.value) and "--eval-force" in str(err.value)
    from typer.testing import CliRunner

    from listrank.cli import app

    res = CliRunner().invoke(app, ["train", str(synth), "-o", str(tmp_path / "m"), "--eval-dataset", str(scifact_dev),
                                   "--eval-split", "test", "--no-progress"], env={"COLUMNS": "300"})
    assert res.exit_code == 2 and "refusing to validate on the test split" in res.output
    # a dataset whose only split is test is refused too when no split is named
    only_test = tmp_path / "only-test"
    only_test.mkdir()
    for name in ("corpus.jsonl", "queries.jsonl"):
        (only_test / name).write_text((scifact_dev / name).read_text())
    (only_test / "qrels").mkdir()
    (only_test / "qrels" / "test.tsv").write_text((scifact_dev / "qrels" / "test.tsv").read_text())
    from listrank.train import train

    with pytest.raises(ListrankError, match="no dev split"):
        train(_config(tmp_path / "m2", synth, eval_dataset=str(only_test)))
    assert not (tmp_path / "m2" / "model.safetensors").exists()


# --- held-out queries ------------------------------------------------------------------------------------

def _lists(n: int) -> list[QueryList]:
    return [QueryList(f"q{i}", f"query {i}", [Part("s", [Passage(f"q{i}-{k}", f"text {k}", lab)
                                                         for k, lab in enumerate((3, 1, 0))])]) for i in range(n)]


def test_holdout_is_disjoint_sized_and_order_independent():
    lists = _lists(40)
    train_lists, held = split_holdout(lists, 0.25, seed=5)
    train_ids, held_ids = {q.query_id for q in train_lists}, {q.query_id for q in held}
    assert len(held) == 10 and len(train_lists) == 30 and not train_ids & held_ids
    assert train_ids | held_ids == {q.query_id for q in lists}
    _, held_reversed = split_holdout(list(reversed(lists)), 0.25, seed=5)
    assert {q.query_id for q in held_reversed} == held_ids  # chosen by id, not by position
    assert {q.query_id for q in split_holdout(lists, 0.25, seed=6)[1]} != held_ids
    # lists without a relevant passage cannot be scored: never held out
    flat = [QueryList("z", "q", [Part("s", [Passage("z-0", "t", 0)])])] * 1 + _lists(3)
    assert "z" not in {q.query_id for q in split_holdout(flat, 0.5, seed=0)[1]}


def test_holdout_queries_never_reach_training(tmp_path, monkeypatch):
    from listrank.train import train
    from listrank.train.data import EpochBatches

    seen: set[str] = set()
    original = EpochBatches.__getitem__

    def recording(self, k):
        item = original(self, k)
        seen.update(item["query_ids"])
        return item

    monkeypatch.setattr(EpochBatches, "__getitem__", recording)
    synth = _write_synth(tmp_path / "s.jsonl", n=16)
    result = train(_config(tmp_path / "m", synth, eval_holdout=0.25, eval_steps=2, max_steps=None, epochs=1))
    held = (tmp_path / "m" / "validation_queries.txt").read_text().split()
    assert len(held) == 4 and seen and not seen & set(held)
    assert len(seen) == 12 and result.data.held_out == 4 and result.data.used == 12
    v = json.loads((tmp_path / "m" / "listrank.json").read_text())["validation"]
    assert v["set"]["kind"] == "holdout" and v["set"]["queries"] == 4 and v["set"]["docs"] == 16
    assert [h["step"] for h in v["history"]] == [0, 2, 4, 6] and 0 <= v["baseline"]["score"] <= 1


# --- the best step ------------------------------------------------------------------------------------------

def test_best_step_is_the_final_model_and_is_recorded(tmp_path, monkeypatch, scifact_dev):
    from listrank.train import train

    calls = _scripted(monkeypatch, [0.30, 0.35, 0.50, 0.40])
    synth = _write_synth(tmp_path / "s.jsonl")
    out = tmp_path / "m"
    result = train(_config(out, synth, eval_dataset=str(scifact_dev), eval_steps=2, max_steps=6, save_steps=2, keep_checkpoints=True,
                           save_total_limit=3, plot=True))
    assert len(calls) == 4  # steps 0, 2, 4, 6
    meta = json.loads((out / "listrank.json").read_text())
    v = meta["validation"]
    assert v["best"] == {"step": 4, "score": 0.50} and v["baseline"] == {"step": 0, "score": 0.30}
    assert v["final_model"] == "best step 4" and [h["step"] for h in v["history"]] == [0, 2, 4, 6]
    assert v["set"]["name"].endswith(":dev") and meta["steps"] == 6 and result.validation == v
    assert _same_weights(out, out / "checkpoints" / "step-4")  # the final model is step 4's
    assert not _same_weights(out, out / "checkpoints" / "step-2")
    assert not (out / "best").exists()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "eval" in r]
    assert [(r["step"], r["score"], r["best"]) for r in evals] == [
        (0, 0.30, True), (2, 0.35, True), (4, 0.50, True), (6, 0.40, False)]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert (out / "train_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_no_step_beats_the_start_so_the_start_model_is_kept(tmp_path, monkeypatch, scifact_dev, capsys):
    from listrank.encoder import default_model_path
    from listrank.train import train

    _scripted(monkeypatch, [0.50, 0.40, 0.50])  # a tie with the start is no improvement
    synth = _write_synth(tmp_path / "s.jsonl")
    out = tmp_path / "m"
    result = train(_config(out, synth, eval_dataset=str(scifact_dev), eval_steps=2, max_steps=4))
    v = result.validation
    assert v["best"] == {"step": 0, "score": 0.50} and v["final_model"] == "start model (no step beat step 0)"
    assert result.steps == 4 and _same_weights(out, default_model_path())
    assert "no training step beat the start model" in " ".join(capsys.readouterr().err.split())


def test_final_model_last_keeps_the_last_step_and_says_it_was_not_the_best(tmp_path, monkeypatch, scifact_dev, capsys):
    """--final-model last: the same weights as the run without validation (the last step's), the
    best step still recorded, a warning that the last step scored below it."""
    from listrank.errors import ListrankError
    from listrank.train import train

    synth = _write_synth(tmp_path / "s.jsonl")
    train(_config(tmp_path / "plain", synth, max_steps=4))
    _scripted(monkeypatch, [0.30, 0.50, 0.40])
    result = train(_config(tmp_path / "m", synth, eval_dataset=str(scifact_dev), eval_steps=2, max_steps=4,
                           final_model="last"))
    v = result.validation
    assert v["best"] == {"step": 2, "score": 0.50} and v["final_model"] == "last step (--final-model last)"
    assert [h["score"] for h in v["history"]] == [0.30, 0.50, 0.40]
    assert _same_weights(tmp_path / "m", tmp_path / "plain")
    assert not (tmp_path / "m" / "best").exists()
    err = " ".join(capsys.readouterr().err.split())
    assert "the final model is the last step (--final-model last)" in err and "below the best 0.5000 at step 2" in err
    with pytest.raises(ListrankError, match="--final-model must be one of best, last"):
        _config(tmp_path / "x", synth, final_model="worst")


def test_min_gain_keeps_the_start_model_unless_a_step_wins_by_the_margin(tmp_path, monkeypatch, scifact_dev, capsys):
    """--eval-min-gain: held-out gains below the margin are treated as noise (the start model is
    kept and the run says by how much it had to win); a step that wins by it is kept as usual."""
    from listrank.encoder import default_model_path
    from listrank.errors import ListrankError
    from listrank.train import train

    synth = _write_synth(tmp_path / "s.jsonl")
    _scripted(monkeypatch, [0.50, 0.503, 0.504])  # both steps better, neither by 0.005
    out = tmp_path / "small"
    result = train(_config(out, synth, eval_dataset=str(scifact_dev), eval_steps=2, max_steps=4, eval_min_gain=0.005))
    v = result.validation
    assert v["best"] == {"step": 0, "score": 0.50} and v["min_gain"] == 0.005
    assert v["final_model"] == "start model (no step beat step 0 by 0.005)"
    assert _same_weights(out, default_model_path())
    assert "no training step beat the start model by 0.005" in " ".join(capsys.readouterr().err.split())

    _scripted(monkeypatch, [0.50, 0.51, 0.505])  # step 2 wins by 0.01; step 4 is above the margin but below step 2
    out = tmp_path / "wins"
    result = train(_config(out, synth, eval_dataset=str(scifact_dev), eval_steps=2, max_steps=4, eval_min_gain=0.005,
                           save_steps=2, keep_checkpoints=True))
    assert result.validation["best"] == {"step": 2, "score": 0.51} and result.validation["final_model"] == "best step 2"
    assert _same_weights(out, out / "checkpoints" / "step-2") and not _same_weights(out, default_model_path())
    for bad in (-0.01, 1.0, float("nan")):
        with pytest.raises(ListrankError, match="--eval-min-gain must be (in|a finite)"):
            _config(tmp_path / "x", synth, eval_min_gain=bad)


def test_real_ndcg_on_scifact_matches_listrank_eval(tmp_path, scifact_dev):
    """Real scores: the step-0 baseline is the base model's nDCG@10 as index/search/evaluate give it,
    and the final model is the best-scoring step of the recorded curve."""
    from listrank.encoder import Encoder
    from listrank.evaluate import evaluate
    from listrank.formats import read_corpus, read_qrels, read_queries
    from listrank.index import DenseIndex, build_dense_index
    from listrank.search import dense_search
    from listrank.train import train

    synth = _write_synth(tmp_path / "s.jsonl")
    out = tmp_path / "m"
    result = train(_config(out, synth, eval_dataset=str(scifact_dev), eval_steps=2, max_steps=4, lr=3e-4, keep_checkpoints=True,
                           save_steps=2))
    v = result.validation
    scores = {h["step"]: h["score"] for h in v["history"]}
    assert list(scores) == [0, 2, 4] and all(0 < s <= 1 for s in scores.values())
    best_step = max(scores, key=lambda s: (scores[s], -s))
    assert v["best"]["step"] == best_step and v["best"]["score"] == scores[best_step]

    base = Encoder(None, normalize=False, pooling="mean", max_length=16, precision="fp32", device="cpu")
    docs = read_corpus(scifact_dev / "corpus.jsonl")
    index = build_dense_index(base, docs, tmp_path / "idx", show_progress=False)
    qrels = read_qrels(scifact_dev / "qrels" / "dev.tsv")
    queries = [q for q in read_queries(scifact_dev / "queries.jsonl") if q.id in qrels]
    run = dense_search(DenseIndex.open(index), queries, 100, encoder=base, show_progress=False)
    expected = evaluate(run, qrels, ["nDCG@10"]).aggregate["nDCG@10"]
    assert v["baseline"]["score"] == pytest.approx(expected, abs=1e-6)
    if best_step == 0:
        from listrank.encoder import default_model_path

        assert _same_weights(out, default_model_path())
    elif best_step == 2:
        assert _same_weights(out, out / "checkpoints" / "step-2")
