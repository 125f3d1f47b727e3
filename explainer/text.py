"""Tokens and sentence windows for traces whose client sent text but no tokens."""
from __future__ import annotations

import re

_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?]\s*$|\n")


def tokenize(text: str) -> list[str]:
    """Split into word and punctuation tokens, each keeping its leading whitespace (as BPE tokenizers do)."""
    return _TOKEN.findall(text)


def sentence_windows(tokens: list[str], positions: int) -> list[tuple[int, int]]:
    """Half-open spans `[start, end)` over the first `positions` tokens, cut after sentence-ending tokens."""
    windows: list[tuple[int, int]] = []
    start = 0
    for i in range(positions):
        token = tokens[i] if i < len(tokens) else ""
        if _SENTENCE_END.search(token):
            windows.append((start, i + 1))
            start = i + 1
    if start < positions:
        windows.append((start, positions))
    return windows
