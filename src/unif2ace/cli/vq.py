"""``unif2ace vq``: train the LFQ image tokenizer, encode images to token shards, reconstruct, convert MAGVIT-v2.

Examples::

    unif2ace vq train --config vq_faces_64 --data data/faces/images --out runs/vq64 train.max_steps=6000
    unif2ace vq encode data/faces/records.jsonl --tokenizer runs/vq64 --out data/faces/tokens64
    unif2ace vq reconstruct face.jpg --tokenizer runs/vq64 --out face_recon.png
    unif2ace vq convert-magvit /models/magvitv2 --out /models/magvitv2-unif2ace
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from unif2ace.config.base import load_config
from unif2ace.config.base import resolve_config_path as resolve_shipped


def resolve_config_path(name: str) -> Path:
    """A tokenizer config file path, or the name of one shipped in ``unif2ace/configs`` (``vq_faces_64``).

    Raises:
        FileNotFoundError: neither a file nor a shipped config (message lists the shipped ``vq_*`` ones).
    """
    return resolve_shipped(name, "vq_")


def _train(args: argparse.Namespace) -> int:
    from unif2ace.tokenizer.vq.config import VQConfig
    from unif2ace.tokenizer.vq.trainer import VQTrainer

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.sources={[str(d) for d in args.data]!r}")
    if args.init_from:
        overrides.append(f"train.init_from={args.init_from}")
    cfg = load_config(VQConfig, resolve_config_path(args.config), overrides)
    trainer = VQTrainer(cfg, args.out)
    if args.resume or args.resume_from:
        trainer.load_checkpoint(args.resume_from or args.out)
    print(f"training on {len(trainer.data)} images ({len(trainer.held_out_paths)} held out), device {trainer.device}")
    last = trainer.train(progress=not args.no_progress)
    if trainer.data.bad:
        print(f"skipped {len(trainer.data.bad)} unreadable images (listed in the checkpoint's training_state.json)")
    summary = ", ".join(f"{k}={last[k]:.4g}" for k in ("loss", "psnr", "usage", "perplexity") if k in last)
    print(f"done at step {trainer.step}: {summary}; tokenizer at {args.out}")
    return 0


def _load(args: argparse.Namespace):
    from unif2ace.tokenizer.vq.checkpoint import load_tokenizer

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    return load_tokenizer(args.tokenizer, device=device)


def _encode(args: argparse.Namespace) -> int:
    from unif2ace.tokenizer.vq.checkpoint import WEIGHTS_NAME, latest_checkpoint
    from unif2ace.tokenizer.vq.data import collect_image_paths
    from unif2ace.tokenizer.vq.pretokenize import encode_to_shards
    from unif2ace.utils.io import file_sha256

    model = _load(args)
    folder = Path(args.tokenizer)
    if not (folder / WEIGHTS_NAME).is_file():
        folder = latest_checkpoint(folder) or folder
    info = {"folder": str(folder.resolve()), "weights_sha256": file_sha256(folder / WEIGHTS_NAME)}
    paths = collect_image_paths([args.input])
    size = args.image_size or model.config.resolution
    result = encode_to_shards(
        model, paths, args.out, size, info, args.batch_size, args.shard_size, progress=not args.no_progress
    )
    print(f"encoded {result.num_encoded} images into {len(result.shards)} shards at {result.out_dir}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} files (see provenance.json), e.g. {result.skipped[0]['reason']}")
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    from unif2ace.tokenizer.vq.metrics import psnr
    from unif2ace.utils.images import from_tensor, image_grid, load_image, to_tensor

    model = _load(args)
    size = args.image_size or model.config.resolution
    original = load_image(args.image, size)
    images = to_tensor(original)[None].to(next(model.parameters()).device)  # (1, 3, S, S)
    with torch.no_grad():
        codes = model.encode(images)
        recon = model.decode(codes).clamp(-1, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image_grid([[original, from_tensor(recon[0])]], pad=0).save(out)
    value = float(psnr(recon, images)[0])
    print(f"PSNR {value:.2f} dB ({codes.shape[1]} tokens, codebook {model.codebook_size}); wrote {out}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from unif2ace.compat.magvit import convert_magvitv2

    out = convert_magvitv2(args.weights, args.out, args.config)
    print(f"converted MAGVIT-v2 weights to {out}")
    return 0


def _add_tokenizer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", required=True, help="tokenizer folder (config.json + model.safetensors) or run dir")
    p.add_argument("--image-size", type=int, default=None, help="square input size (default: the model's resolution)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``unif2ace vq {train,encode,reconstruct,convert-magvit}``."""
    vq = subparsers.add_parser("vq", help="image tokenizer (LFQ / MAGVIT-v2)")
    sub = vq.add_subparsers(dest="vq_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("train", help="train a tokenizer")
    p.add_argument("--config", required=True, help="YAML config path or shipped name (vq_faces_64, vq_faces_128, ...)")
    p.add_argument("--data", action="append", default=None, help="image folder / .txt list / .jsonl (repeatable)")
    p.add_argument("--out", default="runs/vq", help="run folder (checkpoints, samples, metrics)")
    p.add_argument("--resume", action="store_true", help="resume from the latest checkpoint in --out")
    p.add_argument("--resume-from", default=None, help="resume from this checkpoint folder")
    p.add_argument("--init-from", default=None, help="start from this tokenizer's weights (step 0, new optimiser)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=100")
    p.set_defaults(func=_train)

    p = sub.add_parser("encode", help="encode images to token shards with provenance")
    p.add_argument("input", help="image folder, .txt list or .jsonl records")
    p.add_argument("--out", required=True, help="output folder for tokens-*.safetensors + provenance.json")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shard-size", type=int, default=8192)
    p.add_argument("--no-progress", action="store_true")
    _add_tokenizer_args(p)
    p.set_defaults(func=_encode)

    p = sub.add_parser("reconstruct", help="write original | reconstruction side by side and print PSNR")
    p.add_argument("image", help="input image")
    p.add_argument("--out", required=True, help="output PNG")
    _add_tokenizer_args(p)
    p.set_defaults(func=_reconstruct)

    p = sub.add_parser("convert-magvit", help="convert MAGVIT-v2 weights (e.g. showlab/magvitv2) to our format")
    p.add_argument("weights", help="weights file or local folder of showlab/magvitv2")
    p.add_argument("--config", default=None, help="JSON with encoder_kwargs/decoder_kwargs/quantizer_kwargs")
    p.add_argument("--out", required=True, help="destination tokenizer folder")
    p.set_defaults(func=_convert)
