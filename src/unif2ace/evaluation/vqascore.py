"""VQAScore adapter (spec §8.1; Lin et al. 2024, ``t2v_metrics``) for a local vision-language model directory.

VQAScore(image, prompt) = P("Yes" | image, 'Does this figure show "{prompt}"? Please answer yes or no.'), the
probability of the answer's first token under the full-vocabulary softmax. The paper's -CF5 / -LV numbers use
CLIP-FlanT5-XXL and LLaVA-1.5-13B through ``t2v_metrics``; here any Hugging Face ``transformers`` image-text-to-text
model saved in a local folder (LLaVA-1.5, Qwen2-VL, ...) can be pointed at with ``--vqascore-model DIR`` or
``UNIF2ACE_VQASCORE_MODEL``; nothing is downloaded (``local_files_only``). Scores from a different judge model are
not comparable with the paper's columns; the report names the model folder.

Not exercised by the test suite against a real VLM (none fits the CI budget); the missing-backend path is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

__all__ = ["QUESTION", "VQAScorer", "vqascorer_from_config"]

QUESTION = 'Does this figure show "{prompt}"? Please answer yes or no.'


class VQAScorer:
    """P("Yes") of a local ``transformers`` VLM.

    Args:
        model_dir: folder with the model and its processor.
        device: where it runs.

    Raises:
        FileNotFoundError: the folder or ``transformers`` is missing.
    """

    def __init__(self, model_dir: str | Path, device: str = "cpu") -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"VQAScore model folder {model_dir} has no config.json")
        try:
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError:
            raise FileNotFoundError("VQAScore needs transformers: pip install 'transformers>=4.45'") from None
        self.name = model_dir.name
        self.device = torch.device(device)
        self.processor: Any = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
        self.model: Any = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True)
        self.model.eval().to(self.device)
        tok = self.processor.tokenizer
        self.yes_ids = sorted({tok.encode(w, add_special_tokens=False)[0] for w in ("Yes", " Yes")})

    @torch.inference_mode()
    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list[float]:
        """VQAScore of each (image, prompt) pair, in ``[0, 1]``."""
        out = []
        for image, prompt in zip(images, prompts, strict=True):
            messages = [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": QUESTION.format(prompt=prompt)}],
                }
            ]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
            inputs = self.processor(images=image.convert("RGB"), text=text, return_tensors="pt").to(self.device)
            logits = self.model(**inputs).logits[0, -1].float()  # (V,) next-token logits
            probs = torch.softmax(logits, dim=-1)
            out.append(float(probs[self.yes_ids].max()))
        return out


def vqascorer_from_config(model_dir: str | Path | None, device: str = "cpu") -> tuple[VQAScorer | None, str]:
    """The configured scorer (argument, else ``UNIF2ACE_VQASCORE_MODEL``) or ``(None, reason)``."""
    model_dir = model_dir or os.environ.get("UNIF2ACE_VQASCORE_MODEL")
    if not model_dir:
        return None, "VQAScore skipped: no local VQA model (pass --vqascore-model DIR or set UNIF2ACE_VQASCORE_MODEL)"
    try:
        return VQAScorer(model_dir, device), ""
    except (FileNotFoundError, OSError, ValueError) as err:
        return None, f"VQAScore skipped: {err}"
