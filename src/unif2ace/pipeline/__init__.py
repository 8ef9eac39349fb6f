"""Inference pipeline: ``Unif2acePipeline`` (generate / caption / ask / edit), model bundles and their export."""

from unif2ace.pipeline.bundle import BundleInfo, LayoutInfo, RecipeInfo, default_bundle_dir, export_bundle
from unif2ace.pipeline.outputs import GenerationOutput, TextOutput
from unif2ace.pipeline.pipeline import Unif2acePipeline, select_device
from unif2ace.pipeline.random_bundle import create_random_bundle
from unif2ace.pipeline.regions import REGIONS

__all__ = [
    "REGIONS",
    "BundleInfo",
    "GenerationOutput",
    "LayoutInfo",
    "RecipeInfo",
    "TextOutput",
    "Unif2acePipeline",
    "create_random_bundle",
    "default_bundle_dir",
    "export_bundle",
    "select_device",
]
