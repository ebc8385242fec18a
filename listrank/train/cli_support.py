"""The typer flags of `listrank train`, made from the TrainConfig fields (listrank.options).

Each flag defaults to None ("not given"), so a config file or preset underneath is not overridden
by a flag the user did not type; booleans are `--name/--no-name` pairs.
"""

from __future__ import annotations

import inspect
from typing import Callable

from listrank import options


def config_parameters(cls: type) -> list[inspect.Parameter]:
    """One keyword-only typer option per `option` field of `cls`, each defaulting to None."""
    return options.config_parameters(cls, unset_is_none=True)


def with_config_options(cls: type) -> Callable[[Callable], Callable]:
    """Give a typer command one flag per field of `cls` (see `config_parameters`); the command
    receives them as keyword arguments (`**options`), None for each flag not given."""
    return options.with_config_options(cls, unset_is_none=True)
