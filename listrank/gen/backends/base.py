"""The interface every generation backend implements, and the registry that finds one by name.

A backend turns a batch of chat requests into completions; everything else (prompts, validation,
retries, resume, output) lives in `listrank.gen.generate`, so a new backend is one file:

    # listrank/gen/backends/my_engine.py
    @register("my-engine")
    class MyEngine(Backend):
        def generate(self, requests): ...

`get_backend("my-engine")` imports `listrank.gen.backends.my_engine` on first use; a backend
outside the package is named `package.module:ClassName`.
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

from listrank.errors import ListrankError


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 2048
    # Divides the logit of every token already generated (last 64 of them): 1.0 = off.
    # The CTRL / llama.cpp `repeat_penalty` = vLLM / HF `repetition_penalty`.
    repeat_penalty: float = 1.0


@dataclass(frozen=True)
class Request:
    """One chat to complete. `seed` is per request so results do not depend on batch composition."""

    messages: list[dict[str, str]]
    sampling: Sampling
    seed: int
    json_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "length" when max_tokens cut the answer off
    # Set when the backend got no usable answer for this request (a malformed reply, an HTTP error
    # after its retries, a prompt too long for the context): the query is retried or rejected with
    # this reason, and the rest of the run goes on.
    error: str | None = None


class Backend(abc.ABC):
    """Completes chat requests with one model.

    `options` are backend-specific settings (`--backend-opt key=value` on the command line);
    unknown ones must raise `ListrankError`, so a typo never passes silently.
    """

    name: ClassVar[str] = ""
    # How many queries `listrank gen` hands over at once unless `--batch-size` says otherwise.
    default_batch_size: ClassVar[int] = 8
    # `--repeat-penalty` unless given (1.0 = off; docs/gen.md has the measurements behind 1.1 for llama-cpp).
    default_repeat_penalty: ClassVar[float] = 1.0

    def __init__(self, model: str | None = None, **options: Any):
        self.model = model

    @property
    def model_id(self) -> str:
        """What produced the text, recorded in every output line (a path's file name, a hub id)."""
        return str(self.model)

    @abc.abstractmethod
    def generate(self, requests: list[Request]) -> list[Completion]:
        """One completion per request, in order."""

    def close(self) -> None:
        """Free the model; called once when generation ends."""


_REGISTRY: dict[str, type[Backend]] = {}


def register(name: str):
    def decorate(cls: type[Backend]) -> type[Backend]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available() -> list[str]:
    """Built-in backend names (modules in this package), whether or not their engine is installed."""
    import pkgutil

    from listrank.gen import backends

    names = {m.name.replace("_", "-") for m in pkgutil.iter_modules(backends.__path__) if m.name != "base"}
    return sorted(names | set(_REGISTRY))


def get_backend(name: str) -> type[Backend]:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        module_name, _, cls_name = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError) as e:
            raise ListrankError(f"backend {name!r}: cannot import it ({e})") from None
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise ListrankError(f"backend {name!r} is not a listrank.gen.backends.base.Backend subclass")
        return cls
    module_name = "listrank.gen.backends." + name.replace("-", "_")
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise ListrankError(f"unknown backend {name!r} (known: {', '.join(available())})") from None
        raise
    if name not in _REGISTRY:
        raise ListrankError(f"module {module_name} does not register a backend named {name!r}")
    return _REGISTRY[name]


def pop_option(options: dict[str, Any], key: str, default: Any, cast=None) -> Any:
    """Take `key` out of `options` (strings from the command line are cast like `default`)."""
    if key not in options:
        return default
    value = options.pop(key)
    cast = cast or (type(default) if default is not None else None)
    if cast is bool and isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    try:
        return cast(value) if cast and value is not None else value
    except (TypeError, ValueError):
        raise ListrankError(f"backend option {key}={value!r}: expected {cast.__name__}") from None


def reject_unknown(backend: str, options: dict[str, Any]) -> None:
    if options:
        raise ListrankError(f"backend {backend!r}: unknown option(s) {', '.join(sorted(options))}")
