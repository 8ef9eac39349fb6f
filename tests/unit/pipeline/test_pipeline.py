"""Unif2acePipeline on a random tiny bundle: every call, seeded repeats, callbacks, streaming, batching, editing."""

import numpy as np
import pytest
import torch
from PIL import Image

from unif2ace import Unif2acePipeline
from unif2ace.pipeline import select_device
from unif2ace.pipeline.demo import example_faces
from unif2ace.utils.images import resize_center_crop


def test_attributes(pipe, tiny_bundle):
    import hashlib

    assert pipe.name == "random-tiny" and pipe.device == torch.device("cpu")
    assert pipe.model_hash == hashlib.sha256((tiny_bundle / "model.safetensors").read_bytes()).hexdigest()
    assert (pipe.image_size, pipe.num_image_tokens, pipe.grid) == (64, 64, 8)


def test_generate_seeded_repeat_and_metadata(pipe):
    a = pipe.generate("A woman with red hair", num_images=2, seed=3, steps=3)
    b = pipe.generate("A woman with red hair", num_images=2, seed=3, steps=3)
    c = pipe.generate("A woman with red hair", num_images=2, seed=4, steps=3)
    assert a.codes.shape == (2, 64) and a.codes.dtype == torch.long
    assert int(a.codes.min()) >= 0 and int(a.codes.max()) < 64
    assert torch.equal(a.codes, b.codes) and not torch.equal(a.codes, c.codes)
    assert [im.tobytes() for im in a.images] == [im.tobytes() for im in b.images]
    assert all(im.size == (64, 64) and im.mode == "RGB" for im in a.images)
    assert a.seeds == [3, 3] and a.prompts == ["A woman with red hair"] * 2
    meta = a.metadata
    assert (meta["model_hash"], meta["seed"], meta["steps"], meta["guidance_scale"]) == (pipe.model_hash, 3, 3, 1.5)
    # images are the VQ decoding of the returned codes
    assert [im.tobytes() for im in pipe.decode(a.codes)] == [im.tobytes() for im in a.images]


def test_generate_unseeded_records_its_seed(pipe):
    out = pipe.generate("A man", steps=2)
    again = pipe.generate("A man", steps=2, seed=out.metadata["seed"])
    assert torch.equal(out.codes, again.codes)


def test_generate_batch_of_prompts(pipe):
    out = pipe.generate(["A man", "A woman"], num_images=2, seed=0, steps=2)
    assert out.prompts == ["A man", "A man", "A woman", "A woman"] and out.codes.shape == (4, 64)
    single = pipe.generate(["A man", "A woman"], num_images=2, seed=0, steps=2)
    assert torch.equal(out.codes, single.codes)


def test_generate_uses_training_layout_and_negative_prompt(pipe, monkeypatch):
    seen = {}
    real = pipe.engine.generate_image_tokens

    def spy(prefix, n, **kw):
        seen.update(prefix=prefix, uncond=kw["uncond_prefix_ids"], w=kw["guidance_scale"])
        return real(prefix, n, **kw)

    monkeypatch.setattr(pipe.engine, "generate_image_tokens", spy)
    prompter, m = pipe.layouts.prompter, pipe.layouts.max_text_len
    pipe.generate("A man", seed=0, steps=2, guidance_scale=3.0, negative_prompt="A woman")
    assert torch.equal(seen["prefix"], prompter.t2i_gen(["A man"]).input_ids[:, : m + 1])
    assert torch.equal(seen["uncond"], prompter.t2i_gen(["A woman"]).input_ids[:, : m + 1])
    pipe.generate("A man", seed=0, steps=2)
    assert torch.equal(seen["uncond"], prompter.t2i_gen([""]).input_ids[:, : m + 1]) and seen["w"] == 1.5
    pipe.generate("A man", seed=0, steps=2, guidance_scale=0)
    assert seen["uncond"] is None and seen["w"] == 0.0


def test_generate_callback_previews(pipe):
    calls = []
    pipe.generate("A man", seed=1, steps=4, callback=lambda s, t, ims: calls.append((s, t, ims)))
    assert [(s, t) for s, t, _ in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(len(ims) == 1 and ims[0].size == (64, 64) for _, _, ims in calls)
    first = np.asarray(calls[0][2][0])
    assert (first == 127).all(axis=2).any() or (first == 128).all(axis=2).any()  # masked cells shown grey

    class Quiet:
        wants_images = False

        def __init__(self):
            self.seen = []

        def __call__(self, step, total, images):
            self.seen.append(images)

    quiet = Quiet()
    pipe.generate("A man", seed=1, steps=2, callback=quiet)
    assert quiet.seen == [None, None]


def test_caption_and_ask_stream_and_repeat(pipe, face):
    pieces = []
    cap = pipe.caption(face, seed=1, text_callback=pieces.append)
    assert "".join(pieces) == cap.text and cap.metadata["task"] == "caption"
    assert pipe.caption(face, seed=1).text == cap.text
    assert cap.metadata["question"] == pipe.info.layout.describe_prompt
    assert 1 <= cap.metadata["tokens"] <= pipe.info.recipe.max_new_tokens
    ans = pipe.ask(face, "What colour is the hair?", history=[("Is the person smiling?", "Yes.")], seed=0)
    assert ans.metadata["task"] == "ask" and isinstance(ans.text, str)
    short = pipe.ask(face, "What colour is the hair?", max_new_tokens=2)
    assert short.metadata["tokens"] <= 2


def test_image_input_kinds_agree(pipe, face, tmp_path):
    path = tmp_path / "face.png"
    face.save(path)
    arr = np.asarray(face)
    tensor = torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1
    texts = {pipe.ask(x, "What colour is the hair?", seed=0).text for x in (face, path, str(path), arr, tensor)}
    assert len(texts) == 1
    recons = {pipe.reconstruct(x).tobytes() for x in (face, path, arr, tensor)}
    assert len(recons) == 1


def test_edit_mask_keeps_outside_pixels_exactly(pipe, face):
    mask = np.zeros((face.height, face.width), dtype=np.uint8)
    mask[: face.height // 4] = 255  # top quarter of a 128 px face = top 2 token rows
    out = pipe.edit(face, "A bald man", mask=mask, seed=2, steps=3)
    tokens = out.token_mask.view(8, 8)
    assert tokens[:2].all() and not tokens[2:].any() and out.metadata["edited_tokens"] == 16
    recon = np.asarray(pipe.reconstruct(face))
    edited = np.asarray(out.images[0])
    inside = np.asarray(out.mask) > 0
    assert inside.shape == (64, 64) and inside[:16].all() and not inside[16:].any()
    assert np.array_equal(edited[~inside], recon[~inside])  # pixel-exact outside the footprint
    assert not np.array_equal(edited[inside], recon[inside])
    codes_in = pipe.encode([resize_center_crop(face, 64)])[0]
    assert torch.equal(out.codes[0][~out.token_mask], codes_in[~out.token_mask])  # known tokens kept
    again = pipe.edit(face, "A bald man", mask=mask, seed=2, steps=3)
    assert out.images[0].tobytes() == again.images[0].tobytes()


def test_edit_region_from_landmarks(pipe, face):
    pytest.importorskip("dlib")
    from unif2ace.data.faces import backend_available

    if not backend_available():
        pytest.skip("dlib model files not installed")
    out = pipe.edit(face, "A man with red hair", region="hair", seed=0, steps=2)
    mouth = pipe.edit(face, "A man", region=["mouth"], seed=0, steps=2)
    hair_tokens, mouth_tokens = out.token_mask.view(8, 8), mouth.token_mask.view(8, 8)
    assert hair_tokens[0].any() and not hair_tokens[7:].any()  # hair sits at the top of a centred face
    assert int((hair_tokens & mouth_tokens).sum()) < int(mouth_tokens.sum())
    assert mouth_tokens[4:7].any() and not mouth_tokens[:3].any() and 1 <= int(mouth_tokens.sum()) <= 8
    recon = np.asarray(pipe.reconstruct(face))
    inside = np.asarray(out.mask) > 0
    assert np.array_equal(np.asarray(out.images[0])[~inside], recon[~inside])
    assert np.array_equal(np.asarray(pipe.region_mask(face, "hair")) > 0, inside)


def test_select_device():
    assert select_device("cpu") == (torch.device("cpu"), torch.float32)
    assert select_device("cpu", "bf16")[1] == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        select_device("cpu", "int8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")


def test_caption_batch_equals_singles(pipe):
    faces = example_faces()[:3]
    batch = pipe.caption(faces, seed=0)
    assert isinstance(batch, list) and [o.text for o in batch] == [pipe.caption(f, seed=0).text for f in faces]
    answers = pipe.ask(faces, "What colour is the hair?", seed=0)
    assert [a.text for a in answers] == [pipe.ask(f, "What colour is the hair?", seed=0).text for f in faces]
    assert len({a.text for a in answers}) > 1  # the random model does look at the image
    assert [a.metadata["task"] for a in answers] == ["ask"] * 3
    with pytest.raises(ValueError, match="call once per image"):
        pipe.caption(faces, text_callback=print)
    with pytest.raises(ValueError, match=r"image\[1\]"):
        pipe.caption([faces[0], 42])


def test_bfloat16_pipeline_repeats(tiny_bundle):
    half = Unif2acePipeline.from_pretrained(tiny_bundle, device="cpu", dtype="bfloat16")
    a, b = half.generate("A man", seed=2, steps=2), half.generate("A man", seed=2, steps=2)
    assert a.metadata["dtype"] == "bfloat16" and torch.equal(a.codes, b.codes)
    assert half.caption(example_faces()[0], seed=0, max_new_tokens=4).metadata["tokens"] <= 4


def test_edit_mask_follows_the_centre_crop(pipe, face):
    wide = Image.new("RGB", (160, 128), (200, 200, 200))
    wide.paste(face, (16, 0))  # the face sits in the centre crop
    mask = np.zeros((128, 160), dtype=np.uint8)
    mask[:, :80] = 255  # left half of the photo = left half of the centre crop (x 16..80 of 16..144)
    out = pipe.edit(wide, "A man", mask=mask, seed=0, steps=2)
    tokens = out.token_mask.view(8, 8)
    assert tokens[:, :4].all() and not tokens[:, 4:].any()


def test_truncated_prompts_are_reported(pipe):
    long = "A woman with long blond hair and blue eyes " * 10
    out = pipe.generate(["A man", long], seed=0, steps=1)
    assert out.metadata["truncated_prompts"] == [1]
    budget = pipe.layouts.max_text_len - 2
    exact = pipe.tokenizer.decode(pipe.tokenizer.encode(long)[:budget])
    assert len(pipe.tokenizer.encode(exact)) <= budget
    assert pipe.generate(exact, seed=0, steps=1).metadata["truncated_prompts"] == []
    block = pipe.layouts.prompter.t2i_gen([exact]).input_ids[0, : pipe.layouts.max_text_len + 1].tolist()
    v = pipe.vocab
    assert block[-len(pipe.tokenizer.encode(exact)) - 1 : -1] == pipe.tokenizer.encode(exact)  # kept whole
    assert block[-1] == v.eos_id and block[0] in (v.pad_id, v.special_id("<|t2i|>"))
