"""Registration of the built-in annotators, in default priority order (first wins a merge conflict)."""

from __future__ import annotations

from unif2ace.data.annotation.protocol import register_annotator


def _age_gender():
    from unif2ace.data.annotation.agegender import AgeGenderAnnotator

    return AgeGenderAnnotator()


def _expression():
    from unif2ace.data.annotation.expression import ExpressionAnnotator

    return ExpressionAnnotator()


def _geometry():
    from unif2ace.data.annotation.landmarks import GeometryAnnotator

    return GeometryAnnotator()


def _colour():
    from unif2ace.data.annotation.colour import ColourAnnotator

    return ColourAnnotator()


register_annotator("age-gender", _age_gender)
register_annotator("expression", _expression)
register_annotator("geometry", _geometry)
register_annotator("colour", _colour)
