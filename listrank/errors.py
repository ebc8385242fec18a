"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations


class ListrankError(Exception):
    """A mistake in the user's input or environment that a message can explain."""

    exit_code = 2


class FormatError(ListrankError):
    """A malformed line in an input file; the message reads `file:line: what was wrong`."""

    def __init__(self, path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
