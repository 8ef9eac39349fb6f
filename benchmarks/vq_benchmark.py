"""Benchmark an image tokenizer: held-out PSNR / SSIM, codebook usage, encode / decode throughput -> JSON.

Usage::

    python benchmarks/vq_benchmark.py --tokenizer runs/vq64 --data data/faces/heldout --out bench/vq64.json
    python benchmarks/vq_benchmark.py --magvit-weights shared/fixtures/reference/magvit_state_dict.safetensors \
        --magvit-config shared/fixtures/reference/magvit_config.json --synthetic 16 --out bench/magvit_tiny.json

Quality is measured on the given images (resized / centre-cropped to the tokenizer's resolution), or on
``--synthetic N`` generated images when no data folder is at hand (smoke runs; the numbers then say nothing
about faces). Throughput is timed on CPU, and on CUDA too when a GPU is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from unif2ace.tokenizer.vq.data import collect_image_paths
from unif2ace.tokenizer.vq.metrics import CodebookUsage, psnr, ssim
from unif2ace.utils.images import load_image, to_tensor
from unif2ace.utils.io import atomic_write_json


def load_model(args: argparse.Namespace):
    if args.tokenizer:
        from unif2ace.tokenizer.vq.checkpoint import load_tokenizer

        return load_tokenizer(args.tokenizer), str(args.tokenizer)
    from unif2ace.compat.magvit import load_magvitv2

    return load_magvitv2(args.magvit_weights, args.magvit_config), str(args.magvit_weights)


def synthetic_images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images ``(N, 3, S, S)`` in [-1, 1]: low-resolution noise upsampled bilinearly."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(count, 3, 8, 8, generator=gen) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def held_out_images(args: argparse.Namespace, size: int) -> tuple[torch.Tensor, list[str]]:
    if not args.data:
        return synthetic_images(args.synthetic, size), []
    return read_images(args.data, size, args.num_images)


def read_images(sources: list[str], size: int, limit: int) -> tuple[torch.Tensor, list[str]]:
    """Up to ``limit`` images from folders / lists / records as ``(N, 3, size, size)``, plus the skipped files."""
    skipped = []
    tensors = []
    for path in collect_image_paths(sources)[:limit]:
        try:
            tensors.append(to_tensor(load_image(path, size)))
        except (ValueError, FileNotFoundError) as err:
            skipped.append(str(err).splitlines()[0])
    if not tensors:
        raise SystemExit(f"no readable images in {sources}")
    return torch.stack(tensors), skipped


@torch.inference_mode()
def quality(model, images: torch.Tensor, batch_size: int) -> dict:
    usage = CodebookUsage(model.codebook_size, window=10**9)
    psnrs, ssims = [], []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        codes = model.encode(x)
        usage.update(codes)
        recon = model.decode(
            codes, shape=(x.shape[-2] // model.downsample_factor, x.shape[-1] // model.downsample_factor)
        )
        recon = recon.clamp(-1, 1)
        psnrs += psnr(recon, x).tolist()
        ssims += ssim(recon, x).tolist() if min(x.shape[-2:]) >= 11 else []
    stats = usage.stats()
    return {
        "num_images": len(images),
        "psnr_mean_db": statistics.fmean(psnrs),
        "psnr_std_db": statistics.pstdev(psnrs),
        "ssim_mean": statistics.fmean(ssims) if ssims else None,
        "codebook_size": model.codebook_size,
        "tokens_counted": int(usage.counts.sum()),
        "codebook_usage": stats["usage"],
        "dead_codes": int(stats["dead_codes"]),
        "perplexity": stats["perplexity"],
    }


@torch.inference_mode()
def corpus_usage(model, images: torch.Tensor, batch_size: int) -> dict:
    """Codebook usage over many images (e.g. the training corpus: the tokens a model learns from)."""
    usage = CodebookUsage(model.codebook_size, window=10**9)
    for start in range(0, len(images), batch_size):
        usage.update(model.encode(images[start : start + batch_size]))
    stats = usage.stats()
    return {
        "num_images": len(images),
        "tokens_counted": int(usage.counts.sum()),
        "codebook_usage": stats["usage"],
        "dead_codes": int(stats["dead_codes"]),
        "perplexity": stats["perplexity"],
    }


@torch.inference_mode()
def throughput(model, images: torch.Tensor, device: torch.device, batch_size: int, repeats: int) -> dict:
    model = model.to(device)
    x = images[:batch_size].to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(fn) -> float:
        fn()  # warm-up
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync()
        return repeats * len(x) / (time.perf_counter() - start)

    codes = model.encode(x)
    result = {
        "batch_size": len(x),
        "encode_images_per_s": timed(lambda: model.encode(x)),
        "decode_images_per_s": timed(lambda: model.decode(codes)),
    }
    if device.type == "cuda":
        result["device_name"] = torch.cuda.get_device_name(device)
    model.to("cpu")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tokenizer", type=Path, help="unif2ace tokenizer folder or run folder")
    source.add_argument("--magvit-weights", type=Path, help="MAGVIT-v2 weights (file or folder)")
    parser.add_argument("--magvit-config", type=Path, default=None, help="MAGVIT-v2 config JSON")
    parser.add_argument("--data", nargs="*", default=None, help="held-out images (folders / lists / records)")
    parser.add_argument(
        "--usage-data",
        nargs="*",
        default=None,
        help="also count codebook usage over these images (e.g. the whole corpus; held-out sets are small)",
    )
    parser.add_argument("--synthetic", type=int, default=16, help="synthetic images when --data is not given")
    parser.add_argument("--num-images", type=int, default=1000, help="at most this many held-out images")
    parser.add_argument("--image-size", type=int, default=None, help="default: the tokenizer's resolution")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per device")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--out", type=Path, required=True, help="JSON output path")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model, source_name = load_model(args)
    size = args.image_size or model.config.resolution
    images, skipped = held_out_images(args, size)
    report = {
        "tokenizer": source_name,
        "image_size": size,
        "tokens_per_image": (size // model.downsample_factor) ** 2,
        "data": args.data or f"synthetic:{args.synthetic}",
        "skipped_images": skipped,
        "quality": quality(model, images, args.batch_size),
        "speed": {"cpu": throughput(model, images, torch.device("cpu"), args.batch_size, args.repeats)},
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
        },
    }
    if args.usage_data:
        corpus, corpus_skipped = read_images(args.usage_data, size, 10**9)
        report["corpus_usage"] = {"data": args.usage_data, "skipped_images": corpus_skipped}
        report["corpus_usage"].update(corpus_usage(model, corpus, args.batch_size))
    if torch.cuda.is_available():
        report["speed"]["cuda"] = throughput(model, images, torch.device("cuda"), args.batch_size, args.repeats)
    atomic_write_json(args.out, report)
    print(json.dumps({k: report[k] for k in ("quality", "corpus_usage", "speed") if k in report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
