"""The CI time budget for slow tests: a pytest plugin (tests/conftest.py imports its hook).

CI stops a run at a hard wall-clock limit, and its machines differ several-fold in speed: an
AVX2-only CPU emulates bf16 and runs the slow suite ~3x slower than one with AVX512-BF16 or AMX.
The fast suite always runs in full. A test marked `slow` or `vllm` starts only if the time it can
take still fits before $LISTRANK_CI_DEADLINE (epoch seconds, set by .ci/run); otherwise it is
skipped with the reason, and its id goes to $LISTRANK_CI_SKIPLOG, which .ci/run prints at the end,
so a green run says what it did not run. Without the deadline (a developer's machine) nothing changes.

A test states what it can take on the slowest CI machine seen: `@pytest.mark.slow(seconds=900)`.
The Makefile asks the same of a whole stage: `python tests/ci_budget.py SECONDS NAME`.
"""

from __future__ import annotations

import os
import time

SLOW_TEST_SECONDS = 600  # for a slow test that does not say


def budget_skip_reason(need_seconds: float, now: float | None = None, what: str = "this test") -> str | None:
    """Why `what`, which can take `need_seconds`, must not start now, or None when it fits."""
    deadline = os.environ.get("LISTRANK_CI_DEADLINE", "").strip()
    if not deadline:
        return None
    left = float(deadline) - (time.time() if now is None else now)
    if left >= need_seconds:
        return None
    return f"CI time budget: {max(left, 0):.0f} s left, {what} can take {need_seconds:.0f} s on a slow CI machine"


def _log_skipped(line: str) -> None:
    log = os.environ.get("LISTRANK_CI_SKIPLOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def pytest_runtest_setup(item):
    import pytest

    marker = item.get_closest_marker("slow") or item.get_closest_marker("vllm")
    if marker is None:
        return
    reason = budget_skip_reason(float(marker.kwargs.get("seconds", SLOW_TEST_SECONDS)))
    if reason is None:
        return
    _log_skipped(f"{item.nodeid}: {reason}")
    pytest.skip(reason)


def main(argv: list[str]) -> int:
    """`python tests/ci_budget.py SECONDS NAME`: exit 0 if NAME (a stage of `make test`), which can
    take SECONDS, still fits the budget; otherwise say and log why, and exit 1."""
    seconds, name = float(argv[1]), argv[2]
    reason = budget_skip_reason(seconds, what="it")
    if reason is None:
        return 0
    _log_skipped(f"{name}: {reason}")
    print(f"skipped {name}: {reason}")
    return 1


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv))
