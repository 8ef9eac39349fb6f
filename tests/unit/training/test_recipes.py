"""Shipped recipes and launch configs load, validate, and the tiny CPU recipe trains on fabricated data."""

from __future__ import annotations

import dataclasses
from importlib import resources

import pytest
import torch
import yaml
from train_helpers import make_dataset, model_factory

from unif2ace.config.base import ConfigError
from unif2ace.training.run import load_recipe, resolve_config_path, run_training
from unif2ace.utils.io import load_tensors

SHIPPED = sorted(
    p.name.removesuffix(".yaml")
    for p in (resources.files("unif2ace") / "configs").iterdir()
    if p.name.startswith("train_")
)


def test_the_three_recipes_ship():
    assert {"train_tiny_cpu", "train_faces_tiny", "train_showo_finetune"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_recipe_loads(name):
    cfg = load_recipe(name)
    assert cfg.total_steps > 0 and len(cfg.stages) >= 1
    assert cfg.data.max_text_len + cfg.data.num_image_tokens + 3 <= cfg.model.max_position_embeddings


def test_showo_recipe_uses_the_showo_vocabulary():
    cfg = load_recipe("train_showo_finetune")
    assert cfg.model.vocab.vocab_size == 58498 and cfg.model.vocab.mask_id == 58497
    assert cfg.train.loss.alpha == 0.01 and cfg.data.num_image_tokens == 256


def test_overrides_and_unknown_names():
    cfg = load_recipe("train_tiny_cpu", ["train.seed=3", "stages=[{name: a, steps: 2, lr: 0.001}]"])
    assert cfg.train.seed == 3 and cfg.total_steps == 2
    with pytest.raises(FileNotFoundError, match="shipped config: .*train_tiny_cpu"):
        resolve_config_path("train_nope")
    with pytest.raises(ConfigError, match="train.sed"):
        load_recipe("train_tiny_cpu", ["train.sed=3"])


def test_exponent_floats_without_a_dot_are_floats():
    """YAML 1.1 reads ``5e-4`` as a string; float fields accept it, other strings still fail by name."""
    cfg = load_recipe("train_tiny_cpu", ["train.ema_decay=1e-3", "train.max_grad_norm=2E1"])
    assert cfg.train.ema_decay == pytest.approx(1e-3) and cfg.train.max_grad_norm == 20.0
    with pytest.raises(ConfigError, match="train.max_grad_norm': expected float, got 'fast'"):
        load_recipe("train_tiny_cpu", ["train.max_grad_norm=fast"])


def test_accelerate_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    folder = resources.files("unif2ace") / "configs" / "accelerate"
    kinds = {}
    for path in folder.iterdir():
        yaml.safe_load(path.read_text())
        kinds[path.name] = str(load_config_from_file(str(path)).distributed_type).split(".")[-1]
    assert kinds == {
        "cpu.yaml": "NO",
        "gpu.yaml": "NO",
        "ddp_8gpu.yaml": "MULTI_GPU",
        "fsdp_8gpu.yaml": "FSDP",
        "deepspeed_zero2.yaml": "DEEPSPEED",
        "deepspeed_zero3.yaml": "DEEPSPEED",
        "multinode_2x8.yaml": "MULTI_GPU",
    }


def test_tiny_cpu_recipe_trains_two_steps(tmp_path):
    records, tokens = make_dataset(tmp_path, num_tokens=64, codebook=1024)
    cfg = load_recipe(
        "train_tiny_cpu",
        [
            f"data.records={records}",
            f"data.tokens={tokens}",
            "train.progress_bar=false",
            "stages=[{name: a, steps: 1, lr: 0.001, trainable: [new]}, {name: b, steps: 1, lr: 0.001}]",
        ],
    )
    result = run_training(cfg, tmp_path / "run", model_factory=model_factory(), cpu=True)
    assert result.global_step == 2 and len(result.losses) == 2
    from unif2ace.model import load_pretrained

    model = load_pretrained(result.checkpoint)  # checkpoints are model folders too
    saved = load_tensors(result.checkpoint / "model.safetensors")
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_yaml_booleans_in_string_fields_get_a_quoting_hint():
    with pytest.raises(ConfigError, match="train.mixed_precision.*quote the word, e.g. mixed_precision: 'no'"):
        load_recipe("train_tiny_cpu", ["train.mixed_precision=no"])
    assert load_recipe("train_tiny_cpu", ["train.mixed_precision='no'"]).train.mixed_precision == "no"


def test_cpu_precision_is_fp32_unless_bf16_is_asked_for():
    from unif2ace.training.distributed import resolve_precision

    assert [resolve_precision(p, "cpu") for p in ("auto", "no", "fp16", "bf16")] == ["no", "no", "no", "bf16"]
    assert resolve_precision("fp16", "cuda") == "fp16"


def test_bf16_on_cpu_trains_close_to_fp32_with_fp32_weights(tmp_path):
    from accelerate.state import AcceleratorState

    records, tokens = make_dataset(tmp_path, num_tokens=64, codebook=1024)
    losses, dtypes = {}, {}
    for precision in ("auto", "bf16"):
        cfg = load_recipe(
            "train_tiny_cpu",
            [
                f"data.records={records}",
                f"data.tokens={tokens}",
                "train.progress_bar=false",
                f"train.mixed_precision={precision}",
                "stages=[{name: a, steps: 2, lr: 0.001}]",
            ],
        )
        AcceleratorState._reset_state(True)  # one precision per process in accelerate; a test runs two
        try:
            result = run_training(cfg, tmp_path / precision, model_factory=model_factory(), cpu=True)
        finally:
            AcceleratorState._reset_state(True)
        losses[precision] = result.losses
        dtypes[precision] = {v.dtype for v in load_tensors(result.checkpoint / "model.safetensors").values()}
    # same init and batch: the first loss agrees to bf16 rounding, not bit for bit
    assert losses["bf16"][0] == pytest.approx(losses["auto"][0], rel=0.02) and losses["bf16"][0] != losses["auto"][0]
    assert dtypes["bf16"] == dtypes["auto"] and torch.bfloat16 not in dtypes["bf16"]


def test_bpe_tokenizer_is_trained_once_and_shipped_in_checkpoints(tmp_path):
    from train_helpers import tiny_config

    from unif2ace.tokenizer.text import load_text_tokenizer

    records, tokens = make_dataset(tmp_path)
    cfg = tiny_config(
        records,
        tokens,
        **{
            "data.text_tokenizer": "bpe:300",
            "model.vocab": {"llm_vocab_size": 300, "bos_id": 0, "eos_id": 0},
            "stages": [{"name": "m", "steps": 2, "lr": 1e-3}],
        },
    )
    result = run_training(cfg, tmp_path / "run", model_factory=model_factory(), cpu=True, stop_after=1)
    trained = tmp_path / "run" / "tokenizer" / "tokenizer.json"
    stamp = trained.stat().st_mtime_ns
    shipped = load_text_tokenizer(result.checkpoint / "tokenizer")
    caption = "a young woman with long blond hair"
    assert shipped.encode(caption) == load_text_tokenizer(trained).encode(caption)
    assert len(shipped.encode(caption)) < len(caption.encode())  # merges were learned from the captions
    run_training(cfg, tmp_path / "run", model_factory=model_factory(), cpu=True)  # resume: same tokenizer file
    assert trained.stat().st_mtime_ns == stamp


def test_base_chain_merges_mappings_and_replaces_lists(tmp_path):
    from unif2ace.config.base import load_config
    from unif2ace.config.train import Unif2aceConfig

    shipped = resolve_config_path("train_faces_tiny")
    (tmp_path / "mid.yaml").write_text(
        f"base: {shipped}\ntrain: {{seed: 5}}\ndata: {{features: {{clip: c.safetensors}}}}\n"
        "stages:\n  - {name: only, steps: 7, lr: 0.001}\n"
    )
    (tmp_path / "top.yaml").write_text("base: mid.yaml\ntrain: {ema_decay: 0.9}\n")
    cfg = load_config(Unif2aceConfig, tmp_path / "top.yaml")
    full = load_recipe("train_faces_tiny")
    assert cfg.train.seed == 5 and cfg.train.ema_decay == 0.9  # both levels applied
    assert cfg.train.log_every == full.train.log_every and cfg.model == full.model  # the rest from the base
    assert cfg.data.features == {"clip": "c.safetensors", "face": full.data.features["face"]}  # merged key by key
    assert [s.name for s in cfg.stages] == ["only"] and cfg.total_steps == 7  # lists replaced whole


def test_shipped_variants_equal_their_base_but_for_what_they_state():
    base, v2, v3 = (load_recipe(n) for n in ("train_faces_tiny_extend", "train_faces_tiny_v2", "train_faces_tiny_v3"))
    assert v2.model == base.model and v2.train == base.train and v3.train == v2.train
    assert (v2.data.tokens, v3.data.tokens) == ("data/faces/tokens64_2k", "data/faces/tokens64_4k")
    assert (v2.total_steps, v3.total_steps) == (1000, 1500)


def test_v4_moves_the_model_to_the_8k_tokenizer():
    base, v4 = load_recipe("train_faces_tiny"), load_recipe("train_faces_tiny_v4")
    assert v4.model.vocab.codebook_size == 8192 and v4.train.init_new_codebook and not base.train.init_new_codebook
    assert dataclasses.replace(v4.model, vocab=base.model.vocab) == base.model  # only the codebook differs
    assert v4.data.tokens == "data/faces/tokens64_8k" and v4.data.features == base.data.features
    assert v4.stages[0].trainable == ["*embed_tokens.weight", "*lm_head.*"] and v4.stages[1].trainable == []
    scratch = load_recipe("train_faces_tiny_8k")  # the same model and data from nothing: the base's stages, shorter
    assert scratch.model == v4.model and scratch.data == v4.data and scratch.stages[0] == base.stages[0]
    assert dataclasses.replace(scratch.stages[1], steps=base.stages[1].steps) == base.stages[1]
    assert scratch.total_steps == 4000
    extend = load_recipe("train_faces_tiny_8k_extend")  # continues it (--init-from): only the stages differ
    assert (extend.model, extend.data, extend.train) == (scratch.model, scratch.data, scratch.train)
    assert [(s.name, s.steps, s.trainable) for s in extend.stages] == [("extend", 5000, [])]
    assert not scratch.train.init_new_codebook and scratch.train.ema_decay == v4.train.ema_decay


def test_coarse_to_fine_recipes_differ_from_the_8k_model_only_in_the_codes():
    scratch = load_recipe("train_faces_tiny_8k")
    coarse, fine = load_recipe("train_faces_tiny_8k_coarse"), load_recipe("train_faces_tiny_8k_fine")
    assert (coarse.data.code_bits, coarse.model.vocab.codebook_size) == (10, 1024)
    assert dataclasses.replace(coarse.model, vocab=scratch.model.vocab) == scratch.model
    assert dataclasses.replace(coarse.data, code_bits=0) == scratch.data and coarse.stages[0] == scratch.stages[0]
    assert fine.model == scratch.model and fine.data == scratch.data and fine.data.code_bits == 0
    assert fine.train.init_new_codebook and fine.train.init_codebook_from_parent
    assert (coarse.total_steps, fine.total_steps) == (6000, 7000)


def test_base_errors_name_the_file(tmp_path):
    from unif2ace.config.base import load_config
    from unif2ace.config.train import Unif2aceConfig

    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"loops \(a.yaml -> b.yaml -> a.yaml\)"):
        load_config(Unif2aceConfig, tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"missing.yaml \(the base of .*c.yaml\)"):
        load_config(Unif2aceConfig, tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: [x]\n")
    with pytest.raises(ConfigError, match="'base' must be a file name"):
        load_config(Unif2aceConfig, tmp_path / "d.yaml")
