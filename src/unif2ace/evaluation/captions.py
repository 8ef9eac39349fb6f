"""Caption metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D from ``pycocoevalcap`` (the COCO caption evaluation code).

All four scorers run offline. BLEU, ROUGE-L and CIDEr-D are pure Python; METEOR 1.5 runs the jar shipped inside
the package (paraphrase tables included) and therefore needs a Java runtime: without ``java`` on ``PATH`` METEOR is
skipped with a line in the report, never faked. We do not use ``nltk``'s METEOR (it needs WordNet data that must be
downloaded) nor the COCO PTB tokenizer (also Java, Stanford CoreNLP); texts are tokenised by :func:`tokenize`
(lower case, punctuation removed), which is what the PTB tokenizer does to plain English captions up to
contractions. SPICE is not computed (it downloads Stanford models on first use).

Identical captions score BLEU = METEOR = ROUGE-L = 1 and CIDEr-D = 10 (CIDEr-D's scale factor).
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Mapping, Sequence
from contextlib import redirect_stdout
from io import StringIO
from typing import Any

__all__ = ["caption_metrics", "tokenize"]

_PUNCT = re.compile(r"[^\w\s'-]|(?<!\w)['-]|['-](?!\w)")


def tokenize(text: str) -> str:
    """Lower-case, punctuation removed, single spaces (``"A woman, smiling."`` -> ``"a woman smiling"``)."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def caption_metrics(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], meteor: bool = True
) -> tuple[dict[str, float], list[str]]:
    """Corpus-level caption metrics.

    Args:
        predictions: item id -> generated caption.
        references: item id -> reference captions (one or more).
        meteor: compute METEOR when Java is available.

    Returns:
        ``(scores, skipped)``: scores ``bleu1..bleu4``, ``meteor``, ``rouge_l``, ``cider`` and one line per metric
        that could not be computed and why.

    Raises:
        ValueError: no predictions, or an id without references.
    """
    if not predictions:
        raise ValueError("caption metrics: no predictions to score")
    missing = [k for k in predictions if not references.get(k)]
    if missing:
        raise ValueError(f"caption metrics: no reference caption for {len(missing)} items (e.g. {missing[0]})")
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        return {}, ["BLEU/METEOR/ROUGE-L/CIDEr skipped: pip install pycocoevalcap (or 'unif2ace[eval]')"]
    res = {k: [tokenize(v) or "empty"] for k, v in predictions.items()}
    gts = {k: [tokenize(r) or "empty" for r in references[k]] for k in predictions}
    scores: dict[str, float] = {}
    skipped: list[str] = []
    with redirect_stdout(StringIO()):  # Bleu prints its ratios
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores.update({f"bleu{i + 1}": float(b) for i, b in enumerate(bleu)})
    if meteor:
        value, why = _meteor(gts, res)
        if value is None:
            skipped.append(why)
        else:
            scores["meteor"] = value
    scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    scores["cider"] = float(Cider().compute_score(gts, res)[0])
    return scores, skipped


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float | None, str]:
    """METEOR 1.5 through pycocoevalcap's jar, or ``(None, reason)``."""
    if shutil.which("java") is None:
        return None, "METEOR skipped: no Java runtime on PATH (install a JRE, e.g. apt-get install default-jre)"
    from pycocoevalcap.meteor.meteor import Meteor

    scorer: Any = None
    try:
        scorer = Meteor()
        return float(scorer.compute_score(gts, res)[0]), ""
    except (OSError, ValueError, BrokenPipeError) as err:
        return None, f"METEOR skipped: the METEOR jar failed ({type(err).__name__}: {err})"
    finally:
        if scorer is not None:
            _close_meteor(scorer)


def _close_meteor(scorer: Any) -> None:
    """Stop the METEOR Java process (pycocoevalcap only does it at garbage collection)."""
    proc = getattr(scorer, "meteor_p", None)
    if proc is not None and proc.poll() is None:
        proc.stdin.close()
        proc.kill()
        proc.wait()
    scorer.lock = threading.Lock()  # a failed compute_score leaves its lock held; __del__ would wait on it forever
