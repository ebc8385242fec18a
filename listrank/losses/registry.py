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

    Class attributes the trainer reads (missing ones take these defaults):
        listwise = True   the loss learns from the order of a query's graded passages, so a list
                          whose passages all share one label is skipped (InfoNCE sets False: such
                          a list still brings negatives);
        min_queries = 1   queries a batch needs (the batch-level Wasserstein distance needs 2).
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


DEFAULT_TRAITS = {"listwise": True, "min_queries": 1}


def loss_class(name: str) -> type:
    """The class registered as `name` (ListrankError for an unknown name)."""
    try:
        return _LOSSES[name]
    except (KeyError, TypeError):
        raise ListrankError(f"unknown loss {name!r}; known losses: {', '.join(available())}") from None


def trait(name_or_loss, key: str):
    """A trainer-facing class attribute of a loss (by name, class or instance), e.g. `listwise`."""
    if isinstance(name_or_loss, str):
        cls = loss_class(name_or_loss)
    else:
        cls = name_or_loss if isinstance(name_or_loss, type) else type(name_or_loss)
    return getattr(cls, key, DEFAULT_TRAITS[key])


def available() -> list[str]:
    """The registered loss names, sorted."""
    return sorted(_LOSSES)


def get(name: str, **options):
    """A new loss object for `name`; `options` go to the loss class's constructor.

    Unknown names and options the loss does not take raise `ListrankError`, since they usually
    come from a user's config or command line.
    """
    cls = loss_class(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise ListrankError(f"loss {name!r} does not accept options {sorted(options)}: {exc}") from None
    return cls(**options)
