"""Concepts: the named things in a prompt, whose removal may change the answer (`attribution.interactions`).

spaCy finds them first: a trained pipeline's entities when `SPACY_MODEL` names one that is installed, otherwise a
blank English pipeline with rules for runs of proper nouns, numbers with units and code identifiers (nothing is ever
downloaded). Then fallbacks catch what a reader would also call a named thing, each labelled `FALLBACK`, in this
order: fenced code blocks (their inner text), inline backtick spans, double-quoted and single-quoted phrases of three
characters or more on one line, and runs of Capitalized words.

Code is atomic: nothing is extracted from inside a code block or backtick span but the span itself, so
``DROP TABLE users`` is one concept, not a table name and a keyword. Candidates are deduplicated on
(start, end, text), the earlier finder's label winning, and numbered in text order.

spaCy is imported on first use (the `nlp` extra), so importing this module costs nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from .config import ConceptConfig

FALLBACK = "FALLBACK"
UNITS = ("%", "percent", "kg", "g", "mg", "lb", "lbs", "km", "m", "cm", "mm", "mi", "ft", "in", "s", "ms", "sec",
         "min", "h", "hr", "hrs", "hours", "days", "b", "kb", "mb", "gb", "tb", "hz", "khz", "mhz", "ghz", "w", "kw",
         "v", "mah", "°c", "°f", "usd", "eur", "gbp", "px", "dpi", "fps", "rpm", "mph", "kph")
# snake_case, dotted.names, camelCase and calls such as `parse()`: what an identifier in running text looks like.
CODE_IDENTIFIER = r"^(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Za-z]\w*_\w+|[a-z]+[A-Z]\w*|[A-Za-z_]\w*\(\))$"

_FENCED = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
_BACKTICKS = re.compile(r"`([^`\n]+)`")
_DOUBLE_QUOTED = re.compile(r"\"([^\"\n]{3,})\"")
# Not an apostrophe: the quote opens and closes outside a word ("don't ... it's" is no phrase).
_SINGLE_QUOTED = re.compile(r"(?<!\w)'([^'\n]{3,}?)'(?!\w)")
_CAPITALIZED_RUN = re.compile(r"\b[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+)+\b")


class ConceptError(ValueError):
    """`SPACY_MODEL` names a pipeline that is not installed or cannot be loaded."""


@dataclass(frozen=True)
class Concept:
    """One named thing: its text, where it is (`start`, `end`: characters of the prompt) and the positions of the
    model's tokens it covers, so masking it works on the tokenised prompt."""

    id: str
    text: str
    label: str
    start: int
    end: int
    tokens: tuple[int, ...]


def extract_concepts(text: str, *, token_spans: Sequence[tuple[int, int]] = (),
                     config: ConceptConfig | None = None) -> list[Concept]:
    """The concepts of `text`, in text order, at most `config.max_concepts`.

    `token_spans` are the (start, end) characters of each of the model's tokens of `text` (a fast tokenizer's
    offsets); a concept covers every token its characters overlap.
    """
    config = config or ConceptConfig()
    code = _code_spans(text)
    candidates = [*_spacy_spans(text, config.spacy_model), *code, *_phrase_spans(text)]
    kept: dict[tuple[int, int, str], str] = {}
    for start, end, label in candidates:
        if _strictly_inside(start, end, code):
            continue
        kept.setdefault((start, end, text[start:end]), label)
    ordered = sorted(kept.items(), key=lambda item: (item[0][0], item[0][1]))[:config.max_concepts]
    covers = _token_cover(token_spans, [(start, end) for (start, end, _), _ in ordered])
    return [Concept(id=f"c{i}", text=span_text, label=label, start=start, end=end, tokens=covers[i])
            for i, ((start, end, span_text), label) in enumerate(ordered)]


def _code_spans(text: str) -> list[tuple[int, int, str]]:
    """Inner spans of fenced blocks, then of backtick spans outside them (whitespace around the code trimmed)."""
    fenced = [_trimmed(text, *m.span(1)) for m in _FENCED.finditer(text)]
    inline = [_trimmed(text, *m.span(1)) for m in _BACKTICKS.finditer(text)
              if not any(s - 4 <= m.start() < e + 3 for s, e in fenced)]
    return [(s, e, FALLBACK) for s, e in [*fenced, *inline] if e > s]


def _phrase_spans(text: str) -> Iterable[tuple[int, int, str]]:
    for pattern in (_DOUBLE_QUOTED, _SINGLE_QUOTED):
        for m in pattern.finditer(text):
            start, end = _trimmed(text, *m.span(1))
            if end - start >= 3:
                yield start, end, FALLBACK
    for m in _CAPITALIZED_RUN.finditer(text):
        yield m.start(), m.end(), FALLBACK


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _strictly_inside(start: int, end: int, spans: list[tuple[int, int, str]]) -> bool:
    return any(s <= start and end <= e and (s, e) != (start, end) for s, e, _ in spans)


def _token_cover(token_spans: Sequence[tuple[int, int]], spans: list[tuple[int, int]]) -> list[tuple[int, ...]]:
    """For each character span, the positions of the tokens that overlap it."""
    if not len(token_spans) or not spans:
        return [() for _ in spans]
    tokens = np.asarray(token_spans, dtype=np.int64).reshape(-1, 2)
    concepts = np.asarray(spans, dtype=np.int64)
    overlap = (tokens[None, :, 0] < concepts[:, None, 1]) & (tokens[None, :, 1] > concepts[:, None, 0])
    return [tuple(int(p) for p in np.flatnonzero(row)) for row in overlap]


def _spacy_spans(text: str, model: str) -> list[tuple[int, int, str]]:
    doc = _pipeline(model)(text)
    return [(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents]


@lru_cache(maxsize=4)
def _pipeline(model: str):
    """The trained pipeline named by `model`, or a blank English one with our rules (loaded once per process)."""
    import spacy

    if model:
        try:
            return spacy.load(model)
        except (OSError, ImportError) as exc:
            raise ConceptError(f"SPACY_MODEL={model!r} is not an installed spaCy pipeline: {exc}") from None
    from spacy.pipeline import Sentencizer

    nlp = spacy.blank("en")
    # A line break ends a sentence too, so a line's first word is not taken for a proper noun.
    nlp.add_pipe("sentencizer", config={"punct_chars": [*Sentencizer.default_punct_chars, "\n", "\n\n"]})
    nlp.add_pipe("entity_ruler").add_patterns(_RULES)
    return nlp


_TITLE = {"IS_TITLE": True, "LOWER": {"NOT_IN": ["i"]}}
_RULES = [
    # Two or more Capitalized words ("New York City"), or one that does not open a sentence ("in Paris").
    {"label": "PROPER_NOUN", "pattern": [_TITLE, {**_TITLE, "OP": "+"}]},
    {"label": "PROPER_NOUN", "pattern": [{**_TITLE, "IS_SENT_START": False}]},
    {"label": "QUANTITY", "pattern": [{"LIKE_NUM": True}, {"LOWER": {"IN": list(UNITS)}}]},
    {"label": "CODE", "pattern": [{"TEXT": {"REGEX": CODE_IDENTIFIER}}]},
]
