"""`listrank gen` against hostile LLM replies, bad prompt files and failed starts (issue 13: 4, 7, 9).

Every reply of any shape becomes either a bounded retry with backoff or a reject with a reason;
never a traceback, and one bad reply never stops the run.
"""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from fake_backend import ScriptedBackend, valid_answer
from fake_llm_server import HOSTILE, FakeLLM
from listrank.cli import app
from listrank.errors import ListrankError
from listrank.formats import Query, read_synthetic
from listrank.gen import GenConfig, generate
from listrank.gen.backends.base import Completion, Request, Sampling, get_backend
from listrank.gen.generate import InvalidAnswer, validate_answer
from listrank.gen.prompts import load_template

runner = CliRunner()
LEVELS = (3, 2, 1, 0)


def _validate(text, **kw):
    return validate_answer(Completion(text, **kw), "q", LEVELS, 2, 5, 400)


def _backend(url, **opts):
    return get_backend("openai-http")(None, **{"base_url": url, "backoff": "0.01", "retries": "2", "timeout": "1", **opts})


def _request(query="what is alpha"):
    messages = [{"role": "user", "content": f"Write passages.\n\nQuery: {query}"}]
    return Request(messages, Sampling(), seed=1)


# --- the validator: any text, any shape --------------------------------------------------------

def _with_surrogate() -> str:
    answer = json.loads(valid_answer("x", 1))
    answer["level_3"][0] += " \ud800"
    return json.dumps(answer)  # the escape \ud800 decodes to a lone surrogate


@pytest.mark.parametrize("text, reason", [
    ("[" * 100_000, "nested too deeply"),
    (_with_surrogate(), "lone surrogate"),
    (42, "not text"),
    (["a"], "not text"),
    (None, "not text"),
])
def test_validator_turns_any_answer_into_a_reason(text, reason):
    with pytest.raises(InvalidAnswer, match=reason):
        _validate(text)


def test_validator_reports_a_backend_error_as_the_reason():
    with pytest.raises(InvalidAnswer, match="HTTP 503"):
        validate_answer(Completion(valid_answer("q", 1), error="HTTP 503 (3 tries)"), "q", LEVELS, 2, 5, 400)


def test_lone_surrogates_and_non_text_answers_become_rejects_not_crashes(tmp_path):
    surrogate = json.loads(valid_answer("bad", 1))
    surrogate["level_2"][1] += " \ud800"
    backend = ScriptedBackend({"bad": [json.dumps(surrogate, ensure_ascii=False)] * 2, "nested": ["[" * 50_000] * 2})
    cfg = GenConfig(output=tmp_path / "s.jsonl", max_attempts=2, progress=False)
    queries = [Query("a", "good"), Query("b", "bad"), Query("c", "nested"), Query("d", "also good")]
    summary = generate(cfg, queries, backend)
    assert (summary.done, summary.rejected) == (2, 2)
    rejects = [json.loads(l) for l in cfg.rejects_path.read_text(encoding="utf-8").splitlines()]
    assert {r["query_id"]: r["reason"] for r in rejects} == {
        "b": "level_2[1] is not valid Unicode (a lone surrogate)", "c": "the JSON is nested too deeply"}
    assert "\ufffd" in rejects[0]["last_answer"]  # written as valid UTF-8


# --- the openai-http backend: every hostile reply -------------------------------------------------

@pytest.mark.parametrize("name", HOSTILE)
def test_openai_http_hostile_reply_is_an_error_completion_never_an_exception(name):
    with FakeLLM(lambda q, n: name) as server:
        completion = _backend(server.url).generate([_request()])[0]
    if name == "bad_usage":  # a valid answer with nonsense token counts: kept, counts as 0
        assert completion.error is None and (completion.prompt_tokens, completion.completion_tokens) == (0, 0)
        return
    if name in ("surrogates", "not_json_answer", "nested_answer"):  # the text arrives; gen's validator rejects it
        with pytest.raises(InvalidAnswer):
            validate_answer(completion, "what is alpha", LEVELS, 2, 5, 400)
        return
    assert completion.error, name
    assert completion.text == ""


@pytest.mark.parametrize("name, tries", [("http429", 3), ("http500", 3), ("http503", 3), ("truncated", 3),
                                         ("drop", 3), ("garbage_body", 3), ("error_object", 3),
                                         ("content_number", 1), ("html", 1), ("no_choices", 1)])
def test_transient_failures_are_retried_with_backoff_and_shape_errors_are_not(name, tries):
    with FakeLLM(lambda q, n: name) as server:
        completion = _backend(server.url).generate([_request()])[0]
        assert len(server.served) == tries, server.served
    assert completion.error


def test_a_busy_server_is_waited_out():
    with FakeLLM(lambda q, n: ["http429", "http503", "drop"][n] if n < 3 else "valid") as server:
        completion = _backend(server.url, retries="3").generate([_request()])[0]
    assert completion.error is None and json.loads(completion.text)["level_3"]


def test_a_timeout_is_retried_then_rejected_in_bounded_time():
    with FakeLLM(lambda q, n: "slow", slow_s=1.0) as server:
        start = time.perf_counter()
        backend = get_backend("openai-http")(None, base_url=server.url, backoff="0.01", retries="1", timeout="0.2")
        completion = backend.generate([_request()])[0]
        assert time.perf_counter() - start < 3
    assert "timed out" in completion.error


def test_auth_errors_and_no_server_still_stop_the_run(tmp_path):
    with pytest.raises(ListrankError, match="is the server running"):
        get_backend("openai-http")(None, base_url="http://127.0.0.1:9/v1", retries="0").generate([_request()])


def test_one_bad_reply_never_stops_a_run(tmp_path):
    # every hostile reply once (round-robin over the queries), then valid answers
    queries = [Query(f"q{i}", f"question {i}") for i in range(len(HOSTILE) + 5)]
    plan = {q.text: HOSTILE[i] if i < len(HOSTILE) else "valid" for i, q in enumerate(queries)}
    with FakeLLM(lambda q, n: plan[q] if n == 0 else "valid") as server:
        cfg = GenConfig(output=tmp_path / "s.jsonl", backend="openai-http", progress=False, max_attempts=2,
                        backend_options={"base_url": server.url, "backoff": "0.01", "retries": "1", "timeout": "2"})
        summary = generate(cfg, queries)
    # every query recovered on its second attempt (or its HTTP retry)
    assert summary.done == len(queries) and summary.rejected == 0
    assert len(read_synthetic(cfg.output)) == len(queries)


def test_every_query_failing_ends_in_rejects_with_reasons(tmp_path):
    queries = [Query(f"q{i}", f"question {i}") for i in range(len(HOSTILE))]
    plan = {q.text: HOSTILE[i] for i, q in enumerate(queries)}
    with FakeLLM(lambda q, n: plan[q]) as server:
        cfg = GenConfig(output=tmp_path / "s.jsonl", backend="openai-http", progress=False, max_attempts=1,
                        backend_options={"base_url": server.url, "backoff": "0.01", "retries": "0"})
        summary = generate(cfg, queries)
    rejects = {json.loads(l)["query_id"]: json.loads(l)["reason"] for l in cfg.rejects_path.read_text().splitlines()}
    good = {r.query_id for r in read_synthetic(cfg.output)} if cfg.output.stat().st_size else set()
    assert good == {f"q{HOSTILE.index('bad_usage')}"}  # the only valid answer among them
    assert set(rejects) | good == {q.id for q in queries} and not set(rejects) & good
    assert summary.rejected == len(HOSTILE) - 1 and all(rejects.values())
    assert "HTML" in rejects[f"q{HOSTILE.index('html')}"]
    assert "no choices" in rejects[f"q{HOSTILE.index('empty_choices')}"]
    assert "HTTP 429" in rejects[f"q{HOSTILE.index('http429')}"]


def test_llama_cpp_prompt_too_long_is_that_querys_reject_not_the_batchs():
    """The batched llama.cpp path raised for the whole batch on one over-long prompt."""
    pytest.importorskip("llama_cpp")
    backend = get_backend("llama-cpp")(None, n_ctx="256", n_parallel="2", n_threads="1")
    try:
        long_query = _request(" ".join(["alpha beta gamma"] * 200))
        short = Request(_request().messages, Sampling(max_tokens=4), seed=1)
        too_long, fine = backend.generate([long_query, short])
    finally:
        backend.close()
    assert "does not fit n_ctx=256" in too_long.error
    assert fine.error is None and fine.completion_tokens >= 1


# --- prompt files, unknown backends, 0-byte outputs ----------------------------------------------

@pytest.mark.parametrize("levels, message", [
    ("levels: [1, 2]", "'levels' must be a mapping"),
    ("levels: {high: 'x'}", "'high' is not an integer level"),
    ("levels: {3: 7}", "must be a non-empty string"),
    ("levels: {2.5: 'x'}", "not an integer level"),
    ("levels: 'abc'", "'levels' must be a mapping"),
])
def test_malformed_levels_in_a_prompt_file_is_a_clear_error(tmp_path, levels, message):
    path = tmp_path / "p.yaml"
    path.write_text(f"user: 'Query: {{query}}'\n{levels}\n")
    with pytest.raises(ListrankError, match=message):
        load_template(prompt_file=path)
    result = runner.invoke(app, ["gen", str(tmp_path / "q.tsv"), "-o", str(tmp_path / "o.jsonl"),
                                 "--prompt-file", str(path)], catch_exceptions=False)
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_unknown_backend_leaves_no_output_file(tmp_path):
    (tmp_path / "q.tsv").write_text("q1\tfirst\n")
    out = tmp_path / "o.jsonl"
    result = runner.invoke(app, ["gen", str(tmp_path / "q.tsv"), "-o", str(out), "--backend", "nope"],
                           catch_exceptions=False)
    assert result.exit_code == 2 and "unknown backend" in result.output
    assert not out.exists()
    # a backend that fails while starting (bad option) cleans up too
    result = runner.invoke(app, ["gen", str(tmp_path / "q.tsv"), "-o", str(out), "--backend", "openai-http",
                                 "--backend-opt", "bogus=1"], catch_exceptions=False)
    assert result.exit_code == 2 and "unknown option" in result.output
    assert not out.exists() and not list(tmp_path.glob("*.rejects.jsonl"))


def test_gen_refuses_to_write_over_its_input(tmp_path):
    queries = tmp_path / "q.tsv"
    queries.write_text("q1\tfirst\nq2\tno newline at the end")
    before = queries.read_bytes()
    result = runner.invoke(app, ["gen", str(queries), "-o", str(queries), "--backend", "fake_backend:EchoBackend"],
                           catch_exceptions=False)
    assert result.exit_code == 2 and "input" in result.output
    assert queries.read_bytes() == before  # the partial-last-line recovery never cut the input
    result = runner.invoke(app, ["gen", str(queries), "-o", str(tmp_path / "o.jsonl"), "--rejects",
                                 str(tmp_path / "o.jsonl"), "--backend", "fake_backend:EchoBackend"],
                           catch_exceptions=False)
    assert result.exit_code == 2 and "--rejects" in result.output


def test_export_beir_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "q.tsv").write_text("q1\tfirst\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["gen", str(tmp_path / "q.tsv"), "-o", str(tmp_path / "o.jsonl"),
                                 "--backend", "fake_backend:EchoBackend", "--export-beir", str(mine)],
                           catch_exceptions=False)
    assert result.exit_code == 2 and "not written by listrank" in result.output
    assert (mine / "notes.txt").read_text() == "keep me" and not (tmp_path / "o.jsonl").exists()


# --- progress off a terminal -------------------------------------------------------------------

def test_gen_off_a_terminal_prints_periodic_progress_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTRANK_PROGRESS_INTERVAL", "0.1")
    (tmp_path / "q.tsv").write_text("".join(f"q{i}\tquestion {i}\n" for i in range(12)))
    result = runner.invoke(app, ["gen", str(tmp_path / "q.tsv"), "-o", str(tmp_path / "o.jsonl"), "--batch-size", "2",
                                 "--backend", "fake_backend:EchoBackend", "--backend-opt", "delay=0.05"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [l for l in result.output.splitlines() if l.startswith("gen: ")]
    assert len(lines) >= 3, result.output
    assert "/12 (" in lines[-1] and "elapsed" in lines[-1] and "rejected=0" in lines[-1]


def test_no_progress_means_no_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTRANK_PROGRESS_INTERVAL", "0.05")
    (tmp_path / "q.tsv").write_text("".join(f"q{i}\tquestion {i}\n" for i in range(4)))
    result = runner.invoke(app, ["gen", str(tmp_path / "q.tsv"), "-o", str(tmp_path / "o.jsonl"), "--no-progress",
                                 "--backend", "fake_backend:EchoBackend", "--backend-opt", "delay=0.05"],
                           catch_exceptions=False)
    assert result.exit_code == 0 and not [l for l in result.output.splitlines() if l.startswith("gen: ")]
