"""Per-layer expert usage of both MoE levels on a fixed batch, as a heatmap PNG (the paper's routing figure).

The paper's MoE analysis (project page ``moe_analy_00.png``) shows, for every layer, how often each expert is
chosen: token-level experts of the Und and Gen groups, and sequence-level experts (Und: CLIP / Face / Copy / Copy;
Gen: Copy / Zero / Noise / Copy). We rebuild it from the routing records the model returns on a fixed set of
training micro-batches (deterministic: the first ``num_batches`` batches of the recipe's data order):

* token level: ``token_counts`` ``(G, N)`` per layer -> share of each group's non-pad tokens sent to each expert;
* sequence level: ``seq_experts`` ``(B, k)`` per layer -> share of each group's sequences that chose each expert.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unif2ace.config.base import load_config
from unif2ace.config.model import GROUPS, UND
from unif2ace.config.train import Unif2aceConfig
from unif2ace.training.checkpoint import is_complete

__all__ = ["collect_usage", "plot_usage", "routing_report"]


def _flatten(record: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Merge a layer record ``{"token": {...}, "seq": {...}}`` into one ``name -> tensor`` mapping."""
    flat: dict[str, torch.Tensor] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value))
        elif isinstance(value, torch.Tensor):
            flat[key] = value
    return flat


def _layers(routing: Any) -> list[dict[str, torch.Tensor]]:
    """The model's routing records (one per layer, ``TransformerOutput.routing``) as flat mappings."""
    if routing is None:
        return []
    if isinstance(routing, Sequence):
        return [_flatten(r) if isinstance(r, Mapping) else {} for r in routing]
    raise TypeError(f"unsupported routing record type {type(routing).__name__}; expected one mapping per layer")


def collect_usage(
    routings: list[Any], group_ids: list[torch.Tensor], seq_sizes: dict[str, int]
) -> dict[str, np.ndarray]:
    """Sum expert usage over batches.

    Args:
        routings: the model's ``routing`` output of each batch.
        group_ids: ``(B,)`` group of each row of each batch.
        seq_sizes: number of sequence experts per group name.

    Returns:
        ``{"token/und": (layers, N), "token/gen": ..., "seq/und": (layers, E), "seq/gen": ...}`` raw counts
        (keys present only for the MoE levels the model has).
    """
    out: dict[str, np.ndarray] = {}
    for routing, groups in zip(routings, group_ids, strict=True):
        layers = _layers(routing)
        for li, rec in enumerate(layers):
            counts = rec.get("token_counts")
            if counts is not None:
                for gi, name in enumerate(GROUPS):
                    arr = out.setdefault(f"token/{name}", np.zeros((len(layers), counts.shape[1])))
                    arr[li] += counts[gi].cpu().numpy()
            chosen = rec.get("seq_experts")
            if chosen is not None:
                for gi, name in enumerate(GROUPS):
                    arr = out.setdefault(f"seq/{name}", np.zeros((len(layers), seq_sizes[name])))
                    rows = chosen[groups.to(chosen.device) == gi].reshape(-1).cpu().numpy()
                    np.add.at(arr[li], rows, 1)
    return out


def plot_usage(usage: dict[str, np.ndarray], labels: dict[str, list[str]], out_png: Path, title: str) -> Path:
    """Draw each usage table as a layers x experts heatmap of per-layer shares (rows sum to 1)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("the routing heatmap needs matplotlib: pip install 'unif2ace[train]'") from None
    keys = [k for k in ("token/und", "token/gen", "seq/und", "seq/gen") if k in usage]
    if not keys:
        raise ValueError("the model returned no routing records: enable model.token_moe or model.seq_moe")
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 0.25 * usage[keys[0]].shape[0] + 2.2), dpi=110)
    axes = np.atleast_1d(axes)
    titles = {
        "token/und": "Und. token experts",
        "token/gen": "Gen. token experts",
        "seq/und": "Und. sequence experts",
        "seq/gen": "Gen. sequence experts",
    }
    for ax, key in zip(axes, keys, strict=True):
        counts = usage[key]
        share = counts / np.clip(counts.sum(axis=1, keepdims=True), 1, None)  # (layers, experts)
        im = ax.imshow(share, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(share.max(), 1e-6))
        ax.set_title(titles[key], fontsize=9)
        ax.set_xticks(
            range(share.shape[1]), labels.get(key, [str(i + 1) for i in range(share.shape[1])]), fontsize=7, rotation=45
        )
        ax.set_ylabel("layer", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


def routing_report(
    checkpoint: str | Path, out_png: str | Path | None = None, overrides: list[str] | None = None, num_batches: int = 2
) -> Path:
    """Route fixed batches through a checkpoint and write ``routing.png`` (+ ``routing.json`` with raw counts).

    Args:
        checkpoint: a complete ``step-*`` folder.
        out_png: destination (default ``<checkpoint>/routing.png``).
        overrides: dotted overrides of the checkpoint's recipe (e.g. data paths).
        num_batches: micro-batches to route.

    Returns:
        The PNG path.

    Raises:
        FileNotFoundError / ValueError: not a complete checkpoint, data missing, or a model without MoE.
    """
    from unif2ace.training.init import load_weights_into
    from unif2ace.training.run import _default_model_factory, build_batch_builder

    checkpoint = Path(checkpoint)
    if not is_complete(checkpoint):
        raise FileNotFoundError(f"routing: {checkpoint} is not a complete checkpoint folder (step-* with COMPLETE)")
    cfg = load_config(Unif2aceConfig, checkpoint / "train_config.yaml", overrides)
    model = _default_model_factory(cfg)
    load_weights_into(model, checkpoint, strict=True)
    model.eval()
    builder = build_batch_builder(cfg, tokenizer_dir=checkpoint / "tokenizer")
    t2i, mmu = cfg.data.t2i_per_batch, cfg.data.mmu_per_batch
    routings, groups = [], []
    with torch.no_grad():
        for k in range(num_batches):
            batch = builder.build(k * t2i, k * mmu, t2i, mmu)
            gen = builder.noise_generator(k, 0, batch.device)
            out = model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                ctx=batch.routing_context(gen),
            )
            routings.append(out.routing)
            groups.append(batch.group_ids)
    seq = cfg.model.seq_moe
    usage = collect_usage(routings, groups, {"und": len(seq.und_experts), "gen": len(seq.gen_experts)})
    labels = {"seq/und": list(seq.und_experts), "seq/gen": list(seq.gen_experts)}
    out_png = Path(out_png) if out_png else checkpoint / "routing.png"
    plot_usage(usage, labels, out_png, f"expert usage, {checkpoint.name} ({num_batches} fixed batches)")
    raw = {k: v.astype(int).tolist() for k, v in usage.items()}
    out_png.with_suffix(".json").write_text(json.dumps({"groups": list(GROUPS), "und_id": UND, **raw}, indent=1))
    return out_png
