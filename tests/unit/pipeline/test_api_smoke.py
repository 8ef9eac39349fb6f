import torch

from unif2ace import Unif2acePipeline


def test_generate_seeded_repeat_and_caption(tiny_bundle):
    pipe = Unif2acePipeline.from_pretrained(tiny_bundle, device="cpu")
    a = pipe.generate("A woman with red hair", num_images=2, seed=3)
    b = pipe.generate("A woman with red hair", num_images=2, seed=3)
    assert a.codes.shape == (2, 64) and torch.equal(a.codes, b.codes)
    assert [im.tobytes() for im in a.images] == [im.tobytes() for im in b.images]
    assert a.metadata["model_hash"] == pipe.model_hash and a.metadata["seed"] == 3
    pieces = []
    cap = pipe.caption(a.images[0], seed=1, text_callback=pieces.append)
    assert "".join(pieces) == cap.text
