"""One declaration per setting: a command's options are the fields of one dataclass.

Each field is declared once with `option(default, help, ...)`: its type, default, help text and
flag(s) (Tevatron's `HfArgumentParser` dataclasses are the model). From the fields,
`with_config_options` gives a typer command one flag each; `from_options` turns what the flags
said into the dataclass, whose `__post_init__` checks the values (once, raising `ListrankError`);
`recorded` is what the command writes into its output's metadata.

    @dataclass
    class SearchOptions:
        k: int = option(100, "Hits per query.", flags=("-k",))

    @command("search")
    @with_config_options(SearchOptions)
    def search_cmd(index: Path = typer.Argument(...), **options):
        opts = from_options(SearchOptions, options)
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import types
import typing
from dataclasses import MISSING, field
from pathlib import Path
from typing import Any, Callable, Sequence


def option(default: Any = MISSING, help: str = "", *, flags: Sequence[str] | None = None,
           parse: Callable[[Any], Any] | None = None, cli_default: Any = MISSING, cli_type: Any = None,
           record: bool = True, default_factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field that is also a command-line flag.

    `default` and `help`: the field's default (none: the flag is required) and the flag's help.
    `flags`: the flag's declarations, default `--field-name`; e.g. ("--output", "-o").
    `parse`: turns what the flag gives (a string, a list of KEY=VALUE...) into the field's value;
    `cli_type`/`cli_default` are then the flag's own type and default, when they differ.
    `record=False`: the command's metadata leaves it out (where files go, how fast, which slice).
    """
    metadata = {"help": help, "flags": tuple(flags) if flags else None, "parse": parse,
                "cli_default": cli_default, "cli_type": cli_type, "record": record}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def option_fields(cls_or_obj: Any) -> list[dataclasses.Field]:
    """The fields of a dataclass that are flags (declared with `option`): the class's own first,
    then those it inherits (`EncoderOptions`), so that a command's `--help` starts with its own."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    flags = [f for f in dataclasses.fields(cls) if "help" in f.metadata]
    own = cls.__dict__.get("__annotations__", {})
    return [f for f in flags if f.name in own] + [f for f in flags if f.name not in own]


def _flag_type(hint: Any) -> Any:
    """int | None -> int, list[str] | None -> list[str]; the flag's click type."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _default_note(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return ""  # shown by the --x/--no-x pair's description
    return f" [default: {value:g}]" if isinstance(value, float) else f" [default: {value}]"


def field_default(f: dataclasses.Field) -> Any:
    """The field's default; `...` when it has none (a required flag)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return ...


def cli_default(f: dataclasses.Field) -> Any:
    """What the flag gives when it is not typed: its `cli_default`, else the field's default."""
    given = f.metadata.get("cli_default", MISSING)
    return field_default(f) if given is MISSING else given


def config_parameters(cls: type, *, unset_is_none: bool = False) -> list[inspect.Parameter]:
    """One keyword-only typer option per field declared with `option`.

    By default each flag defaults to the field's default (or its `cli_default`), typer shows it
    in the help, and booleans are the flags they are declared as. With `unset_is_none` (`listrank
    train`, where a config file or preset lies underneath) every flag defaults to None ("not
    given"), so a flag the user did not type overrides nothing; the help text shows the field's
    own default, and booleans become `--name/--no-name` pairs.
    """
    import typer

    hints = typing.get_type_hints(cls)
    params = []
    for f in option_fields(cls):
        meta = f.metadata
        flag_type = meta.get("cli_type") or _flag_type(hints[f.name])
        flags = list(meta.get("flags") or ["--" + f.name.replace("_", "-")])
        if unset_is_none:
            if flag_type is bool and not meta.get("flags"):
                flags = [f"{flags[0]}/--no-{flags[0][2:]}"]
            if flag_type is bool:
                note = " [default: on]" if f.default else " [default: off]"
            else:
                note = _default_note(f.default)
            opt = typer.Option(None, *flags, help=meta["help"] + note, show_default=False)
            annotation = typing.Optional[flag_type]
        else:
            default = cli_default(f)
            opt = typer.Option(default, *flags, help=meta["help"])
            annotation = typing.Optional[flag_type] if default is None else flag_type
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=annotation))
    return params


def with_config_options(cls: type, *, unset_is_none: bool = False) -> Callable[[Callable], Callable]:
    """Give a typer command one flag per `option` field of `cls` (see `config_parameters`); the
    command receives them as keyword arguments (`**options`). Its own parameters (positional
    arguments, flags that are not settings) come first and win over a field of the same name."""

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in own}
        extra = [p for p in config_parameters(cls, unset_is_none=unset_is_none) if p.name not in taken]
        fn.__signature__ = sig.replace(parameters=own + extra)
        return fn

    return decorate


def from_options(cls: type, options: dict[str, Any], **values: Any) -> Any:
    """The dataclass `cls` from what its flags gave (each passed through the field's `parse`);
    `values` set fields directly. Its `__post_init__` checks them."""
    for f in option_fields(cls):
        if f.name in options and f.name not in values:
            parse = f.metadata.get("parse")
            values[f.name] = parse(options[f.name]) if parse else options[f.name]
    return cls(**values)


def given_flags(obj: Any, names: Sequence[str]) -> list[str]:
    """The first flag of each of the fields `names` whose value is not its flag's default."""
    by_name = {f.name: f for f in option_fields(obj)}
    out = []
    for name in names:
        f = by_name[name]
        default = field_default(f)
        value = getattr(obj, name)
        if value == default or (default is None and value in ([], {}, ())):
            continue
        out.append((f.metadata.get("flags") or ["--" + name.replace("_", "-")])[0].split("/")[0])
    return out


def jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def recorded(obj: Any) -> dict[str, Any]:
    """The options a command writes into its output's metadata: each `option` field not declared
    with `record=False`, as JSON values (paths as strings, enums as their values)."""
    return {f.name: jsonable(getattr(obj, f.name)) for f in option_fields(obj) if f.metadata.get("record", True)}


# --- settings several commands share (declared once here) ----------------------------------------

def data_dir_option(help: str = "Folder of BEIR-layout datasets (before $LISTRANK_DATA and the cache).") -> Any:
    return option(None, help, record=False)


def batch_size_option() -> Any:
    return option(64, "Texts per encoder batch.", record=False)


PRECISIONS = ("auto", "bf16", "fp32")


@dataclasses.dataclass
class EncoderOptions:
    """How a dense retriever encodes: the flags `index` and `eval` share (and `DenseSettings`)."""

    model: str | None = option(None, "HF encoder id or local path [default: bundled all-MiniLM-L6-v2].",
                               flags=("--model", "-m"))
    pooling: str | None = option(None, "mean or cls [default: the model's sentence-transformers setting, else mean].")
    normalize: bool | None = option(None, "L2-normalise embeddings [default: the model's setting].",
                                    flags=("--normalize/--no-normalize",))
    max_length: int = option(256, "Max tokens per text (the SyCL paper uses 256).")
    batch_size: int = batch_size_option()
    precision: str = option("auto", "auto (bf16 where the hardware runs it natively), bf16 or fp32.")

    def __post_init__(self) -> None:
        check_precision(self.precision)

    def dense_settings(self):
        """These settings as `listrank.pipeline.DenseSettings` (what builds the encoder)."""
        from listrank.pipeline import DenseSettings

        return DenseSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(EncoderOptions)})


def check_precision(precision: str) -> None:
    from listrank.errors import ListrankError

    if precision not in PRECISIONS:
        raise ListrankError(f"unknown --precision {precision!r}; choose auto, bf16 or fp32")
