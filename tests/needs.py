"""What a test does when its real data or a real component is missing.

On a developer's machine it is skipped, with the reason. In CI (`CI=true`, which `.ci/run` sets)
it fails instead: a green CI run must mean that every test ran, not that most were skipped
because `LISTRANK_DATA` pointed nowhere.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str, *, allow_module_level: bool = False):
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing requirement fails instead of skipping)", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)
