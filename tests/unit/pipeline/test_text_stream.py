"""TextStream: pieces are whole characters, arrive in order and join to the final text."""

from types import SimpleNamespace

import pytest
import torch

from unif2ace.pipeline.text_stream import TextStream, check_history


class ByteLayouts:
    vocab = SimpleNamespace(eos_id=256, pad_id=257)

    @staticmethod
    def decode(ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def _feed(text_bytes, extra=()):
    pieces = []
    stream = TextStream(ByteLayouts(), pieces.append)
    for b in [*text_bytes, *extra]:
        stream.push(torch.tensor([b, 0]))  # row 0 streams; other rows are ignored
    return stream, pieces


def test_multibyte_characters_wait_until_complete():
    data = " Café 😀 ok ".encode()
    stream, pieces = _feed(data, extra=[256, 65])  # eos ends the stream: the later 'A' is not sent
    final = ByteLayouts.decode(list(data)).strip()
    stream.finish(final)
    assert "".join(pieces) == final == "Café 😀 ok"
    assert all("\ufffd" not in p for p in pieces)
    assert "😀" in pieces or any(p.endswith("😀") for p in pieces)


def test_check_history():
    assert check_history(None) == []
    assert check_history([("q", "a"), {"q": "q2", "a": "a2"}]) == [("q", "a"), ("q2", "a2")]
    for bad in ("text", [("q",)], [("q", 3)]):
        with pytest.raises(ValueError, match="history"):
            check_history(bad)
