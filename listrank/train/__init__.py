"""`listrank train`: bi-encoders trained on graded passage lists with list-wise losses (SyCL).

    from listrank.train import SourceConfig, build_config, train
    config = build_config(preset="sycl", overrides={"output": "models/sycl",
                          "sources": [SourceConfig("synth.jsonl")]})
    result = train(config)

See docs/train.md.
"""

from listrank.train.config import PRESETS, SourceConfig, TrainConfig, build_config
from listrank.train.trainer import TrainResult, summary_table, train

__all__ = ["PRESETS", "SourceConfig", "TrainConfig", "TrainResult", "build_config", "summary_table", "train"]
