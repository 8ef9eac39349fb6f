"""``unif2ace eval`` end to end on a tiny random bundle and a handful of faces-mini records (fast, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unif2ace.cli.main import main

MINI = Path(__file__).resolve().parents[2] / "data" / "faces-mini"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from unif2ace.pipeline import create_random_bundle

    return create_random_bundle(tmp_path_factory.mktemp("bundle"), seed=0)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recs")
    lines = [json.loads(x) for x in (MINI / "records.jsonl").read_text().splitlines()]
    test = [r for r in lines if r["split"] == "test"][:6]
    (folder / "images").symlink_to(MINI / "images")
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    return folder / "records.jsonl"


@pytest.mark.slow  # ~4 min on 2 busy cores: annotators, dlib edits, METEOR's JVM, two full runs
def test_eval_writes_a_keyed_report_with_groups_and_plots(bundle, records, tmp_path, monkeypatch):
    for var in ("UNIF2ACE_JUDGE_API_KEY", "OPENAI_API_KEY", "UNIF2ACE_VQASCORE_MODEL", "UNIF2ACE_VLM_JUDGE_MODEL"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "eval"
    argv = ["eval", "--checkpoint", str(bundle), "--data", str(records), "--out", str(out), "--quick"]
    argv += ["--num-prompts", "4", "--num-understanding", "3", "--num-edits", "1", "--steps", "2", "--skip", "fid"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    from unif2ace.pipeline import Unif2acePipeline

    assert report["model"]["hash"] == Unif2acePipeline.from_pretrained(bundle).model_hash
    recipe = report["recipe"]
    assert recipe["seed"] == 0 and recipe["steps"] == 2 and len(recipe["prompts"]) == 4
    assert recipe["guidance_scale"] == pytest.approx(1.5)  # the bundle's recipe, recorded
    gen = report["generation"]["metrics"]
    assert gen["attribute_checks"] > 0 and 0.0 <= gen["attribute_accuracy"] <= 1.0
    assert gen["attribute_accuracy_real_faces"] > 0.5  # the judge mostly agrees with the real faces' own captions
    und = report["understanding"]["metrics"]
    assert 0.0 <= und["bleu1"] <= 1.0 and und["vqa_questions"] > 0
    assert set(report["understanding"]["groups"]) == {"age_band", "gender", "skin_tone"}
    assert sum(row["n"] for row in report["understanding"]["groups"]["gender"].values()) == 3
    skipped = "\n".join(report["skipped"])
    for expected in ("VQAScore skipped", "VLM-score skipped", "LLM-judge scores skipped", "fid skipped"):
        assert expected in skipped
    assert (out / "report.md").read_text().startswith("# Evaluation report")
    assert {"samples.png", "groups.png", "routing.png"} <= set(report["plots"])
    assert all((out / p).stat().st_size > 1000 for p in report["plots"])
    assert len(list((out / "images").glob("gen-*.png"))) == 4
    assert "token/gen" in report["routing"] and "seq/und" in report["routing"]
    # same recipe -> same images (the recipe pins the run)
    again = tmp_path / "again"
    assert main([*argv[:6], str(again), *argv[7:]]) == 0
    for p in sorted((out / "images").glob("gen-*.png")):
        assert (again / "images" / p.name).read_bytes() == p.read_bytes()


def test_eval_fast_path_report(bundle, records, tmp_path, monkeypatch):
    monkeypatch.delenv("UNIF2ACE_JUDGE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "fast"
    argv = ["eval", "--checkpoint", str(bundle), "--data", str(records), "--out", str(out), "--num-prompts", "2"]
    argv += ["--num-understanding", "2", "--steps", "2", "--skip", "fid,meteor,attributes,edits,vqascore,alignment"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"]["prompt_ids"] == [json.loads(x)["id"] for x in records.read_text().splitlines()[:2]]
    assert "bleu4" in report["understanding"]["metrics"] and "routing.png" in report["plots"]
    assert any("LLM-judge" in line for line in report["skipped"])


def test_eval_bad_input_is_one_line(bundle, tmp_path, capsys):
    assert (
        main(["eval", "--checkpoint", str(bundle), "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path)]) == 2
    )
    assert "error" in capsys.readouterr().err


def test_eval_zero_counts_mean_none(bundle, records, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("UNIF2ACE_JUDGE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "gen-only"
    argv = ["eval", "--checkpoint", str(bundle), "--data", str(records), "--out", str(out), "--num-prompts", "2"]
    argv += ["--num-understanding", "0", "--num-edits", "0", "--steps", "2"]
    argv += ["--skip", "fid,meteor,attributes,edits,vqascore,alignment"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["understanding"] == {} and "understanding skipped: --num-understanding 0" in report["skipped"]
    assert len(report["recipe"]["prompt_ids"]) == 2 and len(list((out / "images").glob("gen-*.png"))) == 2
    assert not (out / "understanding_outputs.json").exists()
    assert main(argv[:7] + ["--num-prompts", "-1"]) == 2
    assert "num_prompts must be >= 0" in capsys.readouterr().err
