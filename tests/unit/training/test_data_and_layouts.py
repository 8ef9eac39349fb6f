"""Dataset order, token joining, Show-o layouts / omni-attention masks and mixed-batch construction."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from train_helpers import make_dataset, tiny_config

from unif2ace.config.model import VocabConfig
from unif2ace.data.dataset import (
    EpochOrder,
    TokenRecordDataset,
    TokenStore,
    balance_repeats,
    load_records,
    sample_seed,
)
from unif2ace.losses.corruption import IGNORE_INDEX
from unif2ace.tokenizer.text import ByteTokenizer
from unif2ace.training.batching import batch_loader
from unif2ace.training.layouts import Layouts
from unif2ace.training.run import build_batch_builder
from unif2ace.training.stages import plan_stages


def test_epoch_order_is_a_permutation_per_epoch_and_deterministic():
    order = EpochOrder(7, seed=3, stream="t2i")
    first = order.indices(0, 7)
    assert sorted(first) == list(range(7))
    assert sorted(order.indices(7, 7)) == list(range(7))
    assert first != order.indices(7, 7)  # a new permutation per epoch (fixed seed: known to differ)
    assert EpochOrder(7, seed=3, stream="t2i").indices(0, 14) == order.indices(0, 14)
    assert EpochOrder(7, seed=3, stream="mmu").indices(0, 7) != first
    assert sample_seed(1, "t2i", 5) == sample_seed(1, "t2i", 5) != sample_seed(1, "t2i", 6)


def test_repeats_visit_each_item_that_often_per_epoch_and_none_keeps_the_plain_order():
    plain = EpochOrder(5, seed=3, stream="t2i")
    assert EpochOrder(5, seed=3, stream="t2i", repeats=[1] * 5).indices(0, 10) == plain.indices(0, 10)
    order = EpochOrder(5, seed=3, stream="t2i", repeats=[1, 3, 1, 2, 1])
    assert order.size == 8
    for epoch in range(3):
        seen = order.indices(8 * epoch, 8)
        assert [seen.count(i) for i in range(5)] == [1, 3, 1, 2, 1]
    assert order.indices(0, 16) == EpochOrder(5, seed=3, stream="t2i", repeats=[1, 3, 1, 2, 1]).indices(0, 16)
    with pytest.raises(ValueError, match="repeats"):
        EpochOrder(3, seed=0, stream="t2i", repeats=[1, 0, 1])


def test_balance_repeats_evens_out_attribute_values():
    def rec(**attrs):
        return {"attributes": {k: {"value": v, "confidence": 1.0} for k, v in attrs.items()}}

    records = [rec(smile=True)] * 6 + [rec(smile=False)] * 2 + [rec(smile=True, eyeglasses=True)] + [rec()]
    records += [rec(smile=True, eyeglasses=False)] * 4
    # smile: 11 True vs 2 False -> factor 5.5, clipped to 4; eyeglasses: 4 False vs 1 True -> 4
    assert balance_repeats(records, ["smile"], max_repeat=4) == [1] * 6 + [4, 4] + [1, 1] + [1] * 4
    assert balance_repeats(records, ["smile"], max_repeat=10) == [1] * 6 + [6, 6] + [1, 1] + [1] * 4  # round(5.5)
    assert balance_repeats(records, ["smile", "eyeglasses"], 4)[8] == 4  # the largest factor over attributes
    with pytest.raises(ValueError, match="no record has attribute 'hat'; the records have eyeglasses, smile"):
        balance_repeats(records, ["hat"], 4)  # a misspelt or absent name is an error, not a silent no-op
    counts = balance_repeats(records, ["smile"], 100)
    kept = {
        v: sum(c for c, r in zip(counts, records, strict=True) if r["attributes"].get("smile", {}).get("value") is v)
        for v in (True, False)
    }
    assert abs(kept[True] - kept[False]) <= 1  # unclipped: both values drawn about equally often


def test_token_store_joins_records_by_image_path(tmp_path):
    records_file, tokens = make_dataset(tmp_path, num_images=7, shard_size=3)
    store = TokenStore(tokens)
    assert len(store) == 7 and store.num_tokens == 16
    ds = TokenRecordDataset(load_records(records_file), store, 16, records_file=records_file)
    assert len(ds) == 7
    sample = ds[4]
    assert sample.id == "img004" and sample.codes.shape == (16,)
    with pytest.raises(ValueError, match="num_image_tokens=8"):
        TokenRecordDataset(load_records(records_file), store, 8, records_file=records_file)
    with pytest.raises(ValueError, match="no record has image tokens"):
        TokenRecordDataset(load_records(records_file), store, 16, records_file=tmp_path / "elsewhere" / "r.jsonl")
    with pytest.raises(FileNotFoundError, match="data.tokens"):
        TokenStore(tmp_path / "missing")


def test_load_records_errors_name_the_line(tmp_path):
    bad = tmp_path / "r.jsonl"
    bad.write_text('{"id": "a", "image": "a.png", "caption": "x"}\n{oops\n')
    with pytest.raises(ValueError, match=r"data.records: r.jsonl line 2"):
        load_records(bad)
    bad.write_text('{"id": "a", "image": "a.png", "caption": "x", "split": "dev"}\n')
    with pytest.raises(ValueError, match=r"field 'split'"):
        load_records(bad)
    ok = tmp_path / "ok.jsonl"
    ok.write_text('{"id": "a", "image": "a.png", "caption": "x"}\n{"id": "b", "image": "b.png", "caption": ""}\n')
    assert [r["id"] for r in load_records(ok, "train")] == ["a"]  # uncaptioned records are left out
    with pytest.raises(FileNotFoundError, match="data.records"):
        load_records(tmp_path / "nope.jsonl")


def _reference_mask(ids: list[int], is_t2i: bool, v: VocabConfig) -> torch.Tensor:
    """Loop form of Show-o's masks, True = attend: predict-next with rm_pad_in_image (T2I), MMU (eoi visible)."""
    n = len(ids)
    pad, soi, eoi = v.pad_id, v.special_id("<|soi|>"), v.special_id("<|eoi|>")
    m = torch.zeros(n, n, dtype=torch.bool)
    eoi_pos = ids.index(eoi)
    pads = [i for i, t in enumerate(ids) if t == pad]
    last_pad = max(pads) if pads else -1
    for q in range(n):
        for k in range(n):
            if not is_t2i:
                m[q, k] = k <= q or k <= eoi_pos
            elif ids.index(soi) <= q <= eoi_pos:  # image segment row: every non-pad key
                m[q, k] = ids[k] != pad
            else:  # text row: causal; rows after the pad block skip the pad block
                m[q, k] = k <= q and not (q > last_pad and k <= last_pad)
    return m


def test_layouts_match_showo_format_and_reference_masks():
    v = VocabConfig()
    lay = Layouts(v, ByteTokenizer(), max_text_len=32, num_image_tokens=4)
    codes = torch.tensor([0, 5, 63, 7])
    t2i = lay.t2i("hi", codes)
    ids = t2i.input_ids.tolist()
    assert len(ids) == lay.seq_len == 32 + 4 + 3
    assert ids[:28] == [v.pad_id] * 28 and ids[28] == v.special_id("<|t2i|>")
    assert ids[29:33] == [v.bos_id, ord("h"), ord("i"), v.eos_id]
    assert ids[33] == v.special_id("<|soi|>") and ids[-1] == v.special_id("<|eoi|>")
    assert ids[34:38] == (codes + v.image_offset).tolist()
    assert t2i.image_mask.nonzero().flatten().tolist() == [34, 35, 36, 37]
    assert (t2i.labels == IGNORE_INDEX).all()
    mmu = lay.mmu(codes, [("q?", "yes")])
    mids, labels = mmu.input_ids.tolist(), mmu.labels.tolist()
    supervised = [t for t, lab in zip(mids, labels, strict=True) if lab != IGNORE_INDEX]
    assert supervised == [*b" yes", v.eos_id]  # only the answer and its eos
    assert mids[0] == v.special_id("<|mmu|>") and mids[-1] == v.pad_id
    batch_ids = torch.stack([t2i.input_ids, mmu.input_ids])
    masks = lay.attention_mask(batch_ids, torch.stack([t2i.image_mask, mmu.image_mask]), num_t2i=1)
    assert masks.shape == (2, 1, lay.seq_len, lay.seq_len)
    assert torch.equal(masks[0, 0], _reference_mask(ids, True, v))
    assert torch.equal(masks[1, 0], _reference_mask(mids, False, v))


def test_mmu_training_rows_match_the_inference_chat_prompt():
    v = VocabConfig()
    lay = Layouts(v, ByteTokenizer(), max_text_len=96, num_image_tokens=4)
    codes = torch.tensor([1, 2, 3, 4])
    turns = [("What hair?", "long blond"), ("Smiling?", "yes")]
    row = lay.mmu(codes, turns)
    prompt = lay.prompter.chat_prompt((codes + v.image_offset)[None], ["Smiling?"], histories=[turns[:1]])
    n = prompt.input_ids.shape[1]
    assert torch.equal(row.input_ids[:n], prompt.input_ids[0])  # the answer follows exactly where inference decodes
    assert lay.decode([t for t, lab in zip(row.input_ids.tolist(), row.labels.tolist(), strict=True) if lab >= 0]) == (
        " long blond yes"
    )
    assert torch.equal(row.pool_mask[:n], prompt.pool_mask[0]) and torch.equal(row.image_mask[:n], prompt.image_mask[0])


def test_t2i_rows_come_from_the_prompter():
    v = VocabConfig()
    lay = Layouts(v, ByteTokenizer(), max_text_len=16, num_image_tokens=4)
    codes = torch.tensor([9, 8, 7, 6])
    row = lay.t2i("a face", codes)
    ref = lay.prompter.t2i(["a face"], (codes + v.image_offset)[None])
    assert torch.equal(row.input_ids, ref.input_ids[0]) and torch.equal(row.pool_mask, ref.pool_mask[0])
    empty = lay.t2i("", codes).input_ids.tolist()
    assert empty[16 - 2 : 16 + 1] == [v.special_id("<|t2i|>"), v.bos_id, v.eos_id]  # the CFG null prompt


def test_tokenizer_must_fit_the_vocabulary(tmp_path):
    from unif2ace.tokenizer.text import BPETokenizer
    from unif2ace.training.layouts import load_text_tokenizer

    tok = BPETokenizer.train(["a smiling woman with long hair"] * 20, vocab_size=300)
    path = tok.save(tmp_path / "bpe")
    with pytest.raises(ValueError, match="model.vocab.bos_id"):
        load_text_tokenizer(str(path), VocabConfig())
    with pytest.raises(FileNotFoundError, match="data.text_tokenizer"):
        load_text_tokenizer(str(tmp_path / "missing.json"), VocabConfig())
    ok = load_text_tokenizer(str(path), VocabConfig(llm_vocab_size=len(tok), bos_id=0, eos_id=0))
    assert ok.bos_id == 0


def test_mmu_truncates_to_the_text_budget():
    lay = Layouts(VocabConfig(), ByteTokenizer(), max_text_len=10, num_image_tokens=4)
    row = lay.mmu(torch.zeros(4, dtype=torch.long), [("a long question here", "a long answer"), ("q2", "a2")])
    assert row.input_ids.shape == (lay.seq_len,)
    assert (row.labels != IGNORE_INDEX).sum() >= 1


def test_batches_are_independent_of_the_process_split(tmp_path):
    records, tokens = make_dataset(tmp_path)
    cfg = tiny_config(records, tokens, **{"data.t2i_per_batch": 4, "data.mmu_per_batch": 4})
    builder = build_batch_builder(cfg)
    plan = plan_stages(cfg, world_size=2)[0]
    whole = next(iter(batch_loader(builder, plan, {"t2i": 3, "mmu": 5}, 1, SimpleNamespace(rank=0, world_size=1))))
    parts = [
        next(iter(batch_loader(builder, plan, {"t2i": 3, "mmu": 5}, 1, SimpleNamespace(rank=r, world_size=2))))
        for r in range(2)
    ]
    assert whole.num_t2i == 4 and whole.input_ids.shape[0] == 8
    t2i = torch.cat([p.input_ids[: p.num_t2i] for p in parts])
    mmu = torch.cat([p.input_ids[p.num_t2i :] for p in parts])
    assert torch.equal(torch.cat([t2i, mmu]), whole.input_ids)
    assert torch.equal(torch.cat([p.image_masked for p in parts]), whole.image_masked)
    mask_id = cfg.model.vocab.mask_id
    masked_ids = whole.input_ids[:4].gather(1, whole.image_positions)
    assert torch.equal(masked_ids == mask_id, whole.image_masked)
    assert torch.equal(whole.group_ids, torch.tensor([1, 1, 1, 1, 0, 0, 0, 0]))
    assert whole.image_masked.sum(1).ge(1).all()


def test_cfg_dropout_rate_follows_the_config(tmp_path):
    records, tokens = make_dataset(tmp_path)
    cfg = tiny_config(
        records, tokens, **{"data.cond_dropout_prob": 0.5, "data.t2i_per_batch": 200, "data.mmu_per_batch": 0}
    )
    builder = build_batch_builder(cfg)
    batch = builder.build(0, 0, 200, 0)
    empty = batch.valid[:, : cfg.data.max_text_len + 1].sum(1) == 3  # <|t2i|> <bos> <eos>
    assert 0.35 < empty.float().mean().item() < 0.65


def test_t2i_rows_get_no_features_of_the_face_they_must_generate(tmp_path):
    from unif2ace.model.encoders import FeatureCache

    records, tokens = make_dataset(tmp_path)
    cfg = tiny_config(
        records,
        tokens,
        **{
            "model.seq_moe": {"enabled": True, "feature_dims": {"clip": 4, "face": 4}},
            "data.features": {"face": str(tmp_path / "face.safetensors")},
            "data.t2i_per_batch": 3,
            "data.mmu_per_batch": 3,
        },
    )
    FeatureCache("face", {f"img{i:03d}": torch.full((1, 4), i + 1.0) for i in range(12)}).save(
        tmp_path / "face.safetensors"
    )
    batch = build_batch_builder(cfg).build(0, 0, 3, 3)
    feats = batch.features["face"]
    assert feats.shape[0] == 6
    assert feats[:3].abs().sum() == 0  # generation rows: the target face is not an input
    assert (feats[3:].abs().sum((1, 2)) > 0).all()  # understanding rows: features of their own face


def test_t2i_balance_draws_faces_with_rare_attribute_values_more_often(tmp_path):
    import json

    from unif2ace.config.base import ConfigError

    records, tokens = make_dataset(tmp_path)
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    for i, r in enumerate(rows):  # 9 smiling, 3 not
        r["attributes"] = {"smile": {"value": i % 4 != 0, "confidence": 1.0}}
    records.write_text("".join(json.dumps(r) + "\n" for r in rows))
    builder = build_batch_builder(tiny_config(records, tokens, **{"data.t2i_balance": ["smile"]}))
    order = builder.orders["t2i"]
    assert order.size == 18 and builder.orders["mmu"].size == 12  # MMU keeps the plain order
    epoch = [builder.dataset.records[i]["attributes"]["smile"]["value"] for i in order.indices(0, 18)]
    assert epoch.count(False) == epoch.count(True) == 9
    with pytest.raises(ConfigError, match="t2i_balance_max_repeat"):
        tiny_config(records, tokens, **{"data.t2i_balance_max_repeat": 0})
