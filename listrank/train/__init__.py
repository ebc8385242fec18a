"""`listrank train`: bi-encoders trained on graded passage lists with list-wise losses (SyCL).

    from listrank.train import SourceConfig, build_config, train
    config = build_config(preset="sycl", overrides={"output": "models/sycl",
                          "sources": [SourceConfig("synth.jsonl")]})
    result = train(config)

See docs/train.md. The trainer (and torch) load on first use, so `listrank --help` and the CLI's
option declarations (listrank.train.config) stay fast.
"""

from listrank.train.config import PRESETS, SourceConfig, TrainConfig, build_config

_LAZY = {"TrainResult", "summary_table", "train"}


def __getattr__(name):
    if name in _LAZY:
        from listrank.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'listrank.train' has no attribute {name!r}")


__all__ = ["PRESETS", "SourceConfig", "TrainConfig", "TrainResult", "build_config", "summary_table", "train"]
