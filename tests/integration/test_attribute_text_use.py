"""benchmarks/attribute_text_use.py: caption flips, and the log-prob differences it reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

SMILE_NO = "She is not smiling, with closed lips and the eyes open, and looks calm and neutral."
SMILE_YES = "She smiles warmly, with parted lips and the eyes open, and looks happy."
MOOD_NO = "Overall, the expression suggests quiet concentration."
MOOD_YES = "The look conveys an easy-going, approachable manner."
GLASSES_NO = "There are no glasses on her face."
GLASSES_YES = "She wears a pair of glasses, with no sunglasses."


def _corpus(root, n: int = 24):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        smile, glasses = i % 3 != 0, i % 4 == 0
        caption = f"A woman. {SMILE_YES if smile else SMILE_NO} {GLASSES_YES if glasses else GLASSES_NO}"
        rows.append(
            {
                "id": f"f{i}",
                "image": f"images/{i}.png",
                "source": "synth",
                "caption": caption,
                "attributes": {"smile": {"value": smile}, "eyeglasses": {"value": glasses}},
                "split": "test" if i >= 16 else "train",
            }
        )
    (root / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "records.jsonl"


def test_flips_state_the_opposite_value(load_benchmark):
    bench = load_benchmark("attribute_text_use.py")
    rules = {(a, v): (k, e) for a, v, k, e in bench.FLIPS}
    assert bench.flip_caption(f"{SMILE_NO} {MOOD_NO}", *rules[("smile", False)]) == (
        "She is smiling, with parted lips and the eyes open, and looks happy. "
        "Overall, the expression suggests a relaxed, friendly mood."
    )
    assert bench.flip_caption(f"{SMILE_YES} {MOOD_YES}", *rules[("smile", True)]) == (
        "She is not smiling, with closed lips and the eyes open, and looks calm and neutral. "
        "The look conveys a steady, unhurried manner."
    )
    assert bench.flip_caption(GLASSES_NO, *rules[("eyeglasses", False)]) == "There are glasses on her face."
    assert bench.flip_caption(GLASSES_YES, *rules[("eyeglasses", True)]) == "She wears no glasses."
    assert bench.flip_caption(GLASSES_NO, *rules[("smile", False)]) is None  # not the attribute's phrase


def test_reports_log_prob_differences_that_vanish_for_a_no_op_flip(tmp_path, tiny_bundle, load_benchmark, monkeypatch):
    bench = load_benchmark("attribute_text_use.py")
    records = _corpus(tmp_path)
    out = tmp_path / "text_use.json"
    args = ["--checkpoint", str(tiny_bundle), "--data", str(records), "--num-faces", "8", "--top", "4"]
    result = bench.main([*args, "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = {k: v for k, v in result["runs"][str(tiny_bundle)].items() if k != "model_hash"}
    # test faces 16..23: smile False at 18 and 21, eyeglasses True at 16 and 20
    assert rows["smile=False"]["faces"] == 2 and rows["smile=True"]["faces"] == 6
    assert rows["eyeglasses=True"]["faces"] == 2 and rows["eyeglasses=False"]["faces"] == 6
    assert all(len(r["positions"]) == 4 for r in rows.values())
    assert any(abs(r["flip_at_attribute"]) > 1e-6 for r in rows.values())  # other words, other logits
    assert bench.main([*args, "--out", str(out)]) == result  # seeded noise expert: the same figures again

    # a flip that changes nothing moves nothing
    monkeypatch.setattr(bench, "FLIPS", [("smile", False, [(r"is not smiling", "is not smiling")], [])])
    same = bench.main([*args, "--out", str(out)])["runs"][str(tiny_bundle)]["smile=False"]
    assert same["flip_at_attribute"] == 0 and same["flip_elsewhere"] == 0
    assert same["vs_empty_elsewhere"] == pytest.approx(rows["smile=False"]["vs_empty_elsewhere"])
    with pytest.raises(SystemExit, match="--top"):
        bench.main([*args, "--top", "0", "--out", str(out)])
    assert torch.isfinite(torch.tensor(same["vs_empty_at_attribute"]))
