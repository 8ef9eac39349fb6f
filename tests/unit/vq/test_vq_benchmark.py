"""benchmarks/vq_benchmark.py: codebook usage counted over a corpus, and the quality numbers it reports."""

from __future__ import annotations

import pytest
import torch
from test_vq_model import tiny

from unif2ace.tokenizer.vq.model import VQModel


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("vq_benchmark.py")


def test_corpus_usage_counts_every_token_once(bench):
    torch.manual_seed(0)
    model = VQModel(tiny(levels=3, dim=4)).eval()  # 32 px, 4x down -> 8x8 tokens, 16 codes
    images = bench.synthetic_images(10, 32)
    out = bench.corpus_usage(model, images, batch_size=3)  # batches of 3, 3, 3, 1
    with torch.no_grad():
        codes = model.encode(images)
    used = torch.unique(codes).numel()
    assert out["num_images"] == 10 and out["tokens_counted"] == codes.numel() == 10 * 64
    assert out["codebook_usage"] == pytest.approx(used / 16) and out["dead_codes"] == 16 - used
    probs = torch.bincount(codes.flatten(), minlength=16).double() / codes.numel()
    entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
    assert out["perplexity"] == pytest.approx(float(entropy.exp()), rel=1e-5)
    # the held-out quality block counts the same codes over the same images
    quality = bench.quality(model, images, batch_size=4)
    assert quality["codebook_usage"] == out["codebook_usage"] and quality["tokens_counted"] == 640
