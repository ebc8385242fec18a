"""Small parsers the `listrank train` command uses (kept out of cli.py so it stays thin)."""

from __future__ import annotations

import json
from typing import Any

from listrank.errors import ListrankError


def parse_key_values(items: list[str], flag: str) -> dict[str, Any]:
    """["positive_threshold=2", "name=x"] -> {"positive_threshold": 2, "name": "x"} (JSON values where they parse)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ListrankError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
