"""The CLI as the tests drive it: one `invoke` and one check for a user error (one line, exit 2, no traceback)."""

from __future__ import annotations

from typer.testing import CliRunner

from listrank.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def expect_user_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:") and "Traceback" not in result.output, result.output
    text = " ".join(result.output.split())
    for f in fragments:
        assert f in text, text
