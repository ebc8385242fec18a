"""The CI time budget (tests/ci_budget.py): slow tests that no longer fit are skipped and listed."""

from __future__ import annotations

import time

from ci_budget import budget_skip_reason

pytest_plugins = ["pytester"]

INNER = """
import pytest

def test_fast():
    pass

@pytest.mark.slow(seconds=100)
def test_short_slow():
    pass

@pytest.mark.slow
def test_long_slow():
    pass
"""


def test_without_a_deadline_nothing_is_skipped(monkeypatch):
    monkeypatch.delenv("LISTRANK_CI_DEADLINE", raising=False)
    assert budget_skip_reason(10**9) is None


def test_a_test_runs_only_if_its_time_fits(monkeypatch):
    monkeypatch.setenv("LISTRANK_CI_DEADLINE", "1000")
    assert budget_skip_reason(300, now=700) is None
    assert budget_skip_reason(301, now=700) == "CI time budget: 300 s left, this test can take 301 s on a slow CI machine"
    assert budget_skip_reason(1, now=2000).startswith("CI time budget: 0 s left")


def test_the_hook_skips_what_does_not_fit_and_logs_it(pytester, monkeypatch, tmp_path):
    log = tmp_path / "skipped.txt"
    monkeypatch.setenv("LISTRANK_CI_SKIPLOG", str(log))
    # 300 s left: the slow test that says 100 s runs, the one with the 600 s default does not
    monkeypatch.setenv("LISTRANK_CI_DEADLINE", str(time.time() + 300))
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n")
    pytester.makepyfile(INNER)
    result = pytester.runpytest_inprocess("-p", "ci_budget", "-v", "-rs", "-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*::test_long_slow SKIPPED*",
                                 "SKIPPED *CI time budget: * s left, this test can take 600 s on a slow CI machine"])
    (line,) = log.read_text().splitlines()
    assert line.startswith("test_the_hook_skips_what_does_not_fit_and_logs_it.py::test_long_slow: CI time budget")
    # the fast suite is never cut: a past deadline skips only the slow tests
    log.unlink()
    monkeypatch.setenv("LISTRANK_CI_DEADLINE", str(time.time() - 1))
    pytester.runpytest_inprocess("-p", "ci_budget", "-W", "ignore::pytest.PytestAssertRewriteWarning").assert_outcomes(passed=1, skipped=2)
    assert len(log.read_text().splitlines()) == 2


def test_a_make_stage_runs_only_if_it_fits_and_is_logged(monkeypatch, tmp_path, capsys):
    from ci_budget import main

    log = tmp_path / "skipped.txt"
    monkeypatch.setenv("LISTRANK_CI_SKIPLOG", str(log))
    monkeypatch.setenv("LISTRANK_CI_DEADLINE", str(time.time() + 300))
    assert main(["ci_budget.py", "200", "the vLLM stage"]) == 0 and not log.exists()
    assert main(["ci_budget.py", "850", "the vLLM stage"]) == 1
    assert "skipped the vLLM stage: CI time budget:" in capsys.readouterr().out
    (line,) = log.read_text().splitlines()
    assert line.startswith("the vLLM stage: CI time budget: ") and line.endswith("s left, it can take 850 s on a slow CI machine")
    monkeypatch.delenv("LISTRANK_CI_DEADLINE")
    assert main(["ci_budget.py", "850", "the vLLM stage"]) == 0
