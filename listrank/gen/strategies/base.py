"""The strategy interface and its registry (see `listrank.gen.strategies`)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from listrank.errors import ListrankError

if TYPE_CHECKING:  # pragma: no cover
    from listrank.formats import Query
    from listrank.gen.backends.base import Backend
    from listrank.gen.generate import GenConfig, GenSummary

# What `--strategy auto` becomes for a backend that runs small local models.
SMALL_MODEL_DEFAULT = "levels-fewshot-borrow-v1"
LARGE_MODEL_DEFAULT = "sycl-v1"
SMALL_MODEL_BACKENDS = ("llama-cpp",)


@dataclass
class Generated:
    """One query's accepted passages: {level: [text, ...]}, the tries the slowest one needed, and
    for passages taken from another query's list, {(level, index): source passage id}."""

    by_level: dict[int, list[str]]
    attempts: int = 1
    borrowed: dict[tuple[int, int], str] = field(default_factory=dict)


class Strategy(abc.ABC):
    """Turns a batch of queries into accepted lists and rejects, through one backend.

    `generate_batch` returns ({query id: Generated}, {query id: (reason, last answer)}); every
    query of the batch is in exactly one of the two. It adds what it sent and received to
    `summary` (attempts = requests, prompt/completion tokens).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # a few words for `gen --help`'s list of strategies

    def __init__(self, config: "GenConfig"):
        self.config = config

    @property
    def prompt_version(self) -> str:
        """Recorded as `generator.prompt_version`: what identifies the wording of the prompts."""
        return self.name

    def check_backend(self, backend: "Backend") -> None:
        """Refuse a backend this strategy cannot work with (before anything is generated)."""

    @abc.abstractmethod
    def generate_batch(self, batch: list["Query"], backend: "Backend", summary: "GenSummary"
                       ) -> tuple[dict[str, Generated], dict[str, tuple[str, str]]]:
        """Generate, validate and retry one batch of queries."""

    def record_extra(self) -> dict[str, Any]:
        """Strategy settings added to every line's `generator` (beyond the common ones)."""
        return {}


_REGISTRY: dict[str, type[Strategy]] = {}


def register(name: str):
    def decorate(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available() -> list[str]:
    import listrank.gen.strategies  # noqa: F401  (registers the built-in ones)

    return sorted(_REGISTRY)


def help_text() -> str:
    """The registered strategies (in the order they were registered) with their summaries and what
    `auto` picks, for `--strategy`'s help."""
    import listrank.gen.strategies  # noqa: F401

    known = ", ".join(f"{name} ({cls.summary})" if cls.summary else name for name, cls in _REGISTRY.items())
    return (f"{known}; auto: {SMALL_MODEL_DEFAULT} for {', '.join(SMALL_MODEL_BACKENDS)}, "
            f"{LARGE_MODEL_DEFAULT} otherwise (docs/gen.md).")


def get_strategy(name: str) -> type[Strategy]:
    import listrank.gen.strategies  # noqa: F401

    if name not in _REGISTRY:
        raise ListrankError(f"unknown --strategy {name!r} (known: auto, {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]


def resolve_strategy(name: str, backend_name: str, custom_prompt: bool = False) -> str:
    """`auto` -> the default for the backend; any other name is checked and returned."""
    if name != "auto":
        get_strategy(name)
        return name
    if custom_prompt or backend_name not in SMALL_MODEL_BACKENDS:
        return LARGE_MODEL_DEFAULT
    return SMALL_MODEL_DEFAULT
