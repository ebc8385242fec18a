"""Small parsers the `listrank train` command uses (kept out of cli.py so it stays thin)."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, Callable


def _flag_type(hint: Any) -> type:
    """int | None -> int; the flag's click type."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0]


def _default_note(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return ""  # shown by the --x/--no-x pair's description
    return f" [default: {value:g}]" if isinstance(value, float) else f" [default: {value}]"


def config_parameters(cls: type) -> list[inspect.Parameter]:
    """One keyword-only typer option per dataclass field that has help metadata.

    Every option defaults to None ("not given"), so a config file or preset underneath is not
    overridden by a flag the user did not type; the help text shows the field's own default.
    Booleans become `--name/--no-name` pairs.
    """
    import typer

    hints = typing.get_type_hints(cls)
    params = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        flag_type = _flag_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}"] if flag_type is bool else [flag]
        if flag_type is bool:
            note = " [default: on]" if f.default else " [default: off]"
        else:
            note = _default_note(f.default)
        option = typer.Option(None, *decls, help=f.metadata["help"] + note, show_default=False)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=typing.Optional[flag_type]))
    return params


def with_config_options(cls: type) -> Callable[[Callable], Callable]:
    """Give a typer command one flag per field of `cls` (see `config_parameters`); the command
    receives them as keyword arguments (`**options`), None for each flag not given."""

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in own}
        extra = [p for p in config_parameters(cls) if p.name not in taken]
        fn.__signature__ = sig.replace(parameters=own + extra)
        return fn

    return decorate
