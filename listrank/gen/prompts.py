"""Relevance levels and versioned prompt templates for `listrank gen`.

A template is a system message and a user message with `{placeholders}`; only the names in
`PLACEHOLDERS` are replaced, so the JSON braces a template shows the model need no escaping.
Every generated list records the template's `version`, so a change of wording is a new version
(add it to `TEMPLATES`, keep the old one: published data must stay reproducible).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from listrank.errors import ListrankError

# The TREC Deep Learning graded-relevance scale, which SyCL asks the LLM to write passages for.
LEVEL_NAMES = {3: "perfectly relevant", 2: "highly relevant", 1: "related", 0: "irrelevant"}
LEVEL_DEFINITIONS = {
    3: "the passage is dedicated to the query and contains the exact answer.",
    2: "the passage answers the query, but the answer is a bit unclear or hidden among extraneous information.",
    1: "the passage is on the topic of the query but does not answer it.",
    0: "the passage has nothing to do with the query.",
}

PLACEHOLDERS = ("query", "levels", "per_level", "passage_words", "n_levels", "example")

_V1_SYSTEM = "You write realistic web passages for training search engines. You answer with JSON only."
# The query comes last: every prompt then shares everything before it, which engines with prefix
# caching (llama.cpp, vLLM) compute once instead of once per query.
_V1_USER = """\
Write passages for the search query at the end, at {n_levels} levels of relevance.

Levels:
{levels}

Write {per_level} different passage(s) for each level, each about {passage_words} words, written like \
a paragraph from a web page. Never mention the query, the level or these instructions in a passage.

Answer with one JSON object in exactly this shape and nothing else:
{example}

Query: {query}"""

DEFAULT_VERSION = "sycl-v1"


@dataclass(frozen=True)
class PromptTemplate:
    version: str
    user: str
    system: str = ""
    level_definitions: dict[int, str] = field(default_factory=lambda: dict(LEVEL_DEFINITIONS))

    def __post_init__(self):
        if "{query}" not in self.user:
            raise ListrankError(f"prompt template {self.version!r}: the user message has no {{query}} placeholder")


TEMPLATES: dict[str, PromptTemplate] = {
    "sycl-v1": PromptTemplate(version="sycl-v1", system=_V1_SYSTEM, user=_V1_USER),
}


def level_key(level: int) -> str:
    return f"level_{level}"


def _fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(" + "|".join(PLACEHOLDERS) + r")\}", lambda m: values[m.group(1)], template)


@dataclass(frozen=True)
class PromptBuilder:
    """Turns a query into chat messages, and gives the JSON schema the answer must follow."""

    template: PromptTemplate
    levels: tuple[int, ...] = (3, 2, 1, 0)
    per_level: int = 2
    passage_words: int = 80
    min_chars: int = 1  # in the schema, so constrained decoding cannot close a string at once

    def __post_init__(self):
        unknown = [lv for lv in self.levels if lv not in self.template.level_definitions]
        if unknown:
            have = sorted(self.template.level_definitions)
            raise ListrankError(f"no definition for level(s) {unknown} in prompt {self.template.version!r} (has {have})")
        if len(set(self.levels)) != len(self.levels) or not self.levels:
            raise ListrankError(f"levels must be distinct and non-empty, got {list(self.levels)}")
        if self.per_level < 1:
            raise ListrankError("passages per level must be at least 1")

    def _levels_block(self) -> str:
        lines = []
        for lv in self.levels:
            name = LEVEL_NAMES.get(lv, f"level {lv}")
            lines.append(f"- {level_key(lv)} ({name}): {self.template.level_definitions[lv]}")
        return "\n".join(lines)

    def _example(self) -> str:
        slots = ", ".join(['"..."'] * self.per_level)
        return "{" + ", ".join(f'"{level_key(lv)}": [{slots}]' for lv in self.levels) + "}"

    def messages(self, query: str) -> list[dict[str, str]]:
        values = {
            "query": query,
            "levels": self._levels_block(),
            "per_level": str(self.per_level),
            "passage_words": str(self.passage_words),
            "n_levels": str(len(self.levels)),
            "example": self._example(),
        }
        msgs = []
        if self.template.system:
            msgs.append({"role": "system", "content": _fill(self.template.system, values)})
        msgs.append({"role": "user", "content": _fill(self.template.user, values)})
        return msgs

    def retry_messages(self, query: str, previous_answer: str, reason: str) -> list[dict[str, str]]:
        """The first conversation plus the rejected answer and what was wrong with it."""
        feedback = (
            f"That answer was rejected: {reason}. Answer again with only the JSON object: "
            f"{self.per_level} different passage(s) for each of {', '.join(level_key(lv) for lv in self.levels)}."
        )
        # A huge rejected answer would crowd out the context; its start is enough to show the mistake.
        return self.messages(query) + [
            {"role": "assistant", "content": previous_answer[:2000]},
            {"role": "user", "content": feedback},
        ]

    def json_schema(self) -> dict[str, Any]:
        """What the answer must look like; backends that can, constrain decoding to it."""
        passage = {"type": "string", "minLength": self.min_chars}
        items = {"type": "array", "items": passage, "minItems": self.per_level, "maxItems": self.per_level}
        keys = [level_key(lv) for lv in self.levels]
        return {
            "type": "object",
            "properties": {k: items for k in keys},
            "required": keys,
            "additionalProperties": False,
        }


def load_template(version: str = DEFAULT_VERSION, prompt_file: str | Path | None = None) -> PromptTemplate:
    """A built-in template by version, or one read from `prompt_file` (YAML/JSON or plain text).

    A YAML/JSON prompt file has `user` (required), `system`, `version` and `levels` ({level: definition}).
    A plain text file is the user message. Without a `version`, the file's name and content hash
    become the version, so a silently edited prompt never passes for the old one.
    """
    if prompt_file is None:
        if version not in TEMPLATES:
            raise ListrankError(f"unknown prompt version {version!r} (known: {', '.join(TEMPLATES)})")
        return TEMPLATES[version]
    path = Path(prompt_file)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ListrankError(f"cannot read prompt file {path}: {e.strerror or e}") from None
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:12]
    default_version = f"file:{path.name}:{digest}"
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            spec = json.loads(raw) if path.suffix.lower() == ".json" else yaml.safe_load(raw)
        except (ValueError, yaml.YAMLError) as e:
            raise ListrankError(f"{path}: not valid {path.suffix[1:].upper()}: {e}") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("user"), str):
            raise ListrankError(f"{path}: expected a mapping with a 'user' template string")
        definitions = dict(LEVEL_DEFINITIONS)
        levels = spec.get("levels") or {}
        if not isinstance(levels, dict):
            raise ListrankError(f"{path}: 'levels' must be a mapping of level to definition, e.g. "
                                f"{{3: 'the passage answers the query'}}; got a {type(levels).__name__}")
        for key, text in levels.items():
            try:
                level = int(key)
            except (TypeError, ValueError):
                raise ListrankError(f"{path}: levels: {key!r} is not an integer level") from None
            if isinstance(key, (bool, float)) or str(level) != str(key).strip():
                raise ListrankError(f"{path}: levels: {key!r} is not an integer level")
            if not isinstance(text, str) or not text.strip():
                raise ListrankError(f"{path}: levels: the definition of level {level} must be a non-empty string")
            definitions[level] = text
        if spec.get("system") is not None and not isinstance(spec["system"], str):
            raise ListrankError(f"{path}: 'system' must be a string")
        return PromptTemplate(
            version=str(spec.get("version") or default_version),
            user=spec["user"],
            system=str(spec.get("system") or ""),
            level_definitions=definitions,
        )
    return PromptTemplate(version=default_version, user=raw, system="")
