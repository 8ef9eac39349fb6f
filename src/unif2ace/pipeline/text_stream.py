"""Conversation history checks and text streaming for captions / answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

__all__ = ["TextStream", "check_history"]


def check_history(history: Any) -> list[tuple[str, str]]:
    """``history`` as ``(question, answer)`` string pairs (dicts with ``q``/``a`` or ``question``/``answer`` too).

    Raises:
        ValueError: not a list of such pairs (names the bad entry).
    """
    if history is None:
        return []
    if not isinstance(history, (list, tuple)):
        raise ValueError("history must be a list of (question, answer) pairs")
    turns = []
    for i, turn in enumerate(history):
        if isinstance(turn, dict):
            turn = (turn.get("q", turn.get("question")), turn.get("a", turn.get("answer")))
        if not isinstance(turn, (list, tuple)) or len(turn) != 2 or not all(isinstance(t, str) for t in turn):
            raise ValueError(f"history[{i}] must be a (question, answer) pair of strings")
        turns.append((turn[0], turn[1]))
    return turns


class TextStream:
    """Turns decoded ids into text pieces for a callback (row 0; pieces are emitted once whole characters exist)."""

    def __init__(self, layouts: Any, callback: Callable[[str], Any] | None) -> None:
        self.layouts, self.callback = layouts, callback
        self.ids: list[int] = []
        self.sent = ""
        self.done = False

    def push(self, tokens: Tensor) -> None:
        """Take the ``(B,)`` ids of one decoding step; send row 0's new text, if any."""
        if self.done or self.callback is None:
            return
        token = int(tokens[0])
        if token == self.layouts.vocab.eos_id or token == self.layouts.vocab.pad_id:
            self.done = True
            return
        self.ids.append(token)
        text = self.layouts.decode(self.ids).strip()  # trailing spaces wait: the final text is stripped
        if text.endswith("\ufffd") or not text.startswith(self.sent):
            return  # an incomplete UTF-8 sequence: wait for the next token
        if len(text) > len(self.sent):
            self.callback(text[len(self.sent) :])
            self.sent = text

    def finish(self, text: str) -> None:
        """Send whatever the stream still owes so the pieces join to exactly ``text``."""
        if self.callback is not None and text.startswith(self.sent) and len(text) > len(self.sent):
            self.callback(text[len(self.sent) :])
            self.sent = text
