"""Training dataset: face records joined with pre-computed image tokens, read in a deterministic, resumable order.

Images are tokenised once by ``unif2ace vq encode`` (token shards); training reads only those artifacts (STYLE
habit 10). The order of each sample stream is a pure function of ``(seed, stream, position)``: position ``p``
maps to epoch ``p // n`` and to slot ``p % n`` of that epoch's permutation, which is drawn from a generator seeded
by ``(seed, stream, epoch)``. Resuming therefore needs only the stream positions, and the global order does not
depend on the number of processes (each process takes its slice of every global micro-batch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unif2ace.utils.io import load_tensors

__all__ = [
    "EpochOrder",
    "FaceSample",
    "TokenRecordDataset",
    "TokenStore",
    "attribute_position_weights",
    "balance_repeats",
    "load_records",
    "resolve_image_path",
    "sample_seed",
]

#: Stable small integers for stream names (part of every derived seed; never reorder).
_STREAM_IDS = {"t2i": 1, "mmu": 2, "noise": 3, "preview": 4}


def sample_seed(seed: int, stream: str, *keys: int) -> int:
    """A 63-bit seed derived from ``(seed, stream, *keys)`` by NumPy's SeedSequence hashing.

    Used for per-sample corruption / dropout draws so that they depend only on the sample's global position.
    """
    entropy = [int(seed) % (2**63), _STREAM_IDS.get(stream, 0), *(int(k) for k in keys)]
    words = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


class EpochOrder:
    """Global sample order of one stream: an epoch-seeded permutation indexed by a position counter.

    Args:
        size: number of items in the stream (> 0).
        seed: base seed of the run.
        stream: stream name (``"t2i"`` / ``"mmu"``).
        shuffle: False keeps the natural order (epoch after epoch).
        repeats: optional per-item counts (length ``size``, each >= 1): an epoch then visits item ``i``
            ``repeats[i]`` times (see :func:`balance_repeats`); None visits each item once.
    """

    def __init__(
        self, size: int, seed: int, stream: str, shuffle: bool = True, repeats: Sequence[int] | None = None
    ) -> None:
        if size <= 0:
            raise ValueError(f"the {stream} stream has no items; check data.records, data.split and data.tokens")
        if repeats is not None and (len(repeats) != size or min(repeats) < 1):
            raise ValueError(f"the {stream} stream's repeats must be {size} counts >= 1")
        self.items = torch.arange(size) if repeats is None else torch.repeat_interleave(
            torch.arange(size), torch.as_tensor(list(repeats))
        )  # fmt: skip
        self.size, self.seed, self.stream, self.shuffle = len(self.items), seed, stream, shuffle
        self._cache: tuple[int, Tensor] | None = None

    def _perm(self, epoch: int) -> Tensor:
        if self._cache is None or self._cache[0] != epoch:
            gen = torch.Generator().manual_seed(sample_seed(self.seed, self.stream, epoch, 0xE))
            perm = torch.randperm(self.size, generator=gen) if self.shuffle else torch.arange(self.size)
            self._cache = (epoch, self.items[perm])
        return self._cache[1]

    def index(self, position: int) -> int:
        """Item index at global ``position`` (>= 0)."""
        epoch, slot = divmod(int(position), self.size)
        return int(self._perm(epoch)[slot])

    def indices(self, start: int, count: int) -> list[int]:
        """Items at positions ``start .. start + count - 1``."""
        return [self.index(p) for p in range(start, start + count)]


def _attribute_values(records: Sequence[dict[str, Any]], name: str) -> list[str | None]:
    """``attributes.<name>.value`` of each record as a string, None where the record lacks it."""
    attrs = [(r.get("attributes") or {}).get(name) for r in records]
    return [None if not isinstance(a, dict) or a.get("value") is None else str(a["value"]) for a in attrs]


def _known_attributes(records: Sequence[dict[str, Any]]) -> str:
    """'the records have a, b, c' (for error messages naming a missing attribute)."""
    known = sorted({k for r in records for k in (r.get("attributes") or {})})
    return f"the records have {', '.join(known) or 'none'}"


def balance_repeats(records: Sequence[dict[str, Any]], attributes: Sequence[str], max_repeat: int) -> list[int]:
    """Per-record visit counts that even out the values of ``attributes`` in a sample stream.

    For each attribute, a record whose value occurs ``c`` times (among the records that have the attribute) gets
    the factor ``c_max / c``, with ``c_max`` the count of the attribute's most common value; its count is the
    largest factor over ``attributes``, rounded, clipped to ``[1, max_repeat]``. Records without any of the
    attributes keep 1. E.g. 600 smiling and 200 not-smiling faces give the 200 a count of 3.

    Args:
        records: FaceRecord dicts (``attributes.<name>.value``).
        attributes: attribute names to balance (e.g. ``["smile", "eyeglasses"]``).
        max_repeat: the largest count (>= 1).

    Returns:
        One int per record.

    Raises:
        ValueError: no record has one of ``attributes`` (a misspelt name would otherwise balance nothing).
    """
    factors = [1.0] * len(records)
    for name in attributes:
        values = _attribute_values(records, name)
        counts: dict[str, int] = {}
        for v in values:
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
        if not counts:
            raise ValueError(f"data.t2i_balance: no record has attribute {name!r}; {_known_attributes(records)}")
        most = max(counts.values())
        factors = [f if v is None else max(f, most / counts[v]) for f, v in zip(factors, values, strict=True)]
    return [int(min(max_repeat, max(1, round(f)))) for f in factors]


def attribute_position_weights(
    records: Sequence[dict[str, Any]], codes: Tensor, attributes: Sequence[str], strength: float
) -> Tensor:
    """Per-image-position loss weights that favour the token positions which carry ``attributes``.

    On aligned faces an attribute lives in a few tokens (smile: the mouth row; glasses: the eye row), so a uniform
    masked-token loss spends most of its gradient on background and hair. For each attribute and position ``i``
    this measures ``I_i = sum_b I(bit_b(code_i); value)``, the mutual information (nats) between each bit of the
    position's code index and the attribute's value, over the records that have the attribute. Each attribute's
    map is scaled to mean 1, the maps are averaged into ``m``, and ``w_i = (1 + strength * m_i) / (1 + strength)``
    (mean 1, so the loss keeps its scale; ``strength = 0`` gives all ones).

    Args:
        records: FaceRecord dicts (``attributes.<name>.value``), one per row of ``codes``.
        codes: ``(R, N)`` long image codes.
        attributes: attribute names (binary or categorical values).
        strength: how far the weights move from uniform (>= 0).

    Returns:
        ``(N,)`` float32 weights with mean 1.

    Raises:
        ValueError: shape mismatch, negative strength, or an attribute that no record has or that has one value.
    """
    if codes.dim() != 2 or codes.shape[0] != len(records):
        raise ValueError(f"need one row of codes per record; got codes {tuple(codes.shape)} for {len(records)} records")
    if strength < 0:
        raise ValueError(f"train.loss.position_weight_strength must be >= 0, got {strength}")
    num_bits = max(1, int(codes.max()).bit_length())
    bits = (codes[..., None] >> torch.arange(num_bits)) & 1  # (R, N, B)
    maps = []
    for name in attributes:
        values = _attribute_values(records, name)
        rows = torch.tensor([v is not None for v in values])
        levels = sorted({v for v in values if v is not None})
        if len(levels) < 2:
            raise ValueError(
                f"train.loss.position_weight_attributes: {name!r} has {len(levels)} value(s) in the training "
                f"records (needs 2 or more); {_known_attributes(records)}"
            )
        y = torch.tensor([levels.index(v) for v in values if v is not None])  # (R',)
        b = bits[rows].double()  # (R', N, B)
        info = torch.zeros(codes.shape[1], dtype=torch.float64)
        for x in (b, 1 - b):  # indicator of bit = 1, then of bit = 0
            px = x.mean(0)  # (N, B)
            for k in range(len(levels)):
                pxy = x[y == k].sum(0) / len(y)  # joint p(bit, value)
                ratio = pxy / (px * (y == k).double().mean())
                info += torch.where(pxy > 0, pxy * ratio.clamp(min=1e-30).log(), 0.0).sum(-1)
        maps.append(info / info.mean().clamp(min=1e-12))
    m = torch.stack(maps).mean(0) if maps else torch.ones(codes.shape[1], dtype=torch.float64)
    return ((1 + strength * m) / (1 + strength)).float()


@dataclass
class FaceSample:
    """One training image with its texts and pre-computed tokens.

    Attributes:
        id: record id.
        caption: fine-grained caption.
        vqa: question-answer pairs.
        codes: ``(N,)`` long image codes in ``[0, codebook_size)``.
    """

    id: str
    caption: str
    vqa: list[tuple[str, str]]
    codes: Tensor


def load_records(path: str | Path, split: str | None = None, first: int = 0) -> list[dict[str, Any]]:
    """Read and validate FaceRecords (:func:`unif2ace.data.records.read_records`) with a caption, as dicts.

    Records whose caption is still empty (not captioned yet) are left out: they carry no text to learn from.

    Args:
        path: the records file (``.jsonl`` / ``.json`` / ``.parquet``).
        split: keep only records of this split (None = all).
        first: read only the first ``first`` records of the file (0 = all), before the split and caption filters.

    Raises:
        FileNotFoundError: the file is missing (message names ``data.records``).
        ValueError: a malformed record (message names the line / id and field).
    """
    from unif2ace.data.records import RecordError, read_records

    try:
        records = read_records(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"data.records: {err}") from None
    except RecordError as err:
        raise ValueError(f"data.records: {err}") from None
    if first < 0:
        raise ValueError(f"data.first_records must be >= 0 (0 = all records), got {first}")
    if first:
        records = records[:first]
    return [r.to_dict() for r in records if r.caption.strip() and (split is None or r.split == split)]


class TokenStore:
    """Pre-computed image codes keyed by source image path, read from ``unif2ace vq encode`` output.

    The folder holds ``tokens-*.safetensors`` shards (``codes`` ``(M, N)`` ints, ``index`` ``(M,)`` row positions
    into the source list) and ``provenance.json`` whose ``sources`` lists every encoded image path in row order.

    Args:
        path: the encode output folder (or its ``provenance.json``).

    Raises:
        FileNotFoundError: no ``provenance.json`` / shard (message names ``data.tokens``).
        ValueError: a shard lacks ``codes`` / ``index`` or its rows disagree with the provenance.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        folder = path.parent if path.name == "provenance.json" else path
        prov_file = folder / "provenance.json"
        if not prov_file.is_file():
            raise FileNotFoundError(f"data.tokens: no provenance.json in {folder}; run 'unif2ace vq encode' first")
        provenance = json.loads(prov_file.read_text())
        self.provenance = provenance
        sources = [str(s) for s in provenance.get("sources", [])]
        shards = provenance.get("shards") or sorted(p.name for p in folder.glob("tokens-*.safetensors"))
        if not shards:
            raise FileNotFoundError(f"data.tokens: {folder} lists no token shards")
        self._rows: dict[str, tuple[int, int]] = {}
        self._codes: list[Tensor] = []
        for shard_idx, name in enumerate(shards):
            tensors = load_tensors(folder / name)
            if "codes" not in tensors or "index" not in tensors:
                raise ValueError(f"data.tokens: {folder / name} needs 'codes' and 'index' tensors")
            codes, index = tensors["codes"].long(), tensors["index"].long()
            out_of_range = index.numel() > 0 and int(index.max()) >= len(sources)
            if codes.dim() != 2 or index.shape != (codes.shape[0],) or out_of_range:
                raise ValueError(f"data.tokens: {folder / name} rows do not match provenance.json sources")
            self._codes.append(codes)
            for row, src in enumerate(index.tolist()):
                self._rows[_path_key(sources[src])] = (shard_idx, row)

    def __contains__(self, image: str) -> bool:
        return _path_key(image) in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def num_tokens(self) -> int:
        """Image tokens per image."""
        return int(self._codes[0].shape[1])

    def codes(self, image: str) -> Tensor:
        """``(N,)`` codes of the image at path ``image``."""
        shard, row = self._rows[_path_key(image)]
        return self._codes[shard][row]


class EncodingTokenStore:
    """Image codes computed on access by a VQ tokenizer (``data.encode_images=true``).

    Slow: the image file is re-encoded every time it is drawn (for images that change on disk between epochs).
    Same interface as :class:`TokenStore`.

    Args:
        vq_checkpoint: tokenizer folder (``unif2ace vq train`` output or converted MAGVIT-v2).
    """

    def __init__(self, vq_checkpoint: str | Path) -> None:
        from unif2ace.tokenizer.vq.checkpoint import load_tokenizer

        self.model = load_tokenizer(vq_checkpoint)
        self.size = self.model.config.resolution

    def __contains__(self, image: str) -> bool:
        return Path(image).is_file()

    @property
    def num_tokens(self) -> int:
        """Image tokens per image."""
        return (self.size // self.model.downsample_factor) ** 2

    @torch.no_grad()
    def codes(self, image: str) -> Tensor:
        """``(N,)`` codes of the image file, encoded now."""
        from unif2ace.utils.images import load_image, to_tensor

        pixels = to_tensor(load_image(image, self.size))[None]  # (1, 3, S, S)
        return self.model.encode(pixels)[0].long()


def _path_key(path: str | Path) -> str:
    """Normalised absolute path used to join records with token rows."""
    return str(Path(path).expanduser().resolve())


def resolve_image_path(record: dict[str, Any], records_file: Path) -> str:
    """A record's ``image`` as an absolute path (relative paths are relative to the records file's folder)."""
    image = Path(str(record.get("image", "")))
    return str(image if image.is_absolute() else records_file.parent / image)


class TokenRecordDataset(Sequence):
    """Records of one split that have image tokens, as :class:`FaceSample` items (map-style).

    Args:
        records: FaceRecord dicts (see :func:`load_records`).
        tokens: the :class:`TokenStore`.
        num_image_tokens: expected tokens per image (``data.num_image_tokens``).
        records_file: the JSONL file (relative ``image`` paths are resolved against its folder).

    Raises:
        ValueError: token count mismatch, or no record has tokens.
    """

    def __init__(
        self,
        records: list[dict[str, Any]],
        tokens: TokenStore | EncodingTokenStore,
        num_image_tokens: int,
        records_file: str | Path = ".",
    ) -> None:
        if tokens.num_tokens != num_image_tokens:
            raise ValueError(
                f"data.num_image_tokens={num_image_tokens} but the token shards hold "
                f"{tokens.num_tokens} tokens per image; fix the config or re-encode"
            )
        base = Path(records_file)
        self.images = [resolve_image_path(r, base) for r in records]
        keep = [i for i, image in enumerate(self.images) if image in tokens]
        if not keep:
            raise ValueError(
                "no record has image tokens: the 'image' paths of data.records are not among the "
                "sources in data.tokens/provenance.json; re-run 'unif2ace vq encode' on these images"
            )
        self.records = [records[i] for i in keep]
        self.images = [self.images[i] for i in keep]
        self.tokens = tokens
        self.num_missing = len(records) - len(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> FaceSample:
        rec = self.records[index]
        vqa = [(str(t["q"]), str(t["a"])) for t in rec.get("vqa") or [] if isinstance(t, dict) and "q" in t]
        return FaceSample(
            id=str(rec["id"]), caption=rec["caption"], vqa=vqa, codes=self.tokens.codes(self.images[index])
        )
