"""Each setting of gen, index, search and eval is declared once, as a field of its command's options
dataclass (listrank.options): the field makes exactly one flag, with the field's default and help;
a bad value is refused by the dataclass in one line (exit 2); the command records the options in
the metadata it already writes."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import typer

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import expect_user_error, invoke, runner  # noqa: E402

from listrank.cli import app  # noqa: E402
from listrank.gen.generate import GenConfig  # noqa: E402
from listrank.index import IndexOptions  # noqa: E402
from listrank.options import cli_default, option_fields, recorded  # noqa: E402
from listrank.pipeline import EvalOptions  # noqa: E402
from listrank.search import SearchOptions  # noqa: E402

COMMANDS = {"gen": GenConfig, "index": IndexOptions, "search": SearchOptions, "eval": EvalOptions}
# what each command takes besides its flags: positional arguments, and fields set in code
POSITIONAL = {"gen": {"queries"}, "index": {"merge"}, "search": {"index", "parts"}, "eval": {"runs"}}


def _click_command(name: str):
    return typer.main.get_command(app).commands[name]


def _flags(f: dataclasses.Field) -> list[str]:
    declared = f.metadata.get("flags") or ["--" + f.name.replace("_", "-")]
    return [part for decl in declared for part in decl.split("/")]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_field_is_exactly_one_flag_with_its_default_and_help(name):
    cls, command = COMMANDS[name], _click_command(name)
    options = [p for p in command.params if p.param_type_name == "option" and p.name != "help"]
    arguments = {p.name for p in command.params if p.param_type_name == "argument"}
    assert arguments == POSITIONAL[name]
    fields = {f.name: f for f in option_fields(cls)}
    assert sorted(p.name for p in options) == sorted(fields)  # one flag per field, and no other flag
    seen: list[str] = []
    for param in options:
        f = fields[param.name]
        assert sorted(param.opts + param.secondary_opts) == sorted(_flags(f)), param.name
        seen += param.opts + param.secondary_opts
        default = cli_default(f)
        if default is ...:
            assert param.required, param.name
        elif isinstance(default, list) or default is None:
            assert param.default in (None, [], ()), param.name
        else:
            assert param.default == default or getattr(param.default, "value", None) == getattr(default, "value", 0), param.name
        assert param.help == f.metadata["help"] and param.help, param.name
    assert len(seen) == len(set(seen))  # no flag twice


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_every_flag_its_help_and_default(name):
    out = runner.invoke(app, [name, "--help"], env={"COLUMNS": "400"}).output
    text = " ".join(out.replace("│", " ").split())
    for f in option_fields(COMMANDS[name]):
        for flag in _flags(f):
            assert flag in text, flag
        assert " ".join(f.metadata["help"].replace("`", "").split()[:4]) in text, f.name
        default = cli_default(f)
        if default not in (None, ..., [], False):
            shown = getattr(default, "value", default)
            assert f"[default: {shown}]" in text, f.name


def test_the_options_are_validated_in_the_dataclass(tmp_path):
    from listrank.errors import ListrankError

    with pytest.raises(ListrankError, match="--max-attempts must be at least 1"):
        GenConfig(output=tmp_path / "s.jsonl", max_attempts=0)
    with pytest.raises(ListrankError, match="--first must be at least 1"):
        GenConfig(output=tmp_path / "s.jsonl", first=0)
    with pytest.raises(ListrankError, match="unknown --precision 'fp8'"):
        IndexOptions(output=tmp_path / "i", precision="fp8")
    with pytest.raises(ListrankError, match="give exactly one of --dataset or --queries"):
        SearchOptions(output=tmp_path / "r.jsonl")
    with pytest.raises(ListrankError, match="must be different files"):
        EvalOptions(dataset="d", output=tmp_path / "x", plot=tmp_path / "x")


@pytest.mark.parametrize("args, message", [
    (["gen", "q.tsv", "-o", "s.jsonl", "--max-attempts", "0"], "--max-attempts must be at least 1"),
    (["gen", "q.tsv", "-o", "s.jsonl", "--first", "0"], "--first must be at least 1, got 0"),
    (["gen", "q.tsv", "-o", "s.jsonl", "--shard", "4/2"], "--shard '4/2': expected i/n with 0 <= i < n"),
    (["gen", "q.tsv", "-o", "s.jsonl", "--levels", "3,x"], "--levels '3,x': expected comma-separated integers"),
    (["gen", "q.tsv", "-o", "s.jsonl", "--backend-opt", "n_ctx"], "--backend-opt 'n_ctx': expected KEY=VALUE"),
    (["index", "--dataset", "d", "-o", "idx", "--precision", "fp8"], "unknown --precision 'fp8'"),
    (["index", "--dataset", "d", "-o", "idx", "--param", "m"], "--param 'm': expected KEY=VALUE"),
    (["search", "idx", "-o", "r.jsonl"], "give exactly one of --dataset or --queries"),
    (["search", "idx", "-o", "r.jsonl", "-d", "d", "-q", "q.tsv"], "give exactly one of --dataset or --queries"),
    (["eval", "--dataset", "d", "--precision", "half"], "unknown --precision 'half'"),
    (["eval", "--dataset", "d", "-o", "x.json", "--plot", "x.json"], "--output, --plot and --save-run must be different"),
    (["eval", "run.jsonl", "--dataset", "d", "--max-length", "64", "-k", "5"],
     "--max-length, -k only apply when eval retrieves"),
])
def test_a_bad_value_is_one_line_and_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "q.tsv").write_text("q1\twhat is a test\n")
    (tmp_path / "run.jsonl").write_text('{"query_id": "q1", "hits": [{"doc_id": "d1", "score": 1.0}]}\n')
    result = invoke(*args)
    expect_user_error(result, message)
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1, result.output
    assert not (tmp_path / "s.jsonl").exists() and not (tmp_path / "idx").exists()


def test_gen_records_its_settings_in_each_line(tmp_path):
    queries = tmp_path / "q.tsv"
    queries.write_text("q1\twhat is a test\nq2\twhy do tests pass\n")
    out = tmp_path / "s.jsonl"
    result = invoke("gen", queries, "-o", out, "--backend", "fake_backend:EchoBackend", "--min-words", "2",
                    "--max-attempts", "2", "--backend-opt", "per_level=2", "--no-progress", "--batch-size", "1")
    assert result.exit_code == 0, result.output
    generator = json.loads(out.read_text().splitlines()[0])["generator"]
    assert generator["min_words"] == 2 and generator["max_words"] == 400 and generator["max_attempts"] == 2
    assert generator["dataset"] is None and generator["backend"] == "fake-echo"  # the backend's own name
    # how and where it ran is not what made the list: a resumed run with another --backend-opt
    # (threads, a server URL) or --batch-size writes the same bytes (tests/test_gen_kill.py)
    for where in ("backend_options", "batch_size", "shard", "output", "rejects", "progress", "first", "limit"):
        assert where not in generator


@pytest.fixture
def small_dataset(tmp_path, make_scifact_folder):
    return make_scifact_folder(tmp_path / "mini", n_queries=5, n_docs=20)


def test_index_and_eval_record_their_options(tmp_path, small_dataset):
    idx, run, metrics = tmp_path / "idx", tmp_path / "run.jsonl", tmp_path / "m.json"
    assert invoke("index", "--dataset", small_dataset, "-o", idx, "--max-length", 32, "--batch-size", 8).exit_code == 0
    meta = json.loads((idx / "meta.json").read_text())
    assert meta["options"]["max_length"] == 32 and meta["options"]["dataset"] == str(small_dataset)
    assert meta["options"]["dtype"] == "float32" and "output" not in meta["options"]
    assert meta["encoder"]["max_length"] == 32  # what the index's own metadata already said
    assert invoke("search", idx, "--dataset", small_dataset, "-k", 5, "-o", run).exit_code == 0
    result = invoke("eval", run, "--dataset", small_dataset, "-o", metrics, "--relevance-level", 2,
                    "--metrics", "ndcg@10")
    assert result.exit_code == 0, result.output
    saved = json.loads(metrics.read_text())
    assert saved["options"]["relevance_level"] == 2 and saved["options"]["metrics"] == "ndcg@10"
    assert saved["options"]["permutations"] == 10_000 and "output" not in saved["options"]
    from listrank.evaluate import read_results_json

    assert read_results_json(metrics)[0][0].name == "run"  # the reader takes it as before


def test_recorded_is_json_and_leaves_out_where_files_go(tmp_path):
    opts = EvalOptions(dataset="beir/scifact", output=tmp_path / "m.json", params={"nprobe": "8"})
    rec = recorded(opts)
    json.dumps(rec)
    assert rec["params"] == {"nprobe": "8"} and rec["dataset"] == "beir/scifact"
    assert not {"output", "plot", "save_run", "data_dir"} & set(rec)
