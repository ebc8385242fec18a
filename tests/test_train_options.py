"""Each training setting is declared once (a TrainConfig field with its help); the CLI's flags are
made from those fields, and what a flag says reaches the run and its listrank.json."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from listrank.train.cli_support import config_parameters
from listrank.train.config import TrainConfig

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import invoke  # noqa: E402
from test_train import _write_synth  # noqa: E402


def test_every_documented_field_is_one_flag_and_nothing_else_is():
    documented = [f.name for f in dataclasses.fields(TrainConfig) if "help" in f.metadata]
    assert [p.name for p in config_parameters(TrainConfig)] == documented
    # the settings that are not plain flags have their own CLI form (or none: set in code)
    assert set(f.name for f in dataclasses.fields(TrainConfig)) - set(documented) == {
        "output", "sources", "loss_options", "preset"}


def test_help_lists_each_flag_with_its_fields_default():
    from cli_helpers import runner

    from listrank.cli import app

    out = " ".join(runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250"}).output.split())
    for flag in ("--adam-eps", "--keep-checkpoints", "--no-keep-checkpoints", "--eval-batch-size", "--log-steps"):
        assert flag in out
    assert "Peak learning rate of AdamW. [default: 1e-05]" in out


def test_flags_reach_the_run_and_are_recorded(tmp_path, monkeypatch):
    synth = _write_synth(tmp_path / "s.jsonl")
    out = tmp_path / "m"
    monkeypatch.delenv("LISTRANK_DATA", raising=False)
    res = invoke("train", synth, "-o", out, "--batch-size", "2", "--max-length", "16", "--max-steps", "2",
                 "--adam-eps", "1e-7", "--log-steps", "2", "--no-plot", "--no-progress", "--precision", "fp32",
                 "--passage-max-length", "24", "--data-dir", tmp_path)
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "listrank.json").read_text())
    hp = meta["hyperparameters"]
    assert hp["adam_eps"] == 1e-7 and hp["log_steps"] == 2 and hp["plot"] is False and hp["progress"] is False
    assert hp["query_max_length"] == 16 and hp["passage_max_length"] == 24  # an explicit flag beats --max-length
    assert meta["data"]["data_dir"] == str(tmp_path.resolve())
    assert [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()] == [2]
    assert not (out / "train_curve.png").exists()
