"""Training: staged recipes on HF accelerate, exact resume, checkpoints, observability (``docs/training.md``).

``run_training(cfg, out_dir, init_from=None)`` is what ``unif2ace train`` calls; ``load_recipe(name, overrides)``
loads a shipped recipe or a YAML file of :class:`~unif2ace.config.train.Unif2aceConfig`.
"""

from unif2ace.training.run import load_recipe, run_training
from unif2ace.training.trainer import Trainer, TrainResult

__all__ = ["TrainResult", "Trainer", "load_recipe", "run_training"]
