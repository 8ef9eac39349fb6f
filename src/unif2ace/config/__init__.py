"""The typed configuration tree of unif2ace (see :mod:`unif2ace.config.base` for loading and overrides)."""

from unif2ace.config.base import ConfigError, apply_overrides, from_dict, load_config, save_config, to_dict
from unif2ace.config.model import (
    GEN,
    GROUPS,
    UND,
    ModelConfig,
    ResamplerConfig,
    SeqMoEConfig,
    TokenMoEConfig,
    VocabConfig,
)
from unif2ace.config.train import DataConfig, LossConfig, StageConfig, TrainConfig, Unif2aceConfig  # noqa: F401

__all__ = [
    "GEN",
    "GROUPS",
    "UND",
    "ConfigError",
    "ModelConfig",
    "ResamplerConfig",
    "SeqMoEConfig",
    "TokenMoEConfig",
    "VocabConfig",
    "apply_overrides",
    "from_dict",
    "load_config",
    "save_config",
    "to_dict",
]
