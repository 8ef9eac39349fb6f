"""Face-attribute annotation (spec §7): taxonomy, pluggable annotators, gold-set evaluation.

Public API: :data:`TAXONOMY`, :class:`Attribute`, :func:`mentions`, :func:`contradictions`, :class:`Annotator`,
:class:`AttributeValue`, :class:`FaceInfo`, :func:`register_annotator`, :func:`build_annotators`,
:func:`annotate_records`.
"""

from unif2ace.data.annotation.protocol import (
    Annotator,
    AttributeValue,
    FaceInfo,
    annotate_records,
    available_annotators,
    build_annotators,
    merge,
    register_annotator,
)
from unif2ace.data.annotation.taxonomy import TAXONOMY, Attribute, contradictions, mentions

__all__ = [
    "TAXONOMY",
    "Annotator",
    "Attribute",
    "AttributeValue",
    "FaceInfo",
    "annotate_records",
    "available_annotators",
    "build_annotators",
    "contradictions",
    "mentions",
    "merge",
    "register_annotator",
]
