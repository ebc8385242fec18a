"""Hostile input for `listrank train` (issue 13): non-finite settings and models, damaged
checkpoints, wrong-typed config files, and what a failed or finished run leaves behind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from listrank.errors import ListrankError
from listrank.train.checkpoints import CheckpointStore, verify

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import expect_user_error, invoke  # noqa: E402
from test_train import _config, _weights, _write_synth  # noqa: E402

TINY = ["--batch-size", "2", "--max-length", "16", "--no-progress", "--no-plot", "--precision", "fp32"]


@pytest.fixture
def synth(tmp_path):
    return _write_synth(tmp_path / "s.jsonl")


@pytest.mark.parametrize("flag, value", [("--lr", "inf"), ("--lr", "nan"), ("--temperature", "inf"),
                                         ("--weight-decay", "nan")])
def test_non_finite_settings_are_refused_before_any_work(tmp_path, synth, flag, value):
    out = tmp_path / "m"
    expect_user_error(invoke("train", synth, "-o", out, flag, value, *TINY), "must be a finite number")
    assert not out.exists()


def test_weights_that_overflow_are_never_written(tmp_path, synth):
    # lr 1e30: the first step's update leaves finite weights of ~1e30 whose embeddings are NaN.
    out = tmp_path / "m"
    result = invoke("train", synth, "-o", out, "--lr", "1e30", "--max-steps", "3", "--save-steps", "1", *TINY)
    expect_user_error(result, "checkpoint step-1", "non-finite embeddings", "--lr 1e+30 is too high",
                      "the model was not written")
    assert not out.exists()  # nothing this run wrote is worth keeping


def test_overflow_after_a_good_checkpoint_keeps_it_and_says_so(tmp_path, synth):
    from listrank.train import train

    out = tmp_path / "m"

    def blow_up(step, record):  # the weights overflow after the checkpoint of step 1 was written
        if step == 1:
            with torch.no_grad():
                next(p for p in trainer_params if p.ndim == 2).fill_(float("nan"))

    import listrank.train.trainer as trainer_mod

    trainer_params: list = []
    original = trainer_mod.Trainer.micro_step

    def capture(self, model, *a, **kw):
        if not trainer_params:
            trainer_params.extend(model.parameters())
        return original(self, model, *a, **kw)

    trainer_mod.Trainer.micro_step = capture
    try:
        with pytest.raises(ListrankError, match=r"not finite .*newest intact checkpoint is .*step-1"):
            train(_config(out, synth, max_steps=3, save_steps=1), on_step=blow_up)
    finally:
        trainer_mod.Trainer.micro_step = original
    assert (out / "checkpoints" / "step-1").is_dir() and not (out / "checkpoints" / "step-2").exists()
    assert not (out / "listrank.json").exists()


def test_unknown_loss_and_loss_option_fail_fast_and_leave_nothing(tmp_path, synth):
    out = tmp_path / "m"
    expect_user_error(invoke("train", synth, "-o", out, "--loss", "nope", *TINY), "unknown loss 'nope'")
    expect_user_error(invoke("train", synth, "-o", out, "--loss-opt", "foo=1", *TINY), "does not accept options")
    assert not out.exists()


def test_a_failed_run_removes_the_folder_it_created_but_not_one_it_was_given(tmp_path, synth):
    from listrank.train import train

    def crash(step, record):
        raise RuntimeError("boom")

    out = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        train(_config(out, synth, save_steps=0), on_step=crash)
    assert not out.exists()
    given = tmp_path / "given"
    given.mkdir()
    with pytest.raises(RuntimeError):
        train(_config(given, synth, save_steps=0), on_step=crash)
    assert given.is_dir()  # an empty folder the user made stays


@pytest.mark.parametrize("body, fragment", [
    ('lr: "fast"\n', "training option lr: expected float, got str 'fast'"),
    ("batch_size: [1]\n", "training option batch_size: expected int, got list [1]"),
    ("normalize: 1\n", "training option normalize: expected bool, got int 1"),
    ("max_steps: 2.5\n", "training option max_steps: expected int or none, got float 2.5"),
    ("no_such_option: 1\n", "unknown training option(s) ['no_such_option']"),
])
def test_wrong_typed_config_values_are_one_line_errors(tmp_path, synth, body, fragment):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(body)
    out = tmp_path / "m"
    expect_user_error(invoke("train", synth, "-o", out, "--config", cfg, *TINY), f"{cfg}:", fragment)
    assert not out.exists()


def test_a_finished_run_keeps_checkpoints_only_when_asked(tmp_path, synth):
    from listrank.train import train

    train(_config(tmp_path / "a", synth, max_steps=2, save_steps=1))
    assert (tmp_path / "a" / "model.safetensors").exists() and not (tmp_path / "a" / "checkpoints").exists()
    train(_config(tmp_path / "b", synth, max_steps=2, save_steps=1, keep_checkpoints=True))
    kept = CheckpointStore(tmp_path / "b", 2).all()
    assert [c.step for c in kept] == [1] and all(verify(c.path) is None for c in kept)


# --- damaged checkpoints --------------------------------------------------------------------------------

class _Crash(Exception):
    pass


def _crash_at(n):
    def hook(step, record):
        if step == n:
            raise _Crash

    return hook


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run stopped after step 3 with checkpoints step-2 and step-3, and the uninterrupted run."""
    from listrank.train import train

    tmp = tmp_path_factory.mktemp("ckpt")
    synth = _write_synth(tmp / "s.jsonl")
    full = train(_config(tmp / "full", synth, max_steps=4, save_steps=1))
    with pytest.raises(_Crash):
        train(_config(tmp / "run", synth, max_steps=4, save_steps=1), on_step=_crash_at(4))
    return tmp, synth, full


def _copy(tmp, name):
    import shutil

    dst = tmp / name
    shutil.copytree(tmp / "run", dst)
    return dst


@pytest.mark.parametrize("victim", ["model.safetensors", "trainer_state.pt", "rng_state.pt", "listrank.json",
                                    "tokenizer.json", "manifest.json"])
def test_each_truncated_file_marks_the_checkpoint_damaged(interrupted, victim):
    tmp, _, _ = interrupted
    out = _copy(tmp, f"v-{victim}")
    ckpt = out / "checkpoints" / "step-3"
    assert verify(ckpt) is None
    data = (ckpt / victim).read_bytes()
    (ckpt / victim).write_bytes(data[: len(data) // 2])
    assert verify(ckpt) is not None
    assert verify(out / "checkpoints" / "step-2") is None


def test_resume_falls_back_to_the_newest_intact_checkpoint(interrupted, capsys):
    from listrank.train import train

    tmp, synth, full = interrupted
    out = _copy(tmp, "fallback")
    weights = out / "checkpoints" / "step-3" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    resumed = train(_config(out, synth, max_steps=4, save_steps=1, resume=True))
    err = " ".join(capsys.readouterr().err.split())
    assert "step-3 is damaged (model.safetensors has 1000 bytes" in err and "skipping it" in err
    assert resumed.resumed_from == 2 and resumed.steps == 4
    # Resuming from step 2 instead of 3 replays step 3 exactly: same model as the uninterrupted run.
    assert [r["loss"] for r in resumed.log] == pytest.approx([r["loss"] for r in full.log], abs=1e-6)
    a, b = _weights(tmp / "full"), _weights(out)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def test_resume_with_every_checkpoint_damaged_is_a_clear_error(interrupted, capsys):
    from listrank.train import train

    tmp, synth, _ = interrupted
    out = _copy(tmp, "all-bad")
    for c in CheckpointStore(out, 2).all():
        (c.path / "trainer_state.pt").write_bytes(b"")
    with pytest.raises(ListrankError, match="every checkpoint .* is damaged"):
        train(_config(out, synth, max_steps=4, save_steps=1, resume=True))
    assert (out / "checkpoints" / "step-3").is_dir()  # damaged checkpoints are reported, never deleted


def test_a_checkpoint_from_before_manifests_is_checked_by_loading_it(interrupted):
    tmp, _, _ = interrupted
    out = _copy(tmp, "legacy")
    ckpt = out / "checkpoints" / "step-3"
    (ckpt / "manifest.json").unlink()
    assert verify(ckpt) is None
    (ckpt / "rng_state.pt").write_bytes(b"not a torch file")
    assert "does not load" in verify(ckpt)


# --- resume with validation (issue 10) -------------------------------------------------------------------

@pytest.mark.slow  # three training runs with validation at every step
def test_resume_with_validation_gives_the_uninterrupted_result(tmp_path):
    from listrank.train import train

    synth = _write_synth(tmp_path / "s.jsonl", n=12)
    kw = dict(max_steps=4, save_steps=1, eval_holdout=0.34, eval_steps=1, lr=3e-4)
    full = train(_config(tmp_path / "full", synth, **kw))
    with pytest.raises(_Crash):
        train(_config(tmp_path / "run", synth, **kw), on_step=_crash_at(3))
    resumed = train(_config(tmp_path / "run", synth, resume=True, **kw))
    assert resumed.resumed_from == 3  # step 3's checkpoint is written before on_step sees step 3
    v, w = resumed.validation, full.validation
    assert v["final_model"] == w["final_model"] and v["best"]["step"] == w["best"]["step"]
    assert [h["step"] for h in v["history"]] == [h["step"] for h in w["history"]] == [0, 1, 2, 3, 4]
    assert [h["score"] for h in v["history"]] == pytest.approx([h["score"] for h in w["history"]], abs=1e-6)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "run")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
