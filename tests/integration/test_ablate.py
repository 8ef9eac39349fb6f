"""``unif2ace ablate --toy``: trains, exports and evaluates a variant, resumes, and prints both tables."""

from __future__ import annotations

import json

from unif2ace.cli.main import main
from unif2ace.evaluation.ablate import PAPER_T3, PAPER_T4, VARIANTS, render_tables


def test_ablate_toy_one_variant_and_resume(tmp_path, capsys):
    out = tmp_path / "abl"
    assert main(["ablate", "--out", str(out), "--toy", "--only", "dense"]) == 0
    text = capsys.readouterr().out
    assert "expected ~" in text and "Table 3" in text and "Table 4" in text
    row = json.loads((out / "dense" / "result.json").read_text())
    assert row["mask_ce"] > 0 and row["bleu4"] is not None  # trained (finite masked CE) and evaluated
    report = json.loads((out / "dense" / "eval" / "report.json").read_text())
    assert report["model"]["hash"] == row["model_hash"] and "routing.png" not in report["plots"]  # dense: no MoE
    # a rerun resumes: the finished variant is read back, not retrained
    stamp = (out / "dense" / "result.json").stat().st_mtime_ns
    assert main(["ablate", "--out", str(out), "--toy", "--only", "dense"]) == 0
    assert (out / "dense" / "result.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "ablation.json").read_text())["rows"]["dense"] == row


def test_tables_list_every_paper_row_next_to_ours():
    rows = {name: {"fid": 100.0 + i, "attribute_accuracy": 0.5} for i, name in enumerate(VARIANTS)}
    text = render_tables(rows)
    assert set(PAPER_T3) | set(PAPER_T4) == set(VARIANTS)
    assert "| mask-only | 0 | 0.879 | 0.661 | 77.463 | 85.993 | 103.0 | 0.500 |" in text
    assert "| ✗ | ✗ | 0.878 | 72.877 | 84.432 | 4.988 | 6.031 | 105.0 |" in text


def test_unknown_variant_is_an_error(tmp_path, capsys):
    assert main(["ablate", "--out", str(tmp_path), "--toy", "--only", "nope"]) == 2
    assert "unknown ablation variant" in capsys.readouterr().err
