"""Bad configs, missing data, a full disk and an incompatible --init-from stop with one line, losing no work."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest
import yaml

from unif2ace.cli.main import main
from unif2ace.config.base import to_dict
from unif2ace.training import checkpoint as ckpt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "training"))
from train_helpers import make_dataset, model_factory, tiny_config  # noqa: E402


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    import unif2ace.training.run as run

    monkeypatch.setattr(run, "_default_model_factory", model_factory())
    records, tokens = make_dataset(tmp_path / "data")
    cfg = tiny_config(records, tokens, **{"stages": [{"name": "main", "steps": 4, "lr": 1e-3}]})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def _train(capsys, *args: str) -> tuple[int, str]:
    code = main(["train", *args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.lerning_rate=1", "config field 'train.lerning_rate': unknown key"),
        ("stages=[]", "config field 'stages': needs at least one stage"),
        ("train.mixed_precision=fp8", "config field 'train.mixed_precision'"),
        ("data.t2i_per_batch=0", None),
        ("model.num_heads=3", "config field 'model.num_heads'"),
        ("train.loss.mode=unknown", "config field 'train.loss.mode'"),
    ],
)
def test_bad_configs_stop_before_any_work(capsys, recipe, tmp_path, override, needle):
    overrides = [override, "data.mmu_per_batch=0"] if override.startswith("data.t2i") else [override]
    code, line = _train(capsys, "--config", str(recipe), "--out", str(tmp_path / "run"), *overrides)
    assert code == 2 and line.startswith("unif2ace train: error: ")
    assert needle is None or needle in line, line
    assert not (tmp_path / "run").exists()


def test_missing_files_name_the_field(capsys, recipe, tmp_path):
    code, line = _train(capsys, "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and "config not found" in line
    code, line = _train(
        capsys, "--config", str(recipe), "--out", str(tmp_path / "run"), f"data.records={tmp_path / 'missing.jsonl'}"
    )
    assert code == 2 and "data.records" in line and "missing.jsonl" in line
    code, line = _train(
        capsys, "--config", str(recipe), "--out", str(tmp_path / "run"), f"data.tokens={tmp_path / 'no_tokens'}"
    )
    assert code == 2 and "data.tokens" in line
    code, line = _train(capsys, "--config", str(recipe), "--out", str(tmp_path / "run"), "data.text_tokenizer=x.json")
    assert code == 2 and "data.text_tokenizer" in line
    assert not (tmp_path / "run").exists()


def test_full_disk_keeps_the_previous_checkpoint_and_resumes(capsys, recipe, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    real = ckpt.save_tensors

    def fills_up(path, *args, **kwargs):  # the first checkpoint fits, the disk is full during the second
        if "step-0000004" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_tensors", fills_up)
    code, line = _train(capsys, "--config", str(recipe), "--out", str(run_dir))
    assert code == 2 and "disk full" in line and "step-0000002 is intact" in line
    assert [p.name for p in ckpt.checkpoint_dirs(run_dir / "checkpoints")] == ["step-0000002"]
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    monkeypatch.setattr(ckpt, "save_tensors", real)
    code = main(["train", "--config", str(recipe), "--out", str(run_dir)])
    assert code == 0 and "resuming from" in capsys.readouterr().err
    assert ckpt.latest_checkpoint(run_dir / "checkpoints").name == "step-0000004"


def test_incompatible_init_from_names_the_key(capsys, recipe, tmp_path):
    assert main(["train", "--config", str(recipe), "--out", str(tmp_path / "small"), "train.checkpoint_every=100"]) == 0
    source = ckpt.latest_checkpoint(tmp_path / "small" / "checkpoints")
    code, line = _train(
        capsys,
        "--config",
        str(recipe),
        "--out",
        str(tmp_path / "big"),
        "--init-from",
        str(source),
        "model.intermediate_size=96",
    )
    assert code == 2 and "incompatible checkpoint" in line and "has shape" in line and "' has shape" in line
    assert not (tmp_path / "big").exists()  # stopped before writing anything
    code, line = _train(
        capsys, "--config", str(recipe), "--out", str(tmp_path / "big"), "--init-from", str(tmp_path / "nothing")
    )
    assert code == 2 and "--init-from" in line
    code = main(["train", "--config", str(recipe), "--out", str(tmp_path / "ok"), "--init-from", str(source)])
    assert code == 0 and "initialised from" in capsys.readouterr().err


def test_changed_model_on_resume_stops_with_the_key(capsys, recipe, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(recipe), "--out", str(run_dir), "--max-steps", "2"]) == 0
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    code, line = _train(capsys, "--config", str(recipe), "--out", str(run_dir), "model.intermediate_size=96")
    assert code == 2 and "incompatible checkpoint" in line
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before


def test_diverging_run_stops_with_one_line(capsys, recipe, tmp_path):
    code, line = _train(
        capsys,
        "--config",
        str(recipe),
        "--out",
        str(tmp_path / "run"),
        "stages=[{name: hot, steps: 6, lr: 1.0e+12}]",
        "train.max_grad_norm=0",
    )
    assert code == 2 and "non-finite loss" in line and "at step" in line
