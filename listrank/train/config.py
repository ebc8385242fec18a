"""Training arguments: one dataclass (`TrainConfig`), the data sources (`SourceConfig`), presets.

Everything `listrank train` does is decided by a `TrainConfig`; the CLI only fills one in. A config
can also come from a YAML/JSON file (`load_config_file`), with command-line flags on top.

Presets are named bundles of field values applied before the file and the flags:

* ``sycl`` -- the recipe of the SyCL paper (arXiv 2503.23239): mean pooling, no normalisation,
  temperature 1, AdamW lr 1e-5, 1 epoch, 5% linear warmup then linear decay, group size 4,
  max length 256 for queries and passages, in-batch negatives, Wasserstein loss.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from listrank.errors import ListrankError
from listrank.options import option  # a TrainConfig field that is also a `listrank train` flag

PAD_MODES = ("repeat", "skip")
PRECISIONS = ("auto", "bf16", "fp32")
FINAL_MODELS = ("best", "last")  # --final-model: which model a validated run hands back
MINERS = ("dense", "bm25")


@dataclass
class SourceConfig:
    """One training source: a `listrank gen` JSONL file, or a BEIR dataset split with qrels.

    Attributes:
        path: a synthetic-lists JSONL file, or a dataset id / BEIR folder (then `split` applies).
        split: qrels split of a dataset (default: the dataset's default split).
        name: label used in logs and reports (default: derived from `path`).
        labels: label transform, "FROM:TO" pairs separated by commas; FROM is a label, a range
            "a-b", ">=a", "<=a" or "*"; TO is a label or "drop". The first match wins; labels no
            pair matches are kept. E.g. "0:drop,*:3" turns real judged positives into level 3.
        take: per query and epoch, use a random `take` of this source's passages (0 = all).
        mine: mine hard negatives for this source's queries: "dense" (the base encoder over the
            corpus) or "bm25" (listrank.bm25, needs pyserini). None = no mining.
        mine_corpus: corpus to mine from (dataset id or BEIR folder; default: the source's own).
        mine_label: label given to mined negatives (SyCL's synthetic+real setting uses 1).
        mine_depth: search this deep; judged passages of the query are excluded.
        mine_count: mined negatives kept per query (a random sample of the remaining hits).
    """

    path: str
    split: str | None = None
    name: str | None = None
    labels: str | None = None
    take: int = 0
    mine: str | None = None
    mine_corpus: str | None = None
    mine_label: int = 1
    mine_depth: int = 30
    mine_count: int = 4

    def display_name(self) -> str:
        if self.name:
            return self.name
        base = Path(self.path).name if Path(self.path).exists() else self.path
        return f"{base}:{self.split}" if self.split else base

    @classmethod
    def parse(cls, spec: str) -> "SourceConfig":
        """`PATH_OR_ID [key=value ...]`, e.g. `msmarco/dl19-pool split=test labels=0:drop,*:3 mine=dense`."""
        tokens = spec.split()
        if not tokens:
            raise ListrankError("empty --source")
        kwargs: dict[str, Any] = {"path": tokens[0]}
        names = {f.name for f in fields(cls)}
        for tok in tokens[1:]:
            key, sep, value = tok.partition("=")
            key = key.replace("-", "_")
            if not sep or key not in names or key == "path":
                allowed = ", ".join(n.replace("_", "-") for n in sorted(names - {"path"}))
                raise ListrankError(f"--source {spec!r}: bad option {tok!r} (expected key=value with key in {allowed})")
            kwargs[key] = value
        return cls.from_dict(kwargs)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "SourceConfig":
        names = {f.name: f for f in fields(cls)}
        unknown = set(obj) - set(names)
        if unknown:
            raise ListrankError(f"unknown source option(s) {sorted(unknown)}; known: {sorted(names)}")
        if "path" not in obj:
            raise ListrankError("a source needs a 'path' (synthetic JSONL file or dataset id)")
        out = {}
        for key, value in obj.items():
            if key in ("take", "mine_label", "mine_depth", "mine_count") and value is not None:
                try:
                    value = int(value)
                except (TypeError, ValueError):
                    raise ListrankError(f"source option {key} must be an integer, got {value!r}") from None
            out[key] = None if value in ("", "none", "None") and key not in ("path",) else value
            if key in ("take", "mine_label", "mine_depth", "mine_count") and out[key] is None:
                out[key] = names[key].default
        src = cls(**out)
        src.validate()
        return src

    def validate(self) -> None:
        if self.mine is not None and self.mine not in MINERS:
            raise ListrankError(f"source {self.display_name()}: mine={self.mine!r}; choose one of {', '.join(MINERS)}")
        if self.take < 0 or self.mine_depth < 1 or self.mine_count < 1:
            raise ListrankError(f"source {self.display_name()}: take must be >= 0, mine-depth and mine-count >= 1")
        parse_label_map(self.labels)  # raises on a malformed map


_RULE = re.compile(r"^\s*(\*|>=-?\d+|<=-?\d+|-?\d+--?\d+|-?\d+)\s*:\s*(drop|-?\d+)\s*$")


def parse_label_map(spec: str | None) -> list[tuple[str, int | None]]:
    """"0:drop,1-3:3" -> [("0", None), ("1-3", 3)] (checked); None/"" -> []."""
    if not spec:
        return []
    rules = []
    for part in spec.split(","):
        if not part.strip():
            continue
        m = _RULE.match(part)
        if not m:
            raise ListrankError(
                f"bad label transform {part.strip()!r} in {spec!r}: expected FROM:TO with FROM a label, "
                "'a-b', '>=a', '<=a' or '*', and TO a label or 'drop' (e.g. '0:drop,*:3')"
            )
        rules.append((m.group(1), None if m.group(2) == "drop" else int(m.group(2))))
    return rules


def _rule_matches(pattern: str, label: int) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith(">="):
        return label >= int(pattern[2:])
    if pattern.startswith("<="):
        return label <= int(pattern[2:])
    m = re.match(r"^(-?\d+)-(-?\d+)$", pattern)
    if m:
        return int(m.group(1)) <= label <= int(m.group(2))
    return label == int(pattern)


def apply_label_map(rules: list[tuple[str, int | None]], label: int) -> int | None:
    """The transformed label, or None when the passage is dropped."""
    for pattern, target in rules:
        if _rule_matches(pattern, label):
            return target
    return label


@dataclass
class TrainConfig:
    """All arguments of a training run (Tevatron style: one dataclass, thin drivers).

    Batch sizes count *queries*: each query brings `group_size` passages, so one forward pass of a
    rank sees `batch_size` queries and `batch_size * group_size` passages. In-batch negatives span
    the global batch (`batch_size * world_size` queries) under DDP. With `grad_accum > 1` each
    micro-batch has its own in-batch negatives and its own (batch-level) loss; the gradients of
    the micro-batches are averaged.
    """

    # Each field is declared once: its type, default and help text here. `listrank train` makes
    # its flags from the fields that have help (`--name-with-dashes`; listrank.options),
    # listrank.json records every field, and `validate()` checks them.
    output: str = ""
    sources: list[SourceConfig] = field(default_factory=list)
    # model
    model: str | None = option(None, "Base encoder: HF id or folder (default: the bundled all-MiniLM-L6-v2).")
    pooling: str = option("mean", "mean or cls.")
    normalize: bool = option(False, "L2-normalise embeddings (cosine scores).")
    temperature: float = option(1.0, "Scores are divided by it in the loss.")
    query_max_length: int = option(256, "Tokens per query.")
    passage_max_length: int = option(256, "Tokens per passage.")
    trust_remote_code: bool = option(False, "Let transformers run the model repository's own code (off: safe).")
    # loss
    loss: str = option("wasserstein", "wasserstein, infonce or listnet (listrank.losses).")
    loss_options: dict[str, Any] = field(default_factory=dict)  # --loss-opt KEY=VALUE
    # data
    group_size: int = option(4, "Passages per query and step.")
    pad: str = option("repeat", "Lists shorter than the group: repeat their passages, or skip the query.")
    max_queries: int | None = option(None, "Use only the first N lists of each source.")
    skip_invalid: bool = option(False, "Skip malformed lines (reported) instead of failing.")
    # optimisation
    batch_size: int = option(16, "Queries per process and micro-batch.")
    grad_accum: int = option(1, "Micro-batches per optimizer step.")
    lr: float = option(1e-5, "Peak learning rate of AdamW.")
    weight_decay: float = option(0.01, "AdamW weight decay.")
    adam_beta1: float = option(0.9, "AdamW beta1.")
    adam_beta2: float = option(0.999, "AdamW beta2.")
    adam_eps: float = option(1e-8, "AdamW epsilon.")
    warmup_ratio: float = option(0.05, "Share of steps of linear warmup.")
    warmup_steps: int | None = option(None, "Warmup steps (overrides --warmup-ratio).")
    max_grad_norm: float | None = option(1.0, "Clip gradients to this norm; 0 = off.")
    epochs: int = option(1, "Epochs over the lists.")
    max_steps: int | None = option(None, "Optimizer steps (overrides --epochs).")
    seed: int = option(42, "Seeds sampling, shuffling and dropout.")
    precision: str = option("auto", "auto (bf16 autocast on CUDA where supported, fp32 elsewhere), bf16 or fp32.")
    gradient_checkpointing: bool = option(False, "Trade compute for memory.")
    # Speed only: padding is paid in full on CPU, so 4 there and 1 on CUDA when unset.
    length_buckets: int | None = option(None, "Encode a batch in N length-sorted chunks, each padded to its own "
                                              "longest text (unset: 4 on CPU, 1 on CUDA).")
    # GradCache; see listrank/train/step.py.
    grad_cache_chunk: int = option(0, "Gradient caching: embed the batch N queries at a time, same gradients in "
                                      "bounded memory; 0 = off.")
    num_workers: int = option(1, "DataLoader workers that tokenise (0 = in the main process).")
    device: str | None = option(None, "cpu, cuda, cuda:1 (unset: cuda:LOCAL_RANK if available, else cpu).")
    # checkpoints and logs
    save_steps: int = option(500, "Checkpoint every N steps; 0 = only the final model.")
    save_total_limit: int = option(2, "Checkpoints kept while training.")
    keep_checkpoints: bool = option(False, "Keep checkpoints/ after the final model is written (else removed).")
    resume: bool = option(False, "Continue from the newest intact checkpoint in the output folder.")
    overwrite: bool = option(False, "Delete an earlier training run in the output folder.")
    log_steps: int = option(1, "Write a train_log.jsonl line every N steps.")
    progress: bool = option(True, "Progress bar (status lines off a terminal).")
    plot: bool = option(True, "Write train_curve.png.")
    max_nonfinite: int = option(5, "Abort after this many non-finite steps in a row.")
    # validation (nDCG@10) during training; the best step's model becomes the final model
    eval_dataset: str | None = option(None, "Validate nDCG@10 on this BEIR dataset during training; the best step "
                                            "becomes the final model.")
    eval_split: str | None = option(None, "With --eval-dataset: the qrels split (unset: dev; test needs --eval-force).")
    eval_holdout: float = option(0.0, "Validate on this share of the training queries instead (held out of training).")
    eval_steps: int = option(0, "Validate every N steps (also before step 0 and after the last); 0 = start and end only.")
    eval_force: bool = option(False, "Allow validating on a split named test.")
    final_model: str = option("best", "With validation: best (the best validated step; the start model if no "
                                      "step beat it) or last (the last step; validation is only reported).")
    # a small held-out set makes small gains noise (docs/experiments.md e: 32 queries let through
    # +0.002 that lost 0.006-0.015 on the test split), so a trained step may be asked to win by a margin
    eval_min_gain: float = option(0.0, "With validation: a trained step replaces the start model only if its "
                                       "nDCG@10 beats the start's by at least this much (0: any gain).")
    eval_batch_size: int = option(64, "Texts per encoding batch during validation.")
    preset: str | None = None

    def validate(self) -> None:
        if not self.output:
            raise ListrankError("an output folder is required (-o/--output)")
        if not self.sources:
            raise ListrankError("no training data: give a synthetic JSONL file, --dataset or --source")
        for src in self.sources:
            src.validate()
        for f in fields(self):  # first: inf passes `lr > 0`, and nan deserves its own message
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ListrankError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
        checks = [
            (self.group_size >= 1, f"--group-size must be >= 1, got {self.group_size}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.grad_accum >= 1, f"--grad-accum must be >= 1, got {self.grad_accum}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (self.temperature > 0, f"--temperature must be > 0, got {self.temperature}"),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.max_steps is None or self.max_steps >= 1, f"--max-steps must be >= 1, got {self.max_steps}"),
            (0 <= self.warmup_ratio < 1, f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}"),
            (self.query_max_length >= 1 and self.passage_max_length >= 1, "max lengths must be >= 1"),
            (self.pad in PAD_MODES, f"--pad must be one of {', '.join(PAD_MODES)}, got {self.pad!r}"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (self.pooling in ("mean", "cls"), f"--pooling must be mean or cls, got {self.pooling!r}"),
            (self.max_nonfinite >= 1, "--max-nonfinite must be >= 1"),
            (self.save_steps >= 0 and self.save_total_limit >= 1, "--save-steps must be >= 0, --save-total-limit >= 1"),
            (self.num_workers >= 0, "--num-workers must be >= 0"),
            (self.length_buckets is None or self.length_buckets >= 1,
             f"--length-buckets must be >= 1, got {self.length_buckets}"),
            (self.grad_cache_chunk >= 0, f"--grad-cache-chunk must be >= 0, got {self.grad_cache_chunk}"),
            (0 <= self.eval_holdout < 1, f"--eval-holdout must be in [0, 1), got {self.eval_holdout}"),
            (not (self.eval_dataset and self.eval_holdout),
             "give either --eval-dataset or --eval-holdout, not both"),
            (self.eval_steps >= 0 and self.eval_batch_size >= 1, "--eval-steps must be >= 0"),
            (self.eval_split is None or bool(self.eval_dataset), "--eval-split needs --eval-dataset"),
            (0 <= self.eval_min_gain < 1,  # non-finite values are refused above, for every float option
             f"--eval-min-gain must be in [0, 1), got {self.eval_min_gain}"),
            (self.final_model in FINAL_MODELS, f"--final-model must be one of {', '.join(FINAL_MODELS)}, "
                                               f"got {self.final_model!r}"),
            (self.eval_split != "test" or self.eval_force,
             "refusing to validate on the test split (choosing a checkpoint on it leaks the test set into "
             "the model): use a dev split or --eval-holdout, or pass --eval-force"),
        ]
        for ok, message in checks:
            if not ok:
                raise ListrankError(message)
        from listrank import losses

        losses.get(self.loss, **self.loss_options)  # an unknown loss or option fails here, before any work

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(obj) - names
        if unknown:
            raise ListrankError(f"unknown training option(s) {sorted(unknown)}")
        obj = dict(obj)
        for f in fields(cls):
            if f.name in obj and f.name != "sources":
                obj[f.name] = _typed(f.name, obj[f.name], _HINTS[f.name])
        if "sources" in obj:
            obj["sources"] = [s if isinstance(s, SourceConfig) else SourceConfig.from_dict(s) for s in obj["sources"]]
        return cls(**obj)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def _typed(name: str, value: Any, hint: Any) -> Any:
    """`value` checked against the field's annotation (a config file's YAML can hold anything);
    an int is accepted for a float. Raises a one-line `ListrankError` naming the option."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if value is None and type(None) in allowed:
        return None
    for t in allowed:
        base = typing.get_origin(t) or t
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base in (bool, str, dict, list) and isinstance(value, base):
            return value
        if base is str and isinstance(value, os.PathLike):
            return os.fspath(value)
        if base is Any:
            return value
    names = " or ".join("none" if t is type(None) else getattr(typing.get_origin(t) or t, "__name__", str(t))
                        for t in allowed)
    raise ListrankError(f"training option {name}: expected {names}, got {type(value).__name__} {value!r}")


_HINTS = typing.get_type_hints(TrainConfig)


def field_defaults() -> dict[str, Any]:
    """Every TrainConfig field's default value."""
    out = {}
    for f in fields(TrainConfig):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


# The SyCL paper's recipe (arXiv 2503.23239, Section 4 / Appendix): see docs/train.md.
PRESETS: dict[str, dict[str, Any]] = {
    "sycl": {
        "loss": "wasserstein",
        "pooling": "mean",
        "normalize": False,
        "temperature": 1.0,
        "lr": 1e-5,
        "epochs": 1,
        "max_steps": None,
        "warmup_ratio": 0.05,
        "warmup_steps": None,
        "group_size": 4,
        "query_max_length": 256,
        "passage_max_length": 256,
        "pad": "repeat",
    },
}


def preset_values(name: str | None) -> dict[str, Any]:
    if name is None:
        return {}
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise ListrankError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON mapping of TrainConfig fields (sources as a list of mappings)."""
    path = Path(path)
    if not path.exists():
        raise ListrankError(f"{path}: no such config file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            obj = json.loads(text)
        else:
            import yaml

            obj = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - yaml and json raise different types
        raise ListrankError(f"{path}: cannot parse config ({str(e).splitlines()[0]})") from None
    if not isinstance(obj, dict):
        raise ListrankError(f"{path}: a config file must hold a mapping of training options")
    try:
        TrainConfig.from_dict({k: v for k, v in obj.items() if k != "sources"} | {"sources": []})
    except ListrankError as e:
        raise ListrankError(f"{path}: {e}") from None
    return obj


def build_config(
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Preset, then config file, then explicit overrides (None values in overrides are ignored,
    except that a `sources` list is appended to the file's sources)."""
    values: dict[str, Any] = {}
    file_values = load_config_file(config_file) if config_file else {}
    preset = (overrides or {}).get("preset") or file_values.get("preset") or preset
    values.update(preset_values(preset))
    values.update(file_values)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "sources":
            values["sources"] = list(values.get("sources") or []) + list(value)
        else:
            values[key] = value
    values["preset"] = preset
    config = TrainConfig.from_dict(values)
    config.validate()
    return config
