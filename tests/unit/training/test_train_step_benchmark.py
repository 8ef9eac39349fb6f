"""benchmarks/train_step.py: times each variant of a recipe and trains the same thing in each."""

from __future__ import annotations

import json

import pytest
from train_helpers import PADDED_ROWS, make_dataset, tiny_config

from unif2ace.config.base import save_config


def test_variants_are_timed_and_trimmed_padding_trains_the_same(tmp_path, load_benchmark):
    records, tokens = make_dataset(tmp_path)
    cfg = tiny_config(records, tokens, **PADDED_ROWS)  # padded rows: the trim has columns to drop
    save_config(cfg, tmp_path / "recipe.yaml")
    bench = load_benchmark("train_step.py")
    out = tmp_path / "bench.json"
    result = bench.main(
        ["--config", str(tmp_path / "recipe.yaml"), "--steps", "4", "--skip", "1", "--threads", "1",
         "--set", "data.trim_padding=true", "data.trim_padding=false", "--out", str(out)]
    )  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    runs = result["runs"]
    trimmed, padded = runs["data.trim_padding=true|stage 0"], runs["data.trim_padding=false|stage 0"]
    for row in (trimmed, padded):
        assert row["steps_timed"] == 2 and row["s_per_step_median"] > 0
    assert trimmed["final_loss"] == pytest.approx(padded["final_loss"], rel=1e-5)


def test_too_few_steps_is_refused(tmp_path, load_benchmark):
    with pytest.raises(SystemExit, match="--steps 3 must exceed --skip 5"):
        load_benchmark("train_step.py").main(["--steps", "3", "--out", str(tmp_path / "x.json")])
