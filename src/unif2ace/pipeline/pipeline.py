"""``Unif2acePipeline``: prompts and images in, faces and text out (STYLE habit 8: engine deals in ids, this in data).

The pipeline turns user inputs into the **training** layouts (:class:`~unif2ace.training.layouts.Layouts`, the
same rows :mod:`unif2ace.training.preview` samples from), runs the KV-cached
:class:`~unif2ace.sampling.engine.Engine`, and turns ids back into images (VQ decoder) and text. CLI, web demo,
server and evaluation all call it.

* ``generate``: MaskGIT + CFG against the empty (or negative) prompt, one generator seeded per call;
* ``caption`` / ``ask``: greedy KV-cached decoding of ``USER: q ASSISTANT:`` after the image tokens;
* ``edit``: the input's tokens outside a region mask are *known* (never resampled); only masked tokens are
  regenerated under the new prompt. The decoded edit is pasted into the tokenizer's reconstruction of the input
  over the masked tokens' pixel footprint, so outside it the result equals that reconstruction pixel for pixel
  (the VQ decoder's receptive field would otherwise let new tokens nudge neighbouring pixels).

Device and dtype are chosen once, in :func:`select_device`: CUDA when available, else CPU; float32 unless asked
(the VQ tokenizer always runs in float32).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from unif2ace.pipeline.bundle import EXPORT_HINT, BundleInfo, default_bundle_dir, read_bundle_info
from unif2ace.pipeline.inputs import check_float, check_int, check_prompts, check_seed, to_pil
from unif2ace.pipeline.outputs import GenerationOutput, TextOutput
from unif2ace.pipeline.regions import check_regions, mask_from_input, region_pixel_mask, token_mask
from unif2ace.pipeline.text_stream import TextStream, check_history
from unif2ace.utils.images import from_tensor, resize_center_crop, to_tensor
from unif2ace.utils.io import file_sha256

__all__ = ["Unif2acePipeline", "select_device"]

log = logging.getLogger(__name__)

MAX_STEPS = 256
MAX_GUIDANCE = 50.0
MAX_IMAGES = 64
BATCH = 8
"""Images sampled together (larger requests run in chunks from the same generator)."""
HASH_LIMIT = 2 << 30
"""Weights files up to this size are hash-checked against ``bundle.json`` on load."""
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}  # fmt: skip


def select_device(
    device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
) -> tuple[torch.device, torch.dtype]:
    """The one place that picks device and dtype: CUDA if available (else CPU) and float32 unless asked.

    Raises:
        ValueError: unknown dtype name, or a CUDA device asked for on a machine without one.
    """
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {dev} asked for but CUDA is not available; use device='cpu'")
    if dtype is None:
        return dev, torch.float32
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(sorted(_DTYPES))}")
        dtype = _DTYPES[dtype]
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype}")
    return dev, dtype


class Unif2acePipeline:
    """Face generation, captioning, VQA and region editing with one UniF²ace bundle.

    Build it with :meth:`from_pretrained`. Public calls are serialised by a lock (safe to share across threads).

    Attributes:
        name: bundle name.
        model_hash: SHA-256 of the bundle's ``model.safetensors``.
        device: where the model runs.
        dtype: model dtype.
        info: the bundle's :class:`~unif2ace.pipeline.bundle.BundleInfo`.
    """

    def __init__(self, model: Any, vq: Any, tokenizer: Any, info: BundleInfo, device: torch.device, dtype: Any):
        from unif2ace.sampling.engine import Engine
        from unif2ace.training.layouts import Layouts

        self.model, self.vq, self.tokenizer, self.info = model, vq, tokenizer, info
        self.device, self.dtype = device, dtype
        self.name, self.model_hash = info.name, info.model_hash
        self.vocab = model.config.vocab
        lay = info.layout
        self.layouts = Layouts(self.vocab, tokenizer, lay.max_text_len, lay.num_image_tokens)
        self.engine = Engine(model, self.vocab)
        self.image_size, self.num_image_tokens = lay.image_size, lay.num_image_tokens
        self.grid = int(round(lay.num_image_tokens**0.5))
        self._lock = threading.RLock()
        self._encoders: dict[str, Any] = {}
        self._analyzer: Any = None
        seq = model.config.seq_moe
        kinds = (set(seq.und_experts) | set(seq.gen_experts)) if seq.enabled else set()
        self.feature_dims = {k: v for k, v in seq.feature_dims.items() if k in kinds}

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, device: str | torch.device | None = None, dtype: Any = None
    ) -> Unif2acePipeline:
        """Load a bundle folder (None = the shipped ``unif2ace/weights/faces-tiny``).

        Raises:
            FileNotFoundError: no bundle there (names the folder and the ``unif2ace export`` command).
            ValueError: corrupt or inconsistent bundle (weights hash, tokenizer size, codebook).
        """
        from unif2ace.model.builder import load_pretrained
        from unif2ace.tokenizer.vq.checkpoint import load_tokenizer
        from unif2ace.training.layouts import load_text_tokenizer

        if path is None:
            path = default_bundle_dir()
            if not (path / "bundle.json").is_file():
                raise FileNotFoundError(f"no shipped model at {path} yet; build it with: {EXPORT_HINT}")
        path = Path(path)
        info = read_bundle_info(path)
        weights = path / "model.safetensors"
        if info.model_hash and weights.stat().st_size <= HASH_LIMIT and file_sha256(weights) != info.model_hash:
            raise ValueError(f"{weights} does not match the hash in bundle.json (corrupt copy?); re-export the bundle")
        dev, dt = select_device(device, dtype)
        model = load_pretrained(path, device="cpu").eval().to(device=dev, dtype=dt)
        vq = load_tokenizer(path / "vq", device=dev)
        if vq.codebook_size != model.config.vocab.codebook_size:
            raise ValueError(
                f"bundle {path}: tokenizer has {vq.codebook_size} codes, model wants {model.config.vocab.codebook_size}"
            )
        tokenizer = load_text_tokenizer(str(path / "tokenizer"), model.config.vocab)
        return cls(model, vq, tokenizer, info, dev, dt)

    # ------------------------------------------------------------------ images <-> codes
    def _square(self, image: Any, what: str = "image") -> Image.Image:
        return resize_center_crop(to_pil(image, what), self.image_size)

    @torch.no_grad()
    def encode(self, images: Sequence[Image.Image]) -> Tensor:
        """``(B, T)`` VQ codes of square RGB images of :attr:`image_size`."""
        pixels = torch.stack([to_tensor(img) for img in images]).to(self.device)  # (B, 3, S, S)
        codes = self.vq.encode(pixels)
        if codes.shape[1] != self.num_image_tokens:
            raise ValueError(f"the tokenizer made {codes.shape[1]} tokens per image, the model expects "
                             f"{self.num_image_tokens}; the bundle's vq/ does not fit its model")  # fmt: skip
        return codes

    @torch.no_grad()
    def decode_pixels(self, codes: Tensor) -> Tensor:
        """``(B, T)`` codes -> ``(B, 3, S, S)`` float images in ``[-1, 1]`` (CPU)."""
        return self.vq.decode(codes.to(self.device).long()).clamp(-1, 1).float().cpu()

    def decode(self, codes: Tensor) -> list[Image.Image]:
        """``(B, T)`` codes -> RGB images."""
        return [from_tensor(p) for p in self.decode_pixels(codes)]

    def reconstruct(self, image: Any) -> Image.Image:
        """The tokenizer's round trip of ``image`` (centre-cropped to :attr:`image_size`): what edits keep."""
        with self._lock:
            return self.decode(self.encode([self._square(image)]))[0]

    # ------------------------------------------------------------------ shared pieces
    def _zero_features(self, batch: int) -> dict[str, Tensor]:
        return {k: torch.zeros(batch, 1, d, device=self.device, dtype=self.dtype) for k, d in self.feature_dims.items()}

    def _image_features(self, pixels: Tensor) -> tuple[dict[str, Tensor], list[str]]:
        """Sequence-MoE features of ``(B, 3, S, S)`` images; zeros (= missing) where the bundle lists none."""
        feats, used = self._zero_features(pixels.shape[0]), []
        for kind in self.feature_dims:
            if not self.info.features.get(kind):
                continue
            encoder = self._encoder(kind)
            if encoder is None:
                continue
            from unif2ace.model.encoders import encode_images

            feats[kind] = encode_images(encoder, pixels.to(self.device)).to(self.dtype)
            used.append(kind)
        return feats, used

    def _encoder(self, kind: str) -> Any:
        if kind not in self._encoders:
            try:
                module = importlib.import_module("unif2ace.encoders")
                self._encoders[kind] = module.load_encoder(kind)
            except (ImportError, AttributeError, FileNotFoundError, ValueError) as err:
                log.warning("no %s encoder (%s); its features are treated as missing", kind, str(err).split("\n")[0])
                self._encoders[kind] = None
        return self._encoders[kind]

    def _recipe(self, steps, guidance_scale, schedule, temperature) -> dict[str, Any]:
        r = self.info.recipe
        out = {
            "steps": check_int(r.steps if steps is None else steps, "steps", 1, MAX_STEPS),
            "guidance_scale": check_float(
                r.guidance_scale if guidance_scale is None else guidance_scale, "guidance_scale", 0.0, MAX_GUIDANCE
            ),
            "schedule": r.schedule if schedule is None else schedule,
            "temperature": check_float(r.temperature if temperature is None else temperature, "temperature", 0, 100),
        }
        from unif2ace.losses.schedules import get_mask_schedule

        try:
            get_mask_schedule(out["schedule"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"unknown schedule {out['schedule']!r}; use cosine, linear or pow2") from None
        return out

    def _meta(self, task: str, **extra: Any) -> dict[str, Any]:
        return {
            "task": task,
            "model": self.name,
            "model_hash": self.model_hash,
            "image_size": self.image_size,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            **extra,
        }

    def _sample(
        self,
        prompts: list[str],
        negative: str,
        recipe: dict[str, Any],
        gen: torch.Generator,
        known: Tensor | None = None,
        callback: Callable[[int, int, Tensor], Any] | None = None,
    ) -> Tensor:
        """``(B, T)`` codes for T2I ``prompts`` (CFG against ``negative``), known codes kept."""
        from unif2ace.sampling.maskgit import MaskGITScheduler

        m = self.layouts.max_text_len
        prompter = self.layouts.prompter
        prefix = prompter.t2i_gen(prompts).input_ids[:, : m + 1].to(self.device)  # (B, M + 1) text blocks
        uncond = prompter.t2i_gen([negative] * len(prompts)).input_ids[:, : m + 1].to(self.device)
        scheduler = MaskGITScheduler(recipe["steps"], schedule=recipe["schedule"], temperature=recipe["temperature"])
        return self.engine.generate_image_tokens(
            prefix,
            self.num_image_tokens,
            uncond_prefix_ids=uncond if recipe["guidance_scale"] > 0 else None,
            steps=recipe["steps"],
            guidance_scale=recipe["guidance_scale"],
            generator=gen,
            known_codes=None if known is None else known.to(self.device),
            scheduler=scheduler,
            features=self._zero_features(len(prompts)),
            callback=callback,
        )

    def _preview(self, ids: Tensor) -> list[Image.Image]:
        """Decoded view of a sampler state: still-masked tokens shown as mid-grey cells."""
        masked = ids == self.vocab.codebook_size  # (B, T)
        pixels = self.decode_pixels(torch.where(masked, 0, ids))  # (B, 3, S, S)
        cell = self.image_size // self.grid
        footprint = masked.view(-1, 1, self.grid, self.grid).repeat_interleave(cell, 2).repeat_interleave(cell, 3)
        return [from_tensor(p) for p in torch.where(footprint.cpu(), torch.zeros_like(pixels), pixels)]

    def _step_callback(self, callback: Callable | None, chunk: int, chunks: int) -> Callable | None:
        """Engine callback -> user ``callback(step, total, images)``; steps count on across chunks, 1-based."""
        if callback is None:
            return None
        wants_images = getattr(callback, "wants_images", True)

        def on_step(step: int, total: int, ids: Tensor) -> None:
            callback(chunk * total + step + 1, chunks * total, self._preview(ids) if wants_images else None)

        return on_step

    # ------------------------------------------------------------------ tasks
    def generate(
        self,
        prompt: str | list[str],
        num_images: int = 1,
        steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | None = None,
        seed: int | None = None,
        schedule: str | None = None,
        temperature: float | None = None,
        callback: Callable[[int, int, list[Image.Image] | None], Any] | None = None,
    ) -> GenerationOutput:
        """Faces for text prompts.

        Args:
            prompt: one prompt or a list (each gives ``num_images`` faces, batched).
            num_images: faces per prompt.
            steps: MaskGIT steps (default: the bundle's recipe).
            guidance_scale: CFG scale ``w`` (0 = no guidance).
            negative_prompt: text to guide away from (default: the empty prompt the model was trained with).
            seed: seed of the call (None = a fresh one, recorded in the output); the same seed repeats exactly.
            schedule: mask schedule (``cosine``, ``linear``, ``pow2``, ...).
            temperature: MaskGIT re-masking temperature.
            callback: ``callback(step, total, images)`` after every step, 1-based; ``images`` previews the current
                tokens (masked ones grey). A callback with attribute ``wants_images = False`` gets None (no decode).

        Returns:
            :class:`GenerationOutput`.

        Raises:
            ValueError: empty / too long prompts, bad numbers or seed (one line naming the argument).
        """
        prompts = check_prompts(prompt)
        num_images = check_int(num_images, "num_images", 1, MAX_IMAGES)
        if len(prompts) * num_images > MAX_IMAGES:
            raise ValueError(f"{len(prompts) * num_images} images asked for; the limit per call is {MAX_IMAGES}")
        negative = "" if negative_prompt is None else check_prompts(negative_prompt, "negative_prompt")[0]
        recipe = self._recipe(steps, guidance_scale, schedule, temperature)
        seed = check_seed(seed)
        expanded = [p for p in prompts for _ in range(num_images)]
        with self._lock:
            gen = torch.Generator(device=self.device).manual_seed(seed)
            starts = range(0, len(expanded), BATCH)
            chunks = [
                self._sample(expanded[s : s + BATCH], negative, recipe, gen, None,
                             self._step_callback(callback, i, len(starts)))
                for i, s in enumerate(starts)
            ]  # fmt: skip
            codes = torch.cat(chunks).cpu()
            images = self.decode(codes)
        meta = self._meta("generate", seed=seed, negative_prompt=negative_prompt, num_images=num_images, **recipe)
        meta["truncated_prompts"] = self._truncated(prompts)
        return GenerationOutput(images, codes, [seed] * len(images), expanded, meta)

    def _truncated(self, prompts: list[str]) -> list[int]:
        """Indices of prompts longer than the text budget (the model sees their first ``max_text_len - 2`` tokens)."""
        budget = self.layouts.max_text_len - 2  # the block is <|t2i|> <bos> text <eos> within max_text_len + 1
        cut = [i for i, p in enumerate(prompts) if len(self.tokenizer.encode(p)) > budget]
        if cut:
            log.warning("%d prompt(s) exceed the model's %d-token text budget and were cut", len(cut), budget)
        return cut

    def edit(
        self,
        image: Any,
        prompt: str,
        region: str | list[str] | None = None,
        mask: Any = None,
        seed: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> GenerationOutput:
        """Regenerate a face region (named, from landmarks, or a user mask) under a new prompt.

        Args:
            image: the face (PIL / path / uint8 array / tensor); centre-cropped to :attr:`image_size`.
            prompt: description of the edited face.
            region: name(s) from :data:`~unif2ace.pipeline.regions.REGIONS` (needs dlib, see ``docs/data.md``).
            mask: a mask image of the input's size (white = regenerate), instead of ``region``.
            seed: seed (None = fresh, recorded).
            steps: MaskGIT steps.
            guidance_scale: CFG scale.

        Returns:
            :class:`GenerationOutput` with one image, its codes, ``token_mask`` and the pixel ``mask``. Pixels
            outside the mask's token footprint equal :meth:`reconstruct` of the input exactly.

        Raises:
            ValueError: neither or both of region / mask, unknown region, no face found, wrong mask size, a mask
                that selects no token, bad prompt or numbers.
        """
        prompts = check_prompts(prompt)
        if len(prompts) != 1:
            raise ValueError("edit takes one prompt (a string)")
        if (region is None) == (mask is None):
            raise ValueError("edit needs exactly one of region= (e.g. 'hair') or mask= (an image of the input's size)")
        regions = check_regions(region) if region is not None else None
        recipe = self._recipe(steps, guidance_scale, None, None)
        seed = check_seed(seed)
        original = to_pil(image)
        square = resize_center_crop(original, self.image_size)
        with self._lock:
            tokens = self._region_tokens(original, regions) if regions else self._mask_tokens(original, mask)
            if not tokens.any():
                raise ValueError("the mask selects no image token; draw a larger region (white = edit)")
            codes_in = self.encode([square])  # (1, T)
            known = torch.where(torch.from_numpy(tokens)[None].to(codes_in.device), self.vocab.codebook_size, codes_in)
            gen = torch.Generator(device=self.device).manual_seed(seed)
            codes = self._sample(prompts, "", recipe, gen, known).cpu()
            pixels = self._paste(codes, codes_in, tokens)
        footprint = self._footprint(tokens)
        mask_img = Image.fromarray((footprint * 255).astype(np.uint8), mode="L")
        meta = self._meta(
            "edit",
            truncated_prompts=self._truncated(prompts),
            seed=seed,
            regions=regions,
            user_mask=mask is not None,
            edited_tokens=int(tokens.sum()),
            **recipe,
        )
        out = GenerationOutput([from_tensor(pixels[0])], codes, [seed], prompts, meta)
        out.token_mask, out.mask = torch.from_numpy(tokens), mask_img
        return out

    def _footprint(self, tokens: np.ndarray) -> np.ndarray:
        cell = self.image_size // self.grid
        return np.kron(tokens.reshape(self.grid, self.grid), np.ones((cell, cell), dtype=bool)).astype(bool)

    def _paste(self, codes: Tensor, codes_in: Tensor, tokens: np.ndarray) -> Tensor:
        """Edited pixels over the masked tokens' footprint, the input's reconstruction elsewhere: ``(1, 3, S, S)``."""
        edited, recon = self.decode_pixels(codes), self.decode_pixels(codes_in)
        inside = torch.from_numpy(self._footprint(tokens))[None, None]  # (1, 1, S, S)
        return torch.where(inside, edited, recon)

    def _region_tokens(self, original: Image.Image, regions: list[str]) -> np.ndarray:
        """Token mask of named regions: landmarks on a >= 256 px copy, regions drawn there, dilated to tokens."""
        work = self.image_size * max(1, -(-256 // self.image_size))  # a multiple of image_size, >= 256
        big = resize_center_crop(original, work)
        if self._analyzer is None:
            from unif2ace.data.faces import FaceAnalyzer

            self._analyzer = FaceAnalyzer(upsample=1)
        faces = self._analyzer.detect(big)
        if not faces:
            raise ValueError("no face found for region editing; use a frontal face photo or pass mask= instead")
        return token_mask(region_pixel_mask(faces[0].landmarks, work, regions), self.grid)

    def _mask_tokens(self, original: Image.Image, mask: Any) -> np.ndarray:
        values = mask_from_input(mask, original.size)  # (H, W) bool at the input's size
        img = Image.fromarray(values.astype(np.uint8) * 255, mode="L")
        square = np.asarray(resize_center_crop(img, self.image_size)) > 127  # same crop as the image
        return token_mask(square, self.grid)

    def region_mask(self, image: Any, region: str | list[str]) -> Image.Image:
        """The pixel footprint (``L`` image, 255 = edited) that :meth:`edit` would regenerate for ``region``."""
        regions = check_regions(region)
        with self._lock:
            tokens = self._region_tokens(to_pil(image), regions)
        return Image.fromarray((self._footprint(tokens) * 255).astype(np.uint8), mode="L")

    def caption(
        self,
        image: Any,
        max_new_tokens: int | None = None,
        seed: int | None = None,
        text_callback: Callable[[str], Any] | None = None,
    ) -> TextOutput | list[TextOutput]:
        """Describe a face (the captioning question the model was trained with).

        Args:
            image: the face (PIL / path / uint8 array / tensor), or a list of faces (decoded as one batch; a list
                of outputs is returned).
            max_new_tokens: length cap (default: the bundle's recipe).
            seed: seed of the call (decoding is greedy; it seeds the noise expert, if routed).
            text_callback: ``fn(piece)`` receives the text as it is decoded.

        Returns:
            :class:`TextOutput` (a list of them for a list of images).
        """
        return self._answer("caption", image, self.info.layout.describe_prompt, [], max_new_tokens, seed, text_callback)

    def ask(
        self,
        image: Any,
        question: str,
        history: list[tuple[str, str]] | None = None,
        max_new_tokens: int | None = None,
        seed: int | None = None,
        text_callback: Callable[[str], Any] | None = None,
    ) -> TextOutput | list[TextOutput]:
        """Answer a question about a face (or each face of a list), optionally after earlier ``(q, a)`` turns.

        Raises:
            ValueError: empty question, malformed history, bad image.
        """
        q = check_prompts(question, "question")
        if len(q) != 1:
            raise ValueError("question must be one string")
        turns = check_history(history)
        return self._answer("ask", image, q[0], turns, max_new_tokens, seed, text_callback)

    def _answer(
        self,
        task: str,
        image: Any,
        question: str,
        history: list[tuple[str, str]],
        max_new_tokens: int | None,
        seed: int | None,
        text_callback: Callable[[str], Any] | None,
    ) -> TextOutput | list[TextOutput]:
        """Decode answers for one image (a :class:`TextOutput`) or a list of images (a list, decoded as a batch)."""
        batched = isinstance(image, (list, tuple))
        images = list(image) if batched else [image]
        if not images or len(images) > MAX_IMAGES:
            raise ValueError(f"give between 1 and {MAX_IMAGES} images, got {len(images)}")
        if batched and text_callback is not None:
            raise ValueError("text_callback streams one answer; call once per image to stream")
        limit = self.model.config.max_position_embeddings
        cap = check_int(self.info.recipe.max_new_tokens if max_new_tokens is None else max_new_tokens,
                        "max_new_tokens", 1, limit)  # fmt: skip
        seed = check_seed(seed)
        squares = [self._square(im, f"image[{i}]" if batched else "image") for i, im in enumerate(images)]
        with self._lock:
            pixels = torch.stack([to_tensor(sq) for sq in squares])  # (B, 3, S, S)
            codes = (self.encode(squares) + self.vocab.image_offset).cpu()
            n = len(squares)
            prompt = self.layouts.prompter.chat_prompt(codes, [question] * n, [history] * n).input_ids.to(self.device)
            if prompt.shape[1] >= limit:
                raise ValueError(
                    f"the question and history take {prompt.shape[1]} tokens; the model reads at most {limit - 1}"
                )
            feats, used = self._image_features(pixels)
            stream = TextStream(self.layouts, text_callback)
            gen = torch.Generator(device=self.device).manual_seed(seed)
            out = self.engine.generate_text(
                prompt,
                max_new_tokens=min(cap, limit - prompt.shape[1]),
                features=feats,
                generator=gen,
                on_token=stream.push if text_callback else None,
            )
            results = []
            for row in range(n):
                ids = out.ids[row, : int(out.lengths[row])].tolist()
                text = self.layouts.decode(ids).strip()
                meta = self._meta(task, question=question, seed=seed, tokens=len(ids), features=used,
                                  finished=bool(out.finished[row]))  # fmt: skip
                results.append(TextOutput(text, meta))
            stream.finish(results[0].text)
        return results if batched else results[0]
