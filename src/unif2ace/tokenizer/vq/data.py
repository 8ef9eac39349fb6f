"""Image sources and deterministic, resumable batching for tokenizer training.

A batch is a pure function of ``(seed, step)``: epoch ``e`` visits the training images in the permutation drawn from
a generator seeded with ``(seed, e)``, and the horizontal flips of step ``s`` come from a generator seeded with
``(seed, s)``. Resuming at step ``s`` therefore reproduces the exact batches of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from unif2ace.utils.images import IMAGE_EXTENSIONS, list_images, load_image

logger = logging.getLogger(__name__)

#: Record fields tried, in order, for the image path of a ``.jsonl`` record.
RECORD_IMAGE_KEYS = ("image", "image_path", "path", "file")


def _records_paths(path: Path) -> list[Path]:
    paths = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{line_no}: not valid JSON") from None
        key = next((k for k in RECORD_IMAGE_KEYS if isinstance(record, dict) and record.get(k)), None)
        if key is None:
            raise ValueError(f"{path}:{line_no}: record has none of the image fields {RECORD_IMAGE_KEYS}")
        image = Path(record[key])
        paths.append(image if image.is_absolute() else path.parent / image)
    return paths


def collect_image_paths(sources: Iterable[str | Path]) -> list[Path]:
    """Expand sources into image paths: folders (recursive), ``.txt`` path lists, ``.jsonl`` records, image files.

    Relative paths inside list/record files are resolved against that file's folder. Duplicates are dropped, order
    is kept.

    Raises:
        FileNotFoundError: a source does not exist.
        ValueError: a source of unknown kind or a malformed record (message names file and line).
    """
    out: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            out.extend(list_images(path))
        elif not path.exists():
            raise FileNotFoundError(f"image source not found: {path}")
        elif path.suffix == ".jsonl":
            out.extend(_records_paths(path))
        elif path.suffix == ".txt":
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            out.extend(Path(ln) if Path(ln).is_absolute() else path.parent / ln for ln in lines)
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            out.append(path)
        else:
            raise ValueError(f"unsupported image source {path}: use a folder, a .txt list, a .jsonl file or an image")
    return list(dict.fromkeys(out))


class ImageBatcher:
    """Square RGB training batches from a list of image paths, resumable by step.

    Args:
        paths: image files.
        image_size: square output size.
        seed: data-order seed.
        hflip: random horizontal flips.
        cache: keep decoded uint8 images in memory.
    """

    def __init__(self, paths: list[Path], image_size: int, seed: int, hflip: bool = True, cache: bool = True) -> None:
        if not paths:
            raise ValueError("no training images: point data.sources at a folder, .txt list or .jsonl records")
        self.paths = list(paths)
        self.image_size = image_size
        self.seed = seed
        self.hflip = hflip
        self._cache: dict[int, np.ndarray] | None = {} if cache else None
        self.bad: dict[str, str] = {}
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray | None:
        """``(H, W, 3)`` uint8 array of image ``index``, or ``None`` if the file is unusable (reported once)."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        path = self.paths[index]
        if str(path) in self.bad:
            return None
        try:
            arr = np.asarray(load_image(path, self.image_size), dtype=np.uint8)
        except (ValueError, FileNotFoundError) as err:
            self.bad[str(path)] = str(err)
            logger.warning("skipping training image: %s", err)
            return None
        if self._cache is not None:
            self._cache[index] = arr
        return arr

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(len(self.paths), generator=gen), epoch
        return self._perm

    def indices_for_step(self, step: int, batch_size: int) -> list[int]:
        """Dataset positions visited by ``step`` (walks through epoch permutations)."""
        n = len(self.paths)
        start = step * batch_size
        return [int(self._order((start + i) // n)[(start + i) % n]) for i in range(batch_size)]

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        """``(B, 3, S, S)`` float32 in ``[-1, 1]`` for ``step``; unusable files are replaced by the next usable ones.

        Raises:
            ValueError: none of the images can be read.
        """
        arrays, offset = [], 0
        for index in self.indices_for_step(step, batch_size):
            arr = self.load(index)
            while arr is None:
                if len(self.bad) >= len(self.paths):
                    raise ValueError(f"none of the {len(self.paths)} training images could be read")
                offset += 1
                arr = self.load((index + offset) % len(self.paths))
            arrays.append(arr)
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # (B, 3, S, S)
        if self.hflip:
            gen = torch.Generator().manual_seed(self.seed * 7_919 + step)
            flip = torch.rand(batch_size, generator=gen) < 0.5
            images[flip] = images[flip].flip(-1)
        return images
