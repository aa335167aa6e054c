"""The RLVR trainer (`delta-rlvr train`): configuration, tasks, credit per method, the loop,
checkpoints, metrics and run reports."""

from delta_rlvr.train.config import ConfigError, TrainConfig, load_config
from delta_rlvr.train.trainer import Trainer

__all__ = ["ConfigError", "TrainConfig", "Trainer", "load_config"]
