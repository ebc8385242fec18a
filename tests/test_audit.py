"""The synthetic-level audit: exact numbers with a stub encoder, sanity with the bundled MiniLM, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from listrank.audit import level_audit, load_lists, plot_levels, write_audit_json
from listrank.cli import app
from listrank.encoder import EncoderSpec
from listrank.errors import ListrankError
from listrank.formats import (
    Document, Query, SyntheticList, SyntheticPassage, synthetic_jsonl_line, write_corpus, write_qrels, write_queries,
)

# Texts the bundled all-MiniLM-L6-v2 orders without doubt: level 3 answers the query, level 2 is on
# its subject, level 1 shares a word or two, level 0 is about something else entirely.
LISTS = {
    "q1": ("how many hours of sleep does an adult need", {
        3: ["Adults need seven to nine hours of sleep every night, sleep experts say.",
            "An adult needs between 7 and 9 hours of sleep per night to stay healthy."],
        2: ["Not getting enough sleep each night harms an adult's health and memory.",
            "Sleep needs change with age; teenagers need more hours of sleep than adults."],
        1: ["A new mattress and soft pillows can make a bedroom more comfortable.",
            "Many people drink coffee in the morning to feel awake."],
        0: ["The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
            "Volcanoes erupt when molten rock rises through the earth's crust."],
    }),
    "q2": ("what is the boiling point of water", {
        3: ["Water boils at 100 degrees Celsius (212 Fahrenheit) at sea level.",
            "The boiling point of water is 100 °C at standard atmospheric pressure."],
        2: ["At high altitude water boils at a lower temperature because the air pressure is lower.",
            "Adding salt to water raises its boiling point slightly."],
        1: ["Ice melts into liquid water when it warms above freezing.",
            "A kettle is a kitchen appliance for heating drinks."],
        0: ["Shakespeare wrote Hamlet around the year 1600.",
            "The stock market fell sharply after the bank announced losses."],
    }),
    "q3": ("who painted the mona lisa", {
        3: ["The Mona Lisa was painted by Leonardo da Vinci in the early sixteenth century.",
            "Leonardo da Vinci painted the Mona Lisa, the famous portrait in the Louvre."],
        2: ["The Mona Lisa hangs in the Louvre museum in Paris behind bulletproof glass.",
            "The Mona Lisa is one of the most famous portrait paintings in the world."],
        1: ["Renaissance artists in Italy painted many religious scenes.",
            "Art museums often display paintings from several centuries."],
        0: ["Penguins live in the southern hemisphere and cannot fly.",
            "A diesel engine ignites fuel by compressing air in the cylinder."],
    }),
    "q4": ("what is the capital of japan", {
        3: ["Tokyo is the capital of Japan and its largest city.",
            "The capital city of Japan is Tokyo, seat of the government and the emperor."],
        2: ["Japan's government, parliament and ministries are based in its capital.",
            "Kyoto was the capital of Japan for more than a thousand years before the move."],
        1: ["Japan is an island country in East Asia known for sushi and anime.",
            "Mount Fuji is the highest mountain in Japan."],
        0: ["Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
            "The football match ended in a draw after extra time."],
    }),
}


def _lists(relabel=lambda level: level, drop=()) -> list[SyntheticList]:
    out = []
    for qid, (query, levels) in LISTS.items():
        passages = [SyntheticPassage(SyntheticList.passage_id(qid, lv, i), relabel(lv), text)
                    for lv, texts in levels.items() if (qid, lv) not in drop for i, text in enumerate(texts)]
        out.append(SyntheticList(qid, query, passages))
    return out


def _export(root, lists, split="train"):
    """What `listrank gen --export-beir` writes (listrank.gen.generate.export_beir)."""
    write_corpus(root / "corpus.jsonl", (Document(p.id, p.text) for sl in lists for p in sl.passages))
    write_queries(root / "queries.jsonl", (Query(sl.query_id, sl.query) for sl in lists))
    write_qrels(root / "qrels" / f"{split}.tsv", {sl.query_id: {p.id: p.level for p in sl.passages} for sl in lists})
    return root


@pytest.fixture(scope="module")
def minilm():
    from listrank.encoder import Encoder

    return Encoder(max_length=64, device="cpu", precision="fp32")


# --- exact numbers with a stub encoder ----------------------------------------------------------


class StubEncoder:
    """Query -> [1, 0]; a passage whose text is a number x -> [x, 0]: its score is x."""

    def encode(self, texts, batch_size=64, show_progress=False, description=""):
        self.calls = getattr(self, "calls", 0) + 1
        return np.array([[float(t), 0.0] if t.replace(".", "", 1).lstrip("-").isdigit() else [1.0, 0.0]
                         for t in texts], dtype=np.float32)

    def spec(self):
        return EncoderSpec("stub", "unknown", "mean", False, 64)


def _stub(qid, scored):  # scored: [(level, score), ...]
    return SyntheticList(qid, f"query {qid}", [SyntheticPassage(f"{qid}_{i}", lv, str(s)) for i, (lv, s) in enumerate(scored)])


def test_exact_numbers_missing_levels_and_ties():
    stub = StubEncoder()
    lists = [
        _stub("a", [(3, 0.9), (2, 0.7), (1, 0.5), (0, 0.1)]),  # perfect
        _stub("b", [(3, 0.2), (2, 0.6), (0, 0.4)]),  # no level 1; 3 below 0; one of 3 pairs right
        _stub("c", [(3, 0.5), (0, 0.5)]),  # a tie: half a win
        _stub("d", [(2, 0.3), (2, 0.4)]),  # one level only
    ]
    r = level_audit(lists, stub)
    assert stub.calls == 2  # all passages in one call, all queries in another
    assert r.levels == [3, 2, 1, 0] and r.n_queries == 4 and r.n_ranked == 3 and r.single_level == 1
    assert r.missing_by_level == {3: 1, 2: 1, 1: 3, 0: 1} and r.queries_missing_a_level == 3
    tb = r.top_bottom
    assert tb.label == "3>0" and tb.queries == 3 and tb.query_share == pytest.approx(1.5 / 3)
    pairs = {p.label: p for p in r.pairs}
    assert list(pairs) == ["3>0", "3>2", "2>1", "1>0"]
    assert pairs["3>2"].queries == 2 and pairs["3>2"].query_share == 0.5
    assert pairs["2>1"].queries == 1 and pairs["2>1"].pair_accuracy == 1.0
    # concordance per query: a 6/6, b (3>2 no, 3>0 no, 2>0 yes) 1/3, c 0.5/1
    assert r.concordance == pytest.approx((1 + 1 / 3 + 0.5) / 3) and r.kendall_tau == pytest.approx(2 * r.concordance - 1)
    per_query = {q.query_id: q for q in r.queries}
    assert per_query["a"].ndcg10 == pytest.approx(1.0) and per_query["d"].ndcg10 is None
    assert per_query["b"].missing_levels == [1] and per_query["b"].ndcg10 < 1
    stats = {s.level: s for s in r.level_stats}
    assert stats[3].passages == 3 and stats[3].mean == pytest.approx((0.9 + 0.2 + 0.5) / 3, abs=1e-6)
    assert stats[2].queries == 3 and stats[1].queries == 1
    assert any("lack a level" in w for w in r.warnings) and any("single level" in w for w in r.warnings)


def test_pair_no_query_has_is_null_in_json(tmp_path):
    r = level_audit([_stub("a", [(3, 0.9), (1, 0.5)]), _stub("b", [(1, 0.4), (0, 0.3)])], StubEncoder())
    pairs = {p.label: p for p in r.pairs}
    assert pairs["3>0"].queries == 0 and np.isnan(pairs["3>0"].query_share)
    saved = json.loads(write_audit_json(tmp_path / "a.json", r).read_text())
    assert saved["summary"]["top_over_bottom_query_share"] is None


def test_nothing_to_order():
    with pytest.raises(ListrankError, match="no ordering"):
        level_audit([_stub("a", [(3, 0.9)]), _stub("b", [(3, 0.1), (3, 0.2)])], StubEncoder())
    with pytest.raises(ListrankError, match="two different levels"):
        level_audit([_stub("a", [(3, 0.9)]), _stub("b", [(0, 0.1)])], StubEncoder())


# --- the bundled encoder on clean and reversed lists --------------------------------------------


def test_clean_lists_are_ordered(minilm, tmp_path):
    r = level_audit(load_lists(_export(tmp_path / "beir", _lists())), minilm)
    assert r.name.endswith("/train") and r.n_queries == 4 and r.queries_missing_a_level == 0 and not r.warnings
    assert r.top_bottom.query_share == 1.0 and r.top_bottom.pair_accuracy == 1.0
    means = [s.mean for s in r.level_stats]  # best level first
    assert means == sorted(means, reverse=True) and len(set(means)) == 4
    assert r.ndcg10 > 0.95 and r.concordance > 0.9
    assert all(p.query_share == 1.0 for p in r.pairs)
    # normalised model: the scores are cosines
    assert all(-1.0 <= x <= 1.0 + 1e-6 for v in r.scores.values() for x in v)

    png, out = plot_levels(r, tmp_path / "levels.png"), write_audit_json(tmp_path / "audit.json", r)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(out.read_text())
    assert saved["summary"]["top_over_bottom"] == "3>0" and saved["summary"]["top_over_bottom_query_share"] == 1.0
    assert len(saved["per_query"]) == 4 and saved["per_query"][0]["mean_score"].keys() == {"3", "2", "1", "0"}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave nothing behind

    # the gen JSONL gives the same numbers as its BEIR export
    jsonl = tmp_path / "synth.jsonl"
    jsonl.write_text("".join(synthetic_jsonl_line(sl) for sl in _lists()))
    again = level_audit(load_lists(jsonl), minilm)
    assert again.ndcg10 == pytest.approx(r.ndcg10) and again.concordance == pytest.approx(r.concordance)


def test_reversed_labels_are_caught(minilm, tmp_path):
    r = level_audit(_lists(relabel=lambda level: 3 - level), minilm)
    assert r.top_bottom.query_share == 0.0 and r.concordance < 0.1
    dcg = lambda gains: sum(g / np.log2(i + 2) for i, g in enumerate(gains))
    worst = dcg([0, 0, 1, 1, 2, 2, 3, 3]) / dcg([3, 3, 2, 2, 1, 1, 0, 0])  # 0.58: the floor for 2 per level
    assert r.ndcg10 < 0.65 and r.ndcg10 >= worst - 1e-6
    means = [s.mean for s in r.level_stats]
    assert means == sorted(means)  # increasing: the "irrelevant" passages score best


def test_missing_level_in_a_real_export(minilm, tmp_path):
    r = level_audit(load_lists(_export(tmp_path / "beir", _lists(drop={("q2", 1), ("q3", 0)}))), minilm)
    assert r.queries_missing_a_level == 2 and r.missing_by_level == {3: 0, 2: 0, 1: 1, 0: 1}
    assert {p.label: p.queries for p in r.pairs} == {"3>0": 3, "3>2": 4, "2>1": 3, "1>0": 2}
    assert r.top_bottom.query_share == 1.0


# --- the CLI --------------------------------------------------------------------------------


runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_cli_level_audit(tmp_path):
    root = _export(tmp_path / "beir", _lists())
    out, png = tmp_path / "audit.json", tmp_path / "audit.png"
    result = invoke("eval", "--dataset", root, "--level-audit", "--max-length", 64, "-o", out, "--plot", png)
    assert result.exit_code == 0, result.output
    assert "nDCG@10 of the lists" in result.output and "3>0" in result.output
    saved = json.loads(out.read_text())
    assert saved["summary"]["top_over_bottom_query_share"] == 1.0 and saved["encoder"]["max_length"] == 64
    assert saved["encoder"]["name"] == "all-MiniLM-L6-v2" and "all-MiniLM-L6-v2" in result.output
    assert png.stat().st_size > 1000

    jsonl = tmp_path / "synth.jsonl"
    jsonl.write_text("".join(synthetic_jsonl_line(sl) for sl in _lists()))
    assert invoke("eval", "--dataset", jsonl, "--level-audit", "--max-length", 64).exit_code == 0


def test_cli_level_audit_errors(tmp_path):
    root = _export(tmp_path / "beir", _lists())
    for extra, fragment in ((["--bm25"], "--bm25"), ([tmp_path / "run.jsonl"], "run files")):
        result = invoke("eval", *extra, "--dataset", root, "--level-audit")
        assert result.exit_code == 2 and "error:" in result.output and fragment in result.output, result.output
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"_id": "1", "text": "x"}\n')
    result = invoke("eval", "--dataset", queries, "--level-audit")
    assert result.exit_code == 2 and "not listrank gen output" in result.output
