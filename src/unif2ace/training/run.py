"""One call from a config to a trained model: validate, build, initialise or resume, run every stage.

Order matters for "fail before any work is lost": the config is validated when loaded, then the data paths and the
text tokenizer, then the model is built and ``--init-from`` / the resume checkpoint is checked key by key, and
only then does training start.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from torch import nn

from unif2ace.config.base import load_config, save_config
from unif2ace.config.base import resolve_config_path as resolve_shipped
from unif2ace.config.train import Unif2aceConfig
from unif2ace.data.dataset import EncodingTokenStore, TokenRecordDataset, TokenStore, load_records
from unif2ace.training.batching import BatchBuilder
from unif2ace.training.distributed import build_runtime, get_logger
from unif2ace.training.init import load_weights_into
from unif2ace.training.layouts import Layouts, load_text_tokenizer
from unif2ace.training.trainer import PreviewFn, Trainer, TrainResult

__all__ = ["build_batch_builder", "load_recipe", "resolve_config_path", "run_training"]

log = get_logger()


def resolve_config_path(name: str) -> Path:
    """A recipe file path, or the name of a recipe shipped in ``unif2ace/configs`` (``train_tiny_cpu``).

    Raises:
        FileNotFoundError: neither a file nor a shipped recipe (message lists the shipped ones).
    """
    return resolve_shipped(name, "train_")


def load_recipe(name: str, overrides: list[str] | None = None) -> Unif2aceConfig:
    """Load a recipe (path or shipped name) with dotted-key overrides."""
    return load_config(Unif2aceConfig, resolve_config_path(name), overrides)


def build_batch_builder(cfg: Unif2aceConfig, tokenizer_dir: Path | None = None) -> BatchBuilder:
    """Records + token shards + tokenizer + feature caches -> a :class:`BatchBuilder` (checks every path).

    Args:
        cfg: the recipe.
        tokenizer_dir: where a ``bpe:<size>`` text tokenizer is kept (trained on the split's texts if absent).

    Raises:
        FileNotFoundError / ValueError: a data path is missing or the data does not fit the config.
    """
    data = cfg.data
    if not data.records:
        raise FileNotFoundError("data.records is not set; pass data.records=PATH/records.jsonl")
    if not data.tokens and not data.encode_images:
        raise FileNotFoundError("data.tokens is not set; pass data.tokens=PATH (shards of 'unif2ace vq encode')")
    records = load_records(data.records, data.split, first=data.first_records)
    store = EncodingTokenStore(data.vq_checkpoint) if data.encode_images else TokenStore(data.tokens)
    dataset = TokenRecordDataset(records, store, data.num_image_tokens, records_file=data.records)
    if dataset.num_missing:
        log.warning("%d records of split %s have no image tokens and are skipped", dataset.num_missing, data.split)
    tokenizer = load_text_tokenizer(
        data.text_tokenizer, cfg.model.vocab, texts=lambda: _record_texts(records), cache_dir=tokenizer_dir
    )
    layouts = Layouts(cfg.model.vocab, tokenizer, data.max_text_len, data.num_image_tokens)
    seq = cfg.model.seq_moe
    kinds = set(seq.und_experts) | set(seq.gen_experts) if seq.enabled else set()
    dims = {k: v for k, v in seq.feature_dims.items() if k in kinds}
    caches = _load_feature_caches(data.features)
    return BatchBuilder(cfg, dataset, layouts, feature_dims=dims, feature_caches=caches)


def _record_texts(records: list[dict[str, Any]]) -> Iterable[str]:
    """Captions and VQA turns of the records (what a ``bpe:<size>`` tokenizer is trained on)."""
    for rec in records:
        yield rec["caption"]
        for turn in rec.get("vqa") or []:
            if isinstance(turn, dict):
                yield f"USER: {turn.get('q', '')} ASSISTANT: {turn.get('a', '')}"


def _load_feature_caches(paths: dict[str, str]) -> dict[str, Any]:
    if not paths:
        return {}
    from unif2ace.model.encoders import FeatureCache

    caches = {}
    for kind, path in paths.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"data.features.{kind}: feature cache not found: {path}")
        caches[kind] = FeatureCache.load(path)
    return caches


def default_preview_fn(cfg: Unif2aceConfig, builder: BatchBuilder) -> PreviewFn:
    """Previews for fixed validation faces (test split if it has tokens) and fixed prompts (their captions)."""
    from unif2ace.training.preview import make_preview_fn

    n = cfg.train.preview_faces
    try:
        held_out = TokenRecordDataset(
            load_records(cfg.data.records, "test"),
            builder.dataset.tokens,
            cfg.data.num_image_tokens,
            records_file=cfg.data.records,
        )
    except ValueError:
        held_out = builder.dataset
    faces = [builder.model_sample(held_out[i]) for i in range(min(n, len(held_out)))]
    prompts = list(cfg.train.preview_prompts) or [f.caption for f in faces]
    return make_preview_fn(
        builder,
        prompts,
        faces,
        steps=cfg.train.preview_steps,
        decoder=_preview_decoder(cfg, builder),
        seed=cfg.train.seed,
    )


def _preview_decoder(cfg: Unif2aceConfig, builder: BatchBuilder) -> Any | None:
    """The VQ decoder for preview grids: the on-the-fly encoder, or the tokenizer named in the shards' provenance."""
    from unif2ace.training.preview import load_preview_decoder

    store = builder.dataset.tokens
    return store.model if isinstance(store, EncodingTokenStore) else load_preview_decoder(cfg.data.tokens)


def _default_model_factory(cfg: Unif2aceConfig) -> nn.Module:
    from unif2ace.model import build_model

    return build_model(cfg.model)


def run_training(
    cfg: Unif2aceConfig,
    out_dir: str | Path,
    init_from: str | Path | None = None,
    preview_fn: PreviewFn | None = None,
    cpu: bool | None = None,
    stop_after: int | None = None,
    model_factory: Callable[[Unif2aceConfig], nn.Module] | None = None,
) -> TrainResult:
    """Train ``cfg`` into ``out_dir``, resuming from its newest complete checkpoint if there is one.

    Args:
        cfg: the recipe.
        out_dir: run folder.
        init_from: initial weights (our checkpoint, an exported or converted Show-o model folder); ignored when
            the run folder already has a checkpoint to resume.
        preview_fn: optional ``preview_fn(model, step, out_dir)``.
        cpu: force CPU (default: CPU when no GPU is visible).
        stop_after: stop after this many optimizer steps of this invocation (tests, time-boxed jobs).
        model_factory: builds the model from the config (default: :func:`unif2ace.model.build_model`).

    Returns:
        The :class:`TrainResult`.
    """
    if cfg.train.gradient_checkpointing and not cfg.model.gradient_checkpointing:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, gradient_checkpointing=True))
    builder = build_batch_builder(cfg, tokenizer_dir=Path(out_dir) / "tokenizer")
    if init_from is not None and not Path(init_from).exists():
        raise FileNotFoundError(f"--init-from: no checkpoint or model folder at {init_from}")
    runtime = build_runtime(
        cfg.train.mixed_precision,
        cfg.train.grad_accum_steps,
        cfg.train.seed,
        cpu=cpu,
        find_unused_parameters=cfg.model.token_moe.enabled or cfg.model.seq_moe.enabled,
    )
    try:
        model = (model_factory or _default_model_factory)(cfg)
        if preview_fn is None and cfg.train.preview_every > 0:
            preview_fn = default_preview_fn(cfg, builder)
        trainer = Trainer(cfg, model, builder, runtime, out_dir, preview_fn=preview_fn, stop_after=stop_after)
        _initialise(trainer, model, init_from)
        if runtime.is_main:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            save_config(cfg, Path(out_dir) / "config.yaml")
        return trainer.run()
    finally:
        runtime.end()


def _initialise(trainer: Trainer, model: nn.Module, init_from: str | Path | None) -> None:
    """Resume from the run folder's newest checkpoint, else load ``--init-from`` (both checked key by key)."""
    resumed = trainer.resume_if_possible()
    if resumed is None and init_from is not None:
        tc = trainer.cfg.train
        report = load_weights_into(
            model, init_from, strict=False, new_codebook=tc.init_new_codebook, from_parent=tc.init_codebook_from_parent
        )
        log.info(
            "initialised from %s (%d tensors loaded, %d dense MLPs upcycled, %d new tensors kept fresh)",
            report["source"],
            report["loaded"],
            report["upcycled"],
            report["kept_fresh"],
        )
    elif resumed is not None and init_from is not None:
        log.info("--init-from ignored: resuming the run in %s", trainer.out_dir)
