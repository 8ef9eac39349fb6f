"""Prompt layouts: truncation, empty prompts, chat labels over several turns, batched chat prompts, masks."""

from __future__ import annotations

import pytest
import torch

from unif2ace.config.model import VocabConfig
from unif2ace.model.masks import decode_mask, mmu_attention_mask
from unif2ace.tokenizer import DESCRIBE_PROMPT, SYSTEM_PROMPT, ByteTokenizer, Prompter, WordLevelTokenizer

IGNORE = -100
B = ByteTokenizer()


def _prompter(max_text_len: int = 8, n: int = 4) -> Prompter:
    return Prompter(B, VocabConfig(llm_vocab_size=257, codebook_size=16, bos_id=256, eos_id=256), max_text_len, n)


def _img(p: Prompter, rows: int, start: int = 0) -> torch.Tensor:
    return (torch.arange(rows * p.n).reshape(rows, p.n) + start) % p.v.codebook_size + p.v.image_offset


def test_t2i_block_truncation_boundary_and_empty_prompt():
    p = _prompter(max_text_len=8)
    t2i, pad, bos = p.v.special_id("<|t2i|>"), p.v.pad_id, 256
    out = p.t2i_gen(["abcdef", "abcdefg", ""])  # block of 9 = t2i bos text eos: 6 chars fit exactly
    assert out.input_ids.shape == (3, 8 + 4 + 3)
    assert out.input_ids[0, :9].tolist() == [t2i, bos, *b"abcdef", bos]
    assert out.input_ids[1, :9].tolist() == [t2i, bos, *b"abcdef", bos]  # first M tokens + eos
    assert out.input_ids[2, :9].tolist() == [pad] * 6 + [t2i, bos, bos]  # the CFG null prompt
    assert (out.input_ids[:, 9] == p.soi).all() and (out.input_ids[:, -1] == p.eoi).all()
    assert (out.input_ids[:, 10:14] == p.v.mask_id).all() and out.image_mask[:, 10:14].all()
    assert int(out.image_mask.sum()) == 12
    assert out.pool_mask[2].tolist() == [False] * 6 + [True] * 3 + [False] * 6  # non-pad block incl. <|t2i|>
    assert out.pool_mask[0, :9].all() and not out.pool_mask[0, 9:].any()
    assert torch.equal(out.valid, out.input_ids != pad) and (out.group_ids == 1).all()


def test_t2i_labels_keep_soi_eoi_and_the_image_targets():
    p = _prompter()
    clean = _img(p, 2)
    masked = clean.clone()
    masked[:, ::2] = p.v.mask_id
    labels = torch.where(masked == p.v.mask_id, clean, torch.full_like(clean, IGNORE))
    out = p.t2i(["hi", "a face"], masked, labels)
    assert out.labels[0, :9].tolist() == [IGNORE] * 4 + out.input_ids[0, 4:9].tolist()  # pads -> -100
    assert torch.equal(out.labels[:, 9:], torch.cat([torch.full((2, 1), p.soi), labels, torch.full((2, 1), p.eoi)], 1))
    assert torch.equal(out.input_ids[:, 10:14], masked)


def test_lm_and_mmu_truncation():
    p = _prompter(max_text_len=6)
    lm = p.lm(["abc", "abcdefgh"], max_len=6)
    assert lm.input_ids.tolist() == [[256, *b"abc", 256, p.v.pad_id], [256, *b"abcde"]]  # long: cut, no eos
    assert lm.labels[0].tolist() == [256, *b"abc", 256, IGNORE] and lm.labels[1].tolist() == lm.input_ids[1].tolist()
    assert not lm.pool_mask.any() and not lm.image_mask.any() and (lm.group_ids == 0).all()
    img = _img(p, 2)
    mmu = p.mmu(img, ["ab", "abcdefgh"])
    assert mmu.input_ids.shape == (2, p.mmu_len)
    assert mmu.input_ids[0, 7:].tolist() == [256, *b"ab", 256, p.v.pad_id, p.v.pad_id]
    assert mmu.input_ids[1, 7:].tolist() == [256, *b"abcd", 256]  # first M - 1 tokens + eos
    assert (mmu.labels[:, :7] == IGNORE).all() and mmu.labels[0, 7:].tolist() == [256, *b"ab", 256, IGNORE, IGNORE]
    assert mmu.pool_mask[:, :7].all() and not mmu.pool_mask[:, 7:].any() and mmu.image_mask[:, 2:6].all()
    assert torch.equal(mmu.attention_mask(), mmu_attention_mask(mmu.input_ids, p.eoi))


def _supervised(batch, row: int) -> list[int]:
    ids, labels = batch.input_ids[row].tolist(), batch.labels[row].tolist()
    return [t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE]


def test_chat_labels_only_on_answers_over_several_turns():
    p = _prompter(max_text_len=120)
    turns = [("Hair?", "long, wavy"), ("Smiling?", "yes"), ("Age?", "about 30")]
    out = p.chat(_img(p, 1), [turns])
    ids, labels = out.input_ids[0].tolist(), out.labels[0].tolist()
    text = [*b"USER: Hair? ASSISTANT:", *b" long, wavy", 256, *b" USER: Smiling? ASSISTANT:", *b" yes", 256]
    text += [*b" USER: Age? ASSISTANT:", *b" about 30", 256]
    head = [p.mmu_id, p.soi, *_img(p, 1)[0].tolist(), p.eoi, 256]
    assert ids == head + text + [p.v.pad_id] * (p.mmu_len - len(head) - len(text))  # right padding
    assert _supervised(out, 0) == [*b" long, wavy", 256, *b" yes", 256, *b" about 30", 256]
    first_answer = len(head) + len(b"USER: Hair? ASSISTANT:")
    assert labels[first_answer - 1] == IGNORE and labels[first_answer] == ord(" ")  # labels start on the answer
    assert out.pool_mask[0].tolist() == [True] * (p.n + 3) + [False] * (p.mmu_len - p.n - 3)
    assert torch.equal(out.attention_mask(), mmu_attention_mask(out.input_ids, p.eoi, per_row=True))
    assert (out.group_ids == 0).all()


def test_chat_truncation_drops_later_turns_then_cuts_the_answer():
    p = _prompter(max_text_len=30)  # text budget after <|mmu|> <|soi|> image <|eoi|>: bos + 29
    out = p.chat(_img(p, 2), [[("Q?", "abcdefgh"), ("Again?", "no")], [("x" * 40, "answer")]])
    row0 = out.input_ids[0].tolist()
    assert b"Again".decode() not in B.decode(row0)  # the second turn does not fit and is dropped whole
    assert _supervised(out, 0) == [*b" abcdefgh", 256]
    row1, sup1 = out.input_ids[1].tolist(), _supervised(out, 1)
    assert row1[-2:] == [*b" a"] and sup1 == [*b" a"]  # question tail kept, two answer tokens
    assert B.decode(row1[p.n + 4 :]).endswith("x ASSISTANT: a") and p.v.pad_id not in row1
    with pytest.raises(ValueError, match=r"turns\[1\] is empty"):
        p.chat(_img(p, 2), [[("a", "b")], []])


def test_chat_rows_match_the_training_layouts():
    from unif2ace.training.layouts import Layouts

    v = VocabConfig()
    lay = Layouts(v, B, max_text_len=40, num_image_tokens=4)
    codes = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    convs = [[("Hair?", "short"), ("Eyes?", "blue")], [("q" * 60, "a long answer")], [("Why?", "z" * 50)]]
    out = lay.prompter.chat(codes + v.image_offset, convs)
    for i, conv in enumerate(convs):
        row = lay.mmu(codes[i], conv)
        assert torch.equal(out.input_ids[i], row.input_ids) and torch.equal(out.labels[i], row.labels)
        assert torch.equal(out.pool_mask[i], row.pool_mask) and torch.equal(out.image_mask[i], row.image_mask)


def test_batched_chat_prompts_are_left_padded_and_match_single_prompts():
    p = _prompter(max_text_len=96)
    img = _img(p, 3, start=5)
    questions, histories = ["Hair?", "What colour are the eyes?", "And now?"], [[], [], [("Age?", "30")]]
    out = p.chat_prompt(img, questions, histories)
    width = out.input_ids.shape[1]
    for i in range(3):
        single = p.chat_prompt(img[i : i + 1], questions[i : i + 1], histories[i : i + 1])
        n = single.input_ids.shape[1]
        assert torch.equal(out.input_ids[i, width - n :], single.input_ids[0])
        assert (out.input_ids[i, : width - n] == p.v.pad_id).all()
        assert torch.equal(out.pool_mask[i, width - n :], single.pool_mask[0])
        assert not out.pool_mask[i, : width - n].any()
        assert torch.equal(out.position_ids()[i, width - n :], torch.arange(n))
        assert B.decode(out.input_ids[i].tolist()).endswith(f"USER: {questions[i]} ASSISTANT:")
    assert int(out.image_mask.sum()) == 3 * p.n and (out.labels == IGNORE).all() and (out.group_ids == 0).all()
    assert torch.equal(out.attention_mask(), decode_mask(out.valid, width, visible_prefix=out.pool_mask))
    assert not out.attention_mask()[1, 0, width - 1, 0]  # a pad key is invisible to real queries
    with pytest.raises(ValueError, match=r"questions\[0\] is empty"):
        p.chat_prompt(img[:2], [" ", "x"])


def test_chat_prompt_is_the_training_row_cut_before_the_answer_with_a_system_prompt():
    p = Prompter(B, VocabConfig(llm_vocab_size=257, codebook_size=16, bos_id=256, eos_id=256), 400, 4)
    img, turns = _img(p, 1), [("Hair?", "red"), ("Smiling?", "no")]
    row = p.chat(img, [turns], system=SYSTEM_PROMPT)
    prompt = p.chat_prompt(img, ["Smiling?"], [turns[:1]], system=SYSTEM_PROMPT).input_ids[0]
    assert torch.equal(row.input_ids[0, : len(prompt)], prompt)
    assert B.decode(prompt.tolist()) == f"{SYSTEM_PROMPT} USER: Hair? ASSISTANT: red USER: Smiling? ASSISTANT:"
    assert _supervised(row, 0) == [*b" red", 256, *b" no", 256]  # the system prompt is never supervised


def test_caption_rows_and_prompts():
    p = _prompter(max_text_len=120)
    img = _img(p, 2)
    captions = ["Short grey hair, blue eyes.", "A smiling young man."]
    out = p.caption(img, captions)
    for i, caption in enumerate(captions):
        assert _supervised(out, i) == [*f" {caption}".encode(), 256]  # only the caption and its eos
        text = B.decode(out.input_ids[i].tolist())
        assert text == f"USER: {DESCRIBE_PROMPT} ASSISTANT: {caption}"
    assert torch.equal(out.input_ids, p.chat(img, [[(DESCRIBE_PROMPT, c)] for c in captions]).input_ids)
    prompt = p.caption_prompt(img, prompt="Describe the hair.")
    assert B.decode(prompt.input_ids[1].tolist()) == "USER: Describe the hair. ASSISTANT:"
    n = prompt.input_ids.shape[1]
    assert torch.equal(p.caption(img, captions, prompt="Describe the hair.").input_ids[:, :n], prompt.input_ids)


def test_cfg_dropout():
    texts = [f"t{i}" for i in range(4000)]
    assert Prompter.cfg_dropout(texts, 0.0) == texts and Prompter.cfg_dropout(texts, 1.0) == [""] * 4000
    a = Prompter.cfg_dropout(texts, 0.1, torch.Generator().manual_seed(3))
    assert a == Prompter.cfg_dropout(texts, 0.1, torch.Generator().manual_seed(3))
    dropped = sum(t == "" for t in a)
    assert 300 < dropped < 500 and all(t in ("", texts[i]) for i, t in enumerate(a))  # 400 +- 5 sigma
    with pytest.raises(ValueError, match="p must be in"):
        Prompter.cfg_dropout(texts, 1.5)


def test_errors_name_the_argument():
    p = _prompter()
    img = _img(p, 2)
    for call in (lambda: p.chat_prompt(img[:, :3], ["a", "b"]), lambda: p.mmu(img[:1], ["a", "b"])):
        with pytest.raises(ValueError, match=r"image_ids must have shape \(2, 4\)"):
            call()
    with pytest.raises(ValueError, match="image_ids holds ids outside the image range.*image_offset"):
        p.mmu(img - p.v.image_offset, ["a", "b"])  # raw VQ codes
    with pytest.raises(ValueError, match="image_labels holds ids outside"):
        p.t2i(["a", "b"], img, torch.zeros_like(img))
    with pytest.raises(ValueError, match="vocab.llm_vocab_size"):
        Prompter(WordLevelTokenizer(300, 256), VocabConfig(llm_vocab_size=280), 8, 4)
    with pytest.raises(ValueError, match="model.vocab.bos_id"):
        Prompter(B, VocabConfig(bos_id=0, eos_id=0), 8, 4)
    with pytest.raises(ValueError, match="max_text_len must be >= 3"):
        Prompter(B, p.v, 2, 4)


def test_prompt_batch_to_and_routing_context():
    p = _prompter()
    out = p.t2i_gen(["a"]).to("cpu")
    ctx = out.routing_context(features={"clip": torch.zeros(1, 2, 3)})
    assert ctx.group_ids is out.group_ids and ctx.pool_mask is out.pool_mask and "clip" in ctx.features
    assert torch.equal(out.position_ids(), torch.arange(out.input_ids.shape[1])[None])
