"""`listrank gen` core: validation, retries, rejects, resume, shards, determinism, BEIR export, CLI.

All with scripted fake backends (tests/fake_backend.py); the real engines are in test_gen_llama_cpp.py
and test_gen_vllm.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fake_backend import EchoBackend, ScriptedBackend, valid_answer
from listrank.cli import app
from listrank.datasets import resolve
from listrank.errors import FormatError, ListrankError
from listrank.formats import Query, read_qrels, read_synthetic
from listrank.gen import GenConfig, export_beir, generate
from listrank.gen.backends.base import Completion, get_backend
from listrank.gen.generate import (
    InvalidAnswer,
    parse_shard,
    recover_jsonl,
    request_seed,
    select_queries,
    shard_of,
    validate_answer,
)
from listrank.gen.prompts import PromptBuilder, load_template

QUERIES = [Query(f"q{i}", f"what is topic number {i}") for i in range(7)]


def config(tmp_path: Path, **kw) -> GenConfig:
    kw.setdefault("output", tmp_path / "synth.jsonl")
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 3)
    return GenConfig(**kw)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- validation -------------------------------------------------------------------------------

def check(text: str, finish: str = "stop", per_level: int = 2):
    return validate_answer(Completion(text, finish_reason=finish), "what is x", (3, 2, 1, 0), per_level, 5, 400)


def test_valid_answer_parses_every_level():
    by_level = check(valid_answer("what is x", 1))
    assert sorted(by_level) == [0, 1, 2, 3]
    assert all(len(v) == 2 and all(t.strip() for t in v) for v in by_level.values())


def test_code_fenced_json_is_accepted():
    assert check("```json\n" + valid_answer("what is x", 1) + "\n```")


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda a: "not json at all", "not valid JSON"),
        (lambda a: json.dumps([1, 2]), "expected a JSON object"),
        (lambda a: json.dumps({k: v for k, v in a.items() if k != "level_1"}), "missing key 'level_1'"),
        (lambda a: json.dumps({**a, "level_2": a["level_2"][:1]}), "level_2 needs 2 passage(s), got 1"),
        (lambda a: json.dumps({**a, "level_0": ["  ", a["level_0"][1]]}), "level_0[0] is empty"),
        (lambda a: json.dumps({**a, "level_0": [3, a["level_0"][1]]}), "level_0[0] is empty or not a string"),
        (lambda a: json.dumps({**a, "level_3": ["too short", a["level_3"][1]]}), "level_3[0] has 2 words"),
        (lambda a: json.dumps({**a, "level_1": [a["level_3"][0].upper(), a["level_1"][1]]}), "repeats level_3[0]"),
        (lambda a: json.dumps({**a, "level_3": ["What  is X", a["level_3"][1]]}), "repeats the query"),
    ],
)
def test_invalid_answers_say_why(mutate, reason):
    answer = json.loads(valid_answer("what is x", 1))
    with pytest.raises(InvalidAnswer, match=reason.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        validate_answer(Completion(mutate(answer)), "what is x", (3, 2, 1, 0), 2, 3 if "repeats the" in reason else 5, 400)


def test_cut_off_answer_is_reported_as_such():
    with pytest.raises(InvalidAnswer, match="cut off at the token limit"):
        check(valid_answer("what is x", 1)[:50], finish="length")


def test_never_evaluates_model_output(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
    with pytest.raises(InvalidAnswer):
        check(evil)
    assert not marker.exists()


# --- prompts ----------------------------------------------------------------------------------

def test_prompt_has_query_levels_and_schema():
    builder = PromptBuilder(load_template(), levels=(3, 1), per_level=3, passage_words=50)
    msgs = builder.messages("how do tides work")
    user = msgs[-1]["content"]
    assert msgs[0]["role"] == "system" and "Query: how do tides work" in user
    assert "level_3 (perfectly relevant)" in user and "level_1 (related)" in user and "level_2" not in user
    assert '{"level_3": ["...", "...", "..."], "level_1": ["...", "...", "..."]}' in user
    schema = builder.json_schema()
    assert schema["required"] == ["level_3", "level_1"]
    assert schema["properties"]["level_3"]["minItems"] == schema["properties"]["level_3"]["maxItems"] == 3


def test_prompt_file_yaml_and_text(tmp_path):
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("version: mine-v2\nsystem: be brief\nuser: |\n  Q={query} {example}\nlevels:\n  3: spot on\n")
    t = load_template(prompt_file=yaml_file)
    assert t.version == "mine-v2" and t.level_definitions[3] == "spot on"
    msgs = PromptBuilder(t, levels=(3,), per_level=1).messages("x")
    assert msgs == [{"role": "system", "content": "be brief"}, {"role": "user", "content": 'Q=x {"level_3": ["..."]}\n'}]
    text_file = tmp_path / "p.txt"
    text_file.write_text("Query: {query}\n{levels} {unknown}")
    t2 = load_template(prompt_file=text_file)
    assert t2.version.startswith("file:p.txt:") and len(t2.version) == len("file:p.txt:") + 12
    assert "{unknown}" in PromptBuilder(t2).messages("y")[0]["content"]  # only known names are replaced
    text_file.write_text("no placeholder")
    with pytest.raises(ListrankError, match="no {query} placeholder"):
        load_template(prompt_file=text_file)
    with pytest.raises(ListrankError, match="unknown prompt version"):
        load_template("nope")
    with pytest.raises(ListrankError, match="no definition for level"):
        PromptBuilder(load_template(), levels=(4, 3))


# --- the run ----------------------------------------------------------------------------------

def test_generates_ids_levels_and_provenance(tmp_path):
    cfg = config(tmp_path, seed=7)
    summary = generate(cfg, QUERIES, EchoBackend())
    assert (summary.done, summary.rejected, summary.retried, summary.passages) == (7, 0, 0, 56)
    records = lines(cfg.output)
    assert [r["query_id"] for r in records] == [q.id for q in QUERIES]
    first = records[0]
    assert first["query"] == QUERIES[0].text
    assert [p["id"] for p in first["passages"]][:3] == ["q0_l_3_d_0", "q0_l_3_d_1", "q0_l_2_d_0"]
    assert [p["level"] for p in first["passages"]] == [3, 3, 2, 2, 1, 1, 0, 0]
    gen = first["generator"]
    assert gen["backend"] == "fake-echo" and gen["model"] == "echo" and gen["prompt_version"] == "sycl-v1"
    assert (gen["seed"], gen["temperature"], gen["top_p"], gen["max_tokens"], gen["attempts"]) == (7, 0.7, 0.95, 2048, 1)
    assert len(read_synthetic(cfg.output)) == 7  # the shared reader takes it


def test_malformed_output_is_retried_with_feedback(tmp_path):
    q = QUERIES[1].text
    backend = ScriptedBackend({q: ['{"level_3": ["cut', "Sure! Here is JSON:", None]})
    cfg = config(tmp_path)
    summary = generate(cfg, QUERIES[:3], backend)
    assert (summary.done, summary.retried, summary.rejected, summary.attempts) == (3, 1, 0, 5)
    rec = {r["query_id"]: r for r in lines(cfg.output)}
    assert rec["q1"]["generator"]["attempts"] == 3 and rec["q0"]["generator"]["attempts"] == 1
    retries = [r for r in backend.requests if len(r.messages) > 2]
    assert len(retries) == 2
    assert retries[0].messages[-2] == {"role": "assistant", "content": '{"level_3": ["cut'}
    assert "cut off at the token limit" in retries[0].messages[-1]["content"]
    assert "not valid JSON" in retries[1].messages[-1]["content"]
    assert len({r.seed for r in backend.requests if query_of_request(r) == q}) == 3  # new seed per attempt
    assert not cfg.rejects_path.exists() or cfg.rejects_path.read_text() == ""


def query_of_request(r):
    from fake_backend import query_of

    return query_of(r.messages)


def test_hopeless_query_goes_to_rejects_with_reason_and_is_not_redone(tmp_path):
    q = QUERIES[2].text
    dup = json.dumps({f"level_{lv}": ["the same passage text over and over"] * 2 for lv in (3, 2, 1, 0)})
    cfg = config(tmp_path, max_attempts=2)
    summary = generate(cfg, QUERIES[:4], ScriptedBackend({q: [dup, dup]}))
    assert (summary.done, summary.rejected) == (3, 1)
    assert [r["query_id"] for r in lines(cfg.output)] == ["q0", "q1", "q3"]
    (reject,) = lines(cfg.rejects_path)
    assert reject["query_id"] == "q2" and reject["query"] == q and reject["attempts"] == 2
    assert reject["reason"] == "level_3[1] repeats level_3[0]" and reject["last_answer"] == dup
    assert cfg.rejects_path.name == "synth.rejects.jsonl"
    # a re-run neither redoes it nor duplicates anything
    again = generate(cfg, QUERIES[:4], ScriptedBackend({}))
    assert (again.already_done, again.done, again.rejected) == (4, 0, 0)
    # ... unless asked to: then it is tried again and leaves the rejects file
    retried = generate(config(tmp_path, retry_rejected=True), QUERIES[:4], ScriptedBackend({}))
    assert (retried.done, retried.rejected) == (1, 0)
    assert sorted(r["query_id"] for r in lines(cfg.output)) == ["q0", "q1", "q2", "q3"]
    assert cfg.rejects_path.read_text() == ""


def test_resume_skips_done_queries(tmp_path):
    cfg = config(tmp_path, limit=4)
    assert generate(cfg, QUERIES, EchoBackend()).done == 4
    backend = EchoBackend()
    summary = generate(config(tmp_path), QUERIES, backend)
    assert (summary.already_done, summary.done) == (4, 3)
    asked = [query_of_request(r) for call in backend.calls for r in call]
    assert asked == [q.text for q in QUERIES[4:]]
    assert [r["query_id"] for r in lines(cfg.output)] == [q.id for q in QUERIES]
    # nothing left: no backend is even built
    assert generate(config(tmp_path, backend="no-such-backend"), QUERIES).done == 0


def test_resume_drops_a_partial_last_line(tmp_path):
    cfg = config(tmp_path, limit=2)
    generate(cfg, QUERIES, EchoBackend())
    full = cfg.output.read_text()
    with open(cfg.output, "a") as fh:
        fh.write('{"query_id": "q2", "query": "what is top')  # what a kill in mid-write leaves
    summary = generate(config(tmp_path), QUERIES, EchoBackend())
    assert summary.dropped_partial_bytes > 0 and summary.done == 5
    text = cfg.output.read_text()
    assert text.startswith(full) and text.endswith("\n")
    assert [r["query_id"] for r in lines(cfg.output)] == [q.id for q in QUERIES]


def test_damaged_complete_line_stops_with_file_and_line(tmp_path):
    out = tmp_path / "synth.jsonl"
    out.write_text('{"query_id": "q0"}\nnot json\n')
    with pytest.raises(FormatError, match=r"synth.jsonl:2: damaged line"):
        recover_jsonl(out)


def test_resume_with_other_settings_is_refused(tmp_path):
    generate(config(tmp_path, limit=1), QUERIES, EchoBackend())
    with pytest.raises(ListrankError, match=r"other generation settings \(seed: 0 -> 5\)"):
        generate(config(tmp_path, seed=5), QUERIES, EchoBackend())


def test_repeat_penalty_reaches_requests_and_metadata_and_is_part_of_the_identity(tmp_path):
    backend = EchoBackend()
    generate(config(tmp_path, limit=1, repeat_penalty=1.3), QUERIES, backend)
    assert {r.sampling.repeat_penalty for call in backend.calls for r in call} == {1.3}
    assert lines(tmp_path / "synth.jsonl")[0]["generator"]["repeat_penalty"] == 1.3
    with pytest.raises(ListrankError, match=r"other generation settings \(repeat_penalty: 1.3 -> 1.1\)"):
        generate(config(tmp_path, repeat_penalty=1.1), QUERIES, EchoBackend())
    assert generate(config(tmp_path, repeat_penalty=1.3, limit=1), QUERIES, EchoBackend()).done == 1
    with pytest.raises(ListrankError, match="repeat-penalty must be > 0"):
        config(tmp_path, repeat_penalty=0.0)


def test_lines_from_before_repeat_penalty_resume_only_with_it_off(tmp_path):
    cfg = config(tmp_path, limit=1, repeat_penalty=1.0)
    generate(cfg, QUERIES, EchoBackend())
    old = lines(cfg.output)[0]
    del old["generator"]["repeat_penalty"]
    cfg.output.write_text(json.dumps(old) + "\n")
    with pytest.raises(ListrankError, match=r"repeat_penalty: 1.0 -> 1.2"):
        generate(config(tmp_path, repeat_penalty=1.2), QUERIES, EchoBackend())
    assert generate(config(tmp_path, repeat_penalty=1.0, limit=1), QUERIES, EchoBackend()).done == 1


def test_cli_repeat_penalty_flag(tmp_path):
    queries = tmp_path / "q.tsv"
    queries.write_text("1\tfirst query\n")
    res = cli(queries, "-o", tmp_path / "s.jsonl", "--repeat-penalty", 1.25)
    assert res.exit_code == 0, res.output
    assert lines(tmp_path / "s.jsonl")[0]["generator"]["repeat_penalty"] == 1.25
    res = cli(queries, "-o", tmp_path / "d.jsonl")
    assert res.exit_code == 0, res.output
    assert lines(tmp_path / "d.jsonl")[0]["generator"]["repeat_penalty"] == 1.0  # the backend's default


def test_same_seed_same_output_whatever_the_batching(tmp_path):
    a = generate(config(tmp_path, output=tmp_path / "a.jsonl", seed=3, batch_size=2), QUERIES, EchoBackend())
    b = generate(config(tmp_path, output=tmp_path / "b.jsonl", seed=3, batch_size=5), QUERIES, EchoBackend())
    c = generate(config(tmp_path, output=tmp_path / "c.jsonl", seed=4), QUERIES, EchoBackend())
    assert a.done == b.done == c.done == 7
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()
    assert request_seed(3, "q1", 0) == request_seed(3, "q1", 0) != request_seed(3, "q1", 1)


def test_shards_partition_the_queries_and_merge_by_concatenation(tmp_path):
    many = [Query(f"id{i}", f"query {i}") for i in range(200)]
    parts = [select_queries(many, (i, 3)) for i in range(3)]
    assert sorted(q.id for p in parts for q in p) == sorted(q.id for q in many)
    assert all(40 < len(p) < 95 for p in parts)  # a hash split, roughly even
    assert select_queries(list(reversed(many)), (1, 3)) == list(reversed(parts[1]))  # order-independent
    assert shard_of("id5", 3) == shard_of("id5", 3)
    for i in range(2):
        generate(config(tmp_path, output=tmp_path / f"part{i}.jsonl", shard=(i, 2)), QUERIES, EchoBackend())
    whole = tmp_path / "whole.jsonl"
    generate(config(tmp_path, output=whole), QUERIES, EchoBackend())
    merged = tmp_path / "merged.jsonl"
    merged.write_text((tmp_path / "part0.jsonl").read_text() + (tmp_path / "part1.jsonl").read_text())
    assert sorted(merged.read_text().splitlines()) == sorted(whole.read_text().splitlines())
    # the documented merge: resume the concatenation with the full query file; nothing is left to do
    assert generate(config(tmp_path, output=merged), QUERIES, EchoBackend()).done == 0
    with pytest.raises(ListrankError, match="0 <= i < n"):
        parse_shard("2/2")


def test_export_beir_graded_and_readable(tmp_path):
    cfg = config(tmp_path, export_beir=tmp_path / "beir", levels=(3, 2, 1, 0), per_level=2)
    summary = generate(cfg, QUERIES[:3], EchoBackend())
    folder = Path(summary.export)
    # (+ the marker that lets a later export replace this folder, and nothing else)
    assert sorted(p.name for p in folder.iterdir()) == [".listrank-output", "corpus.jsonl", "qrels", "queries.jsonl"]
    ds = resolve(folder)
    assert len(ds.corpus) == 24 and [q.id for q in ds.queries("train")] == ["q0", "q1", "q2"]
    qrels = read_qrels(folder / "qrels" / "train.tsv")
    assert qrels["q1"] == {"q1_l_3_d_0": 3, "q1_l_3_d_1": 3, "q1_l_2_d_0": 2, "q1_l_2_d_1": 2,
                           "q1_l_1_d_0": 1, "q1_l_1_d_1": 1, "q1_l_0_d_0": 0, "q1_l_0_d_1": 0}
    assert (folder / "qrels" / "train.tsv").read_text().startswith("query-id\tcorpus-id\tscore\n")
    export_beir(cfg.output, folder, split="dev")  # replaces the folder atomically
    assert [p.name for p in (folder / "qrels").iterdir()] == ["dev.tsv"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_backend_registry():
    assert get_backend("fake_backend:EchoBackend") is EchoBackend
    with pytest.raises(ListrankError, match="unknown backend 'nope'"):
        get_backend("nope")
    with pytest.raises(ListrankError, match="cannot import"):
        get_backend("no_such_module:X")
    with pytest.raises(ListrankError, match="unknown option"):
        EchoBackend(bogus=1)


# --- the command line ---------------------------------------------------------------------------

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, ["gen", *map(str, args), "--backend", "fake_backend:EchoBackend", "--no-progress"])


def test_cli_end_to_end_with_export(tmp_path):
    queries = tmp_path / "q.tsv"
    queries.write_text("1\tfirst query\n2\tsecond query\n")
    res = cli(queries, "-o", tmp_path / "s.jsonl", "--per-level", 1, "--backend-opt", "per_level=1",
              "--export-beir", tmp_path / "beir", "--seed", 2)
    assert res.exit_code == 0, res.output
    assert "done now" in res.output and "2  (8 passages)" in res.output
    assert [r["query_id"] for r in lines(tmp_path / "s.jsonl")] == ["1", "2"]
    assert (tmp_path / "beir" / "qrels" / "train.tsv").exists()


def test_cli_bad_query_line_gives_file_and_line(tmp_path):
    queries = tmp_path / "q.tsv"
    queries.write_text("1\tfirst query\nno tab here\n3\tthird\n")
    res = cli(queries, "-o", tmp_path / "s.jsonl")
    assert res.exit_code == 2 and "q.tsv:2: expected 'qid<TAB>text'" in res.output
    assert not (tmp_path / "s.jsonl").exists()
    res = cli(queries, "-o", tmp_path / "s.jsonl", "--skip-invalid")
    assert res.exit_code == 0, res.output
    assert "skipped 1 invalid query line" in res.output
    assert [r["query_id"] for r in lines(tmp_path / "s.jsonl")] == ["1", "3"]


def test_cli_first_is_a_fixed_slice_that_resumes(tmp_path):
    queries = tmp_path / "q.tsv"
    queries.write_text("".join(f"{i}\tquery number {i}\n" for i in range(1, 6)))
    out = tmp_path / "s.jsonl"
    res = cli(queries, "-o", out, "--first", 3, "--limit", 2)  # stopped after 2 of the slice
    assert res.exit_code == 0, res.output
    assert [r["query_id"] for r in lines(out)] == ["1", "2"]
    res = cli(queries, "-o", out, "--first", 3)  # the re-run finishes the slice, no further
    assert res.exit_code == 0, res.output
    assert [r["query_id"] for r in lines(out)] == ["1", "2", "3"]
    res = cli(queries, "-o", out, "--first", 3)
    assert res.exit_code == 0 and [r["query_id"] for r in lines(out)] == ["1", "2", "3"]
    res = cli(queries, "-o", out, "--first", 0)
    assert res.exit_code == 2 and "--first must be at least 1" in res.output


def test_cli_dataset_and_split(tmp_path, monkeypatch):
    root = tmp_path / "data" / "toy" / "set"
    (root / "qrels").mkdir(parents=True)
    (root / "queries.jsonl").write_text('{"_id": "a", "text": "alpha"}\n{"_id": "b", "text": "beta"}\n')
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nb\td1\t1\n")
    monkeypatch.setenv("LISTRANK_DATA", str(tmp_path / "data"))
    res = cli("--dataset", "toy/set", "--split", "train", "-o", tmp_path / "s.jsonl")
    assert res.exit_code == 0, res.output
    assert [r["query_id"] for r in lines(tmp_path / "s.jsonl")] == ["b"]
    res = cli(tmp_path / "x.tsv", "--dataset", "toy/set", "-o", tmp_path / "s.jsonl")
    assert res.exit_code == 2 and "one of them" in res.output


def test_second_writer_on_the_same_output_is_refused(tmp_path):
    from listrank.gen.generate import AppendLog

    cfg = config(tmp_path)
    holder = AppendLog(cfg.output)
    try:
        with pytest.raises(ListrankError, match="being written by another process"):
            generate(cfg, QUERIES, EchoBackend())
    finally:
        holder.close()
    assert generate(cfg, QUERIES, EchoBackend()).done == 7
    assert not cfg.rejects_path.exists()  # no rejects, no rejects file


def test_progress_bar_and_summary_render(tmp_path, capsys):
    from listrank.gen.generate import console, summary_table

    summary = generate(config(tmp_path, progress=True), QUERIES, EchoBackend())
    console.print(summary_table(summary))
    err = capsys.readouterr().err
    assert "passages/s" in err and "tok/s" in err and "done now" in err and "7  (56 passages)" in err


def test_export_with_nothing_generated_warns_instead_of_failing(tmp_path):
    bad = ["not json"] * 3
    cfg = config(tmp_path, export_beir=tmp_path / "beir")
    summary = generate(cfg, QUERIES[:1], ScriptedBackend({QUERIES[0].text: bad}))
    assert (summary.done, summary.rejected, summary.export) == (0, 1, None)
    assert not (tmp_path / "beir").exists()


def test_backends_map_repeat_penalty():
    from types import SimpleNamespace

    from listrank.gen.backends.base import Request, Sampling
    from listrank.gen.backends.vllm import VllmBackend

    vllm = object.__new__(VllmBackend)  # no engine: only the request -> SamplingParams mapping
    vllm._vllm, vllm.structured = SimpleNamespace(SamplingParams=lambda **kw: kw), False
    params = vllm._params(Request([{"role": "user", "content": "q"}], Sampling(repeat_penalty=1.2), seed=1))
    assert params["repetition_penalty"] == 1.2 and params["temperature"] == 0.7
    from listrank.gen.backends.llama_cpp import LlamaCppBackend
    from listrank.gen.backends.openai_http import OpenAIHttpBackend

    assert (LlamaCppBackend.default_repeat_penalty, VllmBackend.default_repeat_penalty,
            OpenAIHttpBackend.default_repeat_penalty) == (1.1, 1.0, 1.0)
