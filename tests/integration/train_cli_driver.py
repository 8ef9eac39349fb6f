"""Run ``unif2ace`` in a subprocess; uses the training tests' stand-in model only while ``build_model`` is absent."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "training"))

from unif2ace.cli.main import main  # noqa: E402

try:
    from unif2ace.model import build_model  # noqa: F401
except ImportError:
    from standin_model import StandInTransformer

    import unif2ace.training.run as run

    run._default_model_factory = lambda cfg: StandInTransformer(cfg.model)

sys.exit(main(sys.argv[1:]))
