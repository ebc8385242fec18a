"""Name -> loss class registry behind `listrank.losses.get` / `available` / `register`."""

from __future__ import annotations

import inspect
from typing import Callable, TypeVar

from listrank.errors import ListrankError

T = TypeVar("T", bound=type)

_LOSSES: dict[str, type] = {}


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make a loss available as `get(name)`.

    A new loss is one new module in `listrank/losses/` that uses this decorator and is imported
    in `listrank/losses/__init__.py`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a loss name must be a non-empty string, got {name!r}")

    def decorator(cls: T) -> T:
        # Two modules claiming one name is a programming error, not a user error.
        if name in _LOSSES and _LOSSES[name] is not cls:
            raise ValueError(f"loss name {name!r} is already registered by {_LOSSES[name].__qualname__}")
        _LOSSES[name] = cls
        cls.name = name
        return cls

    return decorator


def available() -> list[str]:
    """The registered loss names, sorted."""
    return sorted(_LOSSES)


def get(name: str, **options):
    """A new loss object for `name`; `options` go to the loss class's constructor.

    Unknown names and options the loss does not take raise `ListrankError`, since they usually
    come from a user's config or command line.
    """
    try:
        cls = _LOSSES[name]
    except (KeyError, TypeError):
        raise ListrankError(f"unknown loss {name!r}; known losses: {', '.join(available())}") from None
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise ListrankError(f"loss {name!r} does not accept options {sorted(options)}: {exc}") from None
    return cls(**options)
