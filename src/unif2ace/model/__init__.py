"""The UniF²ace network: transformer, attention + KV cache, grouped MoEs, presets (no losses/samplers here)."""

from unif2ace.model.builder import build_model, load_model_config, load_pretrained, save_pretrained
from unif2ace.model.interfaces import MixerOutput, RoutingContext
from unif2ace.model.kv_cache import KVCache
from unif2ace.model.presets import get_preset, list_presets
from unif2ace.model.transformer import TransformerOutput, Unif2aceTransformer

__all__ = [
    "KVCache",
    "MixerOutput",
    "RoutingContext",
    "TransformerOutput",
    "Unif2aceTransformer",
    "build_model",
    "get_preset",
    "list_presets",
    "load_model_config",
    "load_pretrained",
    "save_pretrained",
]
