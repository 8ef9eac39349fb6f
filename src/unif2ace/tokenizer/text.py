"""Pluggable text tokenizers (spec §2.2): the text part of the unified id space.

* :class:`BPETokenizer` — byte-level BPE trained with HF ``tokenizers`` on our captions (small models);
  ``<|endoftext|>`` is id 0 and serves as bos and eos.
* :class:`TiktokenGPT2Tokenizer` — the GPT-2 BPE used by phi-1.5 / Show-o, loaded with ``tiktoken`` from a
  **local** ranks file (``whisper/assets/gpt2.tiktoken`` inside the ``openai-whisper`` sdist); ids 0..50256 are
  GPT-2's and phi's 38 whitespace-run tokens (50257..50294) are added on top, giving phi's length 50295.
* :class:`ByteTokenizer` — UTF-8 bytes as ids 0..255, bos = eos = 256 (no training, tiny models, tests).
* :class:`WordLevelTokenizer` — the reference fixtures' stand-in (``"t<k>"`` -> k), for golden tests.

All follow :class:`TextTokenizer`: ``encode`` never adds bos/eos (the prompt layouts do), ``decode`` drops ids
outside the text range (pad, task tokens, image ids) and, unless ``skip_special=False``, ``<|endoftext|>``.
:func:`find_gpt2_ranks_file` locates the GPT-2 ranks offline (extracting them from a downloaded sdist if needed).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Protocol, runtime_checkable

ENDOFTEXT = "<|endoftext|>"
#: GPT-2's pre-tokenisation pattern (a published fact of the GPT-2 BPE).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@runtime_checkable
class TextTokenizer(Protocol):
    """What the prompt layouts need from a text tokenizer."""

    bos_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without bos/eos."""
        ...

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        """Text of ``ids``; ids outside the text range are skipped, bos/eos too unless ``skip_special=False``."""
        ...

    def __len__(self) -> int:
        """Number of text ids (``llm_vocab_size``)."""
        ...

    def save(self, directory: str | Path) -> Path:
        """Write the tokenizer into ``directory``; return the file written."""
        ...


class ByteTokenizer:
    """UTF-8 bytes 0..255, ``<|endoftext|>`` = 256 (bos = eos); length 257."""

    bos_id = eos_id = 256

    def encode(self, text: str) -> list[int]:
        """Byte ids of ``text``."""
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        """Bytes back to text (invalid UTF-8 is replaced; ``skip_special=False`` writes 256 as ``<|endoftext|>``)."""
        out = bytearray()
        for i in ids:
            if 0 <= i < 256:
                out.append(i)
            elif i == self.eos_id and not skip_special:
                out += ENDOFTEXT.encode()
        return out.decode("utf-8", errors="replace")

    def __len__(self) -> int:
        return 257

    def save(self, directory: str | Path) -> Path:
        """Write a marker file ``tokenizer.json`` of kind ``bytes``."""
        from unif2ace.utils.io import atomic_write_json

        path = Path(directory) / "tokenizer.json"
        atomic_write_json(path, {"unif2ace_tokenizer": "bytes"})
        return path


class BPETokenizer:
    """Byte-level BPE (HF ``tokenizers``) with ``<|endoftext|>`` = id 0 = bos = eos.

    Args:
        tokenizer: a ``tokenizers.Tokenizer``.
    """

    def __init__(self, tokenizer) -> None:
        self._tok = tokenizer
        self._tok.encode_special_tokens = True  # "<|endoftext|>" typed in a prompt stays text (no injection)
        eot = tokenizer.token_to_id(ENDOFTEXT)
        if eot is None:
            raise ValueError(f"BPE tokenizer has no {ENDOFTEXT} token; train it with BPETokenizer.train")
        self.bos_id = self.eos_id = eot

    @classmethod
    def train(cls, texts, vocab_size: int = 4096, min_frequency: int = 2) -> BPETokenizer:
        """Train a byte-level BPE on an iterable of strings (deterministic for the same texts).

        Raises:
            ValueError: ``vocab_size`` smaller than the 256 byte symbols + 1.
        """
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size < 257:
            raise ValueError(f"vocab_size must be >= 257 (256 bytes + {ENDOFTEXT}), got {vocab_size}")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[ENDOFTEXT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(list(texts), trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Load from a ``tokenizer.json`` file or a directory holding one.

        Raises:
            FileNotFoundError: no such file (names it).
            ValueError: the file is not a valid tokenizer (names it).
        """
        from tokenizers import Tokenizer

        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"text tokenizer file not found: {path}")
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as err:  # tokenizers raises its own Exception type for malformed JSON
            raise ValueError(f"cannot read text tokenizer {path}: {str(err).splitlines()[0]}") from None

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` (special-token strings in the text are encoded as plain text)."""
        return self._tok.encode(text, add_special_tokens=False).ids if text else []

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        """Text of ``ids`` (out-of-range ids skipped; ``<|endoftext|>`` too unless ``skip_special=False``)."""
        n = len(self)
        if skip_special:
            return self._tok.decode([i for i in ids if 0 <= i < n and i != self.eos_id], skip_special_tokens=True)
        parts, run = [], []
        for i in (i for i in ids if 0 <= i < n):  # decode runs between specials: byte-level pieces stay joined
            if i == self.eos_id:
                parts += [self._tok.decode(run), ENDOFTEXT]
                run = []
            else:
                run.append(i)
        return "".join([*parts, self._tok.decode(run)])

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` into ``directory`` atomically."""
        from unif2ace.utils.io import atomic_write_text

        path = Path(directory) / "tokenizer.json"
        atomic_write_text(path, self._tok.to_str())
        return path


def codegen_whitespace_tokens() -> list[str]:
    """phi-1.5's extra tokens 50257..50294 (CodeGen whitespace runs: 31..2 spaces, then 9..2 tabs).

    The order is the one in phi's ``added_tokens.json`` (31 spaces = 50257, 2 spaces = 50286, 9 tabs = 50287,
    2 tabs = 50294); see ``docs/tokenizers.md`` for how it was checked.
    """
    return [" " * n for n in range(31, 1, -1)] + ["\t" * n for n in range(9, 1, -1)]


#: Environment variable naming a local ``gpt2.tiktoken`` (checked first by :func:`find_gpt2_ranks_file`).
RANKS_ENV = "UNIF2ACE_GPT2_RANKS"
#: sha256 of ``whisper/assets/gpt2.tiktoken`` in openai-whisper 20250625 (50256 lines, ranks 0..50255).
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
_SDIST_MEMBER = "whisper/assets/gpt2.tiktoken"


def extract_gpt2_ranks(sdist: str | Path, dest_dir: str | Path) -> Path:
    """Copy ``whisper/assets/gpt2.tiktoken`` out of an ``openai-whisper`` sdist archive into ``dest_dir``.

    Only that one member is read (no other file of the archive is written).

    Raises:
        FileNotFoundError: the archive is missing (names it and how to download it).
        ValueError: the archive is unreadable or holds no ranks file.
    """
    from unif2ace.utils.io import atomic_write_text

    sdist = Path(sdist)
    if not sdist.is_file():
        raise FileNotFoundError(
            f"openai-whisper sdist not found: {sdist} "
            "(pip download --no-deps --no-binary :all: openai-whisper -d <dir>)"
        )
    try:
        with tarfile.open(sdist) as tar:
            member = next((m for m in tar.getmembers() if m.name.split("/", 1)[-1] == _SDIST_MEMBER), None)
            handle = tar.extractfile(member) if member is not None and member.isfile() else None
            data = handle.read() if handle is not None else None
    except (tarfile.TarError, OSError) as err:
        raise ValueError(f"cannot read openai-whisper sdist {sdist}: {err}") from None
    if data is None:
        raise ValueError(f"{sdist} holds no {_SDIST_MEMBER}; download the openai-whisper source distribution")
    path = Path(dest_dir) / "gpt2.tiktoken"
    atomic_write_text(path, data.decode("ascii"))
    return path


def find_gpt2_ranks_file(*search_dirs: str | Path) -> Path | None:
    """Locate GPT-2's ``gpt2.tiktoken`` offline (see ``docs/tokenizers.md``).

    Looks, in order: ``$UNIF2ACE_GPT2_RANKS``; in each of ``search_dirs`` for ``gpt2.tiktoken``, an extracted
    openai-whisper sdist (``*/whisper/assets/gpt2.tiktoken``), then a downloaded sdist archive
    (``openai[_-]whisper-*.tar.gz``, whose ranks file is extracted into that directory); finally an installed
    ``whisper`` package (located without importing it).

    Returns:
        the path, or None when no ranks file is found.
    """
    env = os.environ.get(RANKS_ENV)
    if env and Path(env).is_file():
        return Path(env)
    for directory in map(Path, search_dirs):
        found = [directory / "gpt2.tiktoken", *sorted(directory.glob(f"*/{_SDIST_MEMBER}"))]
        found = [f for f in found if f.is_file()]
        if found:
            return found[0]
        archives = sorted(directory.glob("openai[_-]whisper-*.tar.gz"))
        if archives:
            return extract_gpt2_ranks(archives[-1], directory)
    spec = importlib.util.find_spec("whisper")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "assets" / "gpt2.tiktoken"
        if path.is_file():
            return path
    return None


class TiktokenGPT2Tokenizer:
    """GPT-2 BPE through ``tiktoken`` with ranks read from a local file.

    ``tiktoken.get_encoding("gpt2")`` downloads its files; offline, get the ranks once from PyPI's
    ``openai-whisper`` source distribution (verified with 20250625, sha256 :data:`GPT2_RANKS_SHA256`)::

        pip download --no-deps --no-binary :all: openai-whisper -d /tmp/whisper_sdist
        # Python: path = find_gpt2_ranks_file("/tmp/whisper_sdist")  -> /tmp/whisper_sdist/gpt2.tiktoken
        #         tok = TiktokenGPT2Tokenizer.from_ranks_file(path)       (or "tiktoken:<path>" in configs)

    Args:
        ranks: token bytes -> rank.
        phi_extras: add phi-1.5's whitespace-run tokens (ids 50257..50294, length 50295).
    """

    def __init__(self, ranks: dict[bytes, int], phi_extras: bool = True) -> None:
        import tiktoken

        if not ranks:
            raise ValueError("ranks is empty; load a GPT-2 ranks file with TiktokenGPT2Tokenizer.from_ranks_file")
        self._ranks = ranks
        self.bos_id = self.eos_id = max(ranks.values()) + 1  # 50256 for GPT-2
        self._enc = tiktoken.Encoding(
            name="gpt2-local", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={ENDOFTEXT: self.bos_id}
        )
        self._extras = codegen_whitespace_tokens() if phi_extras else []
        self._extra_ids = {tok: self.bos_id + 1 + i for i, tok in enumerate(self._extras)}
        # Alternation in list order = longest run first; finditer scans left to right: leftmost-longest matching,
        # like the added-token split of HF tokenizers, which runs before BPE.
        self._extra_re = re.compile("|".join(re.escape(t) for t in self._extras)) if self._extras else None

    @classmethod
    def from_ranks_file(cls, path: str | Path, phi_extras: bool = True) -> TiktokenGPT2Tokenizer:
        """Load ``gpt2.tiktoken`` (lines ``<base64 token> <rank>``).

        Raises:
            FileNotFoundError: the file is missing (names it and where to get it).
            ValueError: a malformed line (names the file and line) or an empty file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"GPT-2 ranks file not found: {path} (it ships in the openai-whisper sdist as "
                "whisper/assets/gpt2.tiktoken; see docs/tokenizers.md)"
            )
        ranks = {}
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: expected '<base64 token> <rank>'") from None
        if not ranks:
            raise ValueError(f"{path}: no ranks in the file; use whisper/assets/gpt2.tiktoken (docs/tokenizers.md)")
        return cls(ranks, phi_extras=phi_extras)

    def encode(self, text: str) -> list[int]:
        """GPT-2 ids of ``text``; with phi extras, whitespace runs matching an extra token map to it first."""
        if self._extra_re is None:
            return self._enc.encode_ordinary(text)
        ids: list[int] = []
        pos = 0
        for m in self._extra_re.finditer(text):
            ids += self._enc.encode_ordinary(text[pos : m.start()])
            ids.append(self._extra_ids[m.group(0)])
            pos = m.end()
        return ids + self._enc.encode_ordinary(text[pos:])

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        """Text of ``ids`` (out-of-range ids skipped, bos/eos too unless ``skip_special=False``; bad UTF-8 replaced)."""
        out = bytearray()
        for i in ids:
            if 0 <= i < self.bos_id:
                out += self._enc.decode_single_token_bytes(i)
            elif i == self.bos_id and not skip_special:
                out += ENDOFTEXT.encode()
            elif 0 <= i - self.bos_id - 1 < len(self._extras):
                out += self._extras[i - self.bos_id - 1].encode()
        return out.decode("utf-8", errors="replace")

    def __len__(self) -> int:
        return self.bos_id + 1 + len(self._extras)

    def save(self, directory: str | Path) -> Path:
        """Write the ranks as ``gpt2.tiktoken`` + a small JSON descriptor."""
        from unif2ace.utils.io import atomic_write_json, atomic_write_text

        directory = Path(directory)
        lines = [f"{base64.b64encode(t).decode()} {r}" for t, r in sorted(self._ranks.items(), key=lambda kv: kv[1])]
        atomic_write_text(directory / "gpt2.tiktoken", "\n".join(lines) + "\n")
        path = directory / "tokenizer.json"
        atomic_write_json(path, {"unif2ace_tokenizer": "tiktoken-gpt2", "phi_extras": bool(self._extras)})
        return path


class WordLevelTokenizer:
    """The reference fixtures' stand-in tokenizer: word ``"t<k>"`` -> k (k < ``eot``), ``<|endoftext|>`` -> ``eot``.

    The fixture's HF tokenizer also has unnamed fillers ``eot + 1 .. size - 1`` and maps unknown words to
    ``<|endoftext|>`` (its unk); here an unknown word raises instead, so a typo in a test cannot pass silently.

    Args:
        size: text vocabulary length (fixture: 300).
        eot: id of ``<|endoftext|>`` (fixture: 256).
    """

    def __init__(self, size: int = 300, eot: int = 256) -> None:
        if not 0 < eot < size:
            raise ValueError(f"WordLevelTokenizer needs 0 < eot < size, got eot={eot}, size={size}")
        self.size, self.bos_id, self.eos_id = size, eot, eot

    def encode(self, text: str) -> list[int]:
        """Whitespace-split words ``t<k>`` -> ``k`` (``<|endoftext|>`` -> eot, as the fixture tokenizer does).

        Raises:
            ValueError: a word outside the vocabulary.
        """
        ids = []
        for word in text.split():
            if word == ENDOFTEXT:
                ids.append(self.eos_id)
            elif re.fullmatch(r"t\d+", word) and int(word[1:]) < self.eos_id:
                ids.append(int(word[1:]))
            else:
                raise ValueError(f"WordLevelTokenizer cannot encode {word!r} (expected t<k> with k < {self.eos_id})")
        return ids

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        """Words of ``ids`` (fillers and out-of-range ids skipped; eot too unless ``skip_special=False``)."""
        words = [f"t{i}" if i < self.eos_id else ENDOFTEXT for i in ids if 0 <= i < self.eos_id or i == self.eos_id]
        return " ".join(w for w in words if not (skip_special and w == ENDOFTEXT))

    def __len__(self) -> int:
        return self.size

    def save(self, directory: str | Path) -> Path:
        """Write a descriptor ``tokenizer.json``."""
        from unif2ace.utils.io import atomic_write_json

        path = Path(directory) / "tokenizer.json"
        atomic_write_json(path, {"unif2ace_tokenizer": "wordlevel", "size": self.size, "eot": self.bos_id})
        return path


def load_text_tokenizer(spec: str | Path) -> TextTokenizer:
    """``"bytes"`` | ``"tiktoken:<ranks file>"`` | a directory or ``tokenizer.json`` saved by any tokenizer here.

    A HF ``tokenizer.json`` of a byte-level BPE with ``<|endoftext|>`` (e.g. phi-1.5's own file, if you have it
    locally) loads as a :class:`BPETokenizer`.

    Raises:
        FileNotFoundError: missing file or empty directory (named).
        ValueError: unreadable or unknown file (named).
    """
    spec = str(spec)
    if spec in ("", "bytes"):
        return ByteTokenizer()
    if spec.startswith("tiktoken:"):
        return TiktokenGPT2Tokenizer.from_ranks_file(spec[len("tiktoken:") :])
    path = Path(spec)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"text tokenizer file not found: {file} (save a tokenizer there, or use 'bytes' / 'tiktoken:<ranks file>')"
        )
    try:
        head = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read text tokenizer {file}: not valid JSON ({err})") from None
    kind = head.get("unif2ace_tokenizer") if isinstance(head, dict) else None
    try:
        if kind == "bytes":
            return ByteTokenizer()
        if kind == "wordlevel":
            return WordLevelTokenizer(int(head["size"]), int(head["eot"]))
        if kind == "tiktoken-gpt2":
            return TiktokenGPT2Tokenizer.from_ranks_file(file.parent / "gpt2.tiktoken", bool(head["phi_extras"]))
    except (KeyError, TypeError) as err:
        raise ValueError(f"cannot read text tokenizer {file}: {kind} descriptor lacks {err}") from None
    if kind is not None:
        raise ValueError(f"cannot read text tokenizer {file}: unknown kind {kind!r}")
    return BPETokenizer.load(file)
