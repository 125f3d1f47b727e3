"""Finding and masking personal data (PII) and secrets in text a client sent, before it is stored, logged or audited.

Pure functions with no Django, so they are cheap to call and easy to test: the callers read `PII_SCRUB` and
`PII_MASK_NUMBERS` from settings and pass `mask_numbers`. Every pattern is compiled once, at import, and a detector
runs only when the text holds what its pattern needs (a digit, an `@`, a `:`), so text without any costs a couple
of scans.

Each span found is replaced by a placeholder such as `[EMAIL]`. Placeholders hold no digit, `@` or `:`, so masked
text holds nothing a detector matches again: masking twice is masking once. Token lists keep their length
(`scrub_tokens`): the graph's token nodes are positions of the activations the client captured, so a masked token
list must line up with them.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

EMAIL, PHONE, CARD, SSN, IP, SECRET, NUMBER = "[EMAIL]", "[PHONE]", "[CARD]", "[SSN]", "[IP]", "[SECRET]", "[NUMBER]"
# Digit runs this long or longer are masked with `mask_numbers` (account, order and customer numbers).
LONG_NUMBER_DIGITS = 6


@dataclass(frozen=True, order=True)
class Span:
    """Characters `[start, end)` of a text that `placeholder` replaces."""

    start: int
    end: int
    placeholder: str


# --- Detectors: each yields `(start, end)` of what it finds, and runs only when the text has what it needs ----------

_DIGIT = re.compile(r"\d")
_EMAIL = re.compile(r"(?<![\w.%+@-])[\w.%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![\w@-]|\.[\w-])", re.ASCII)
# Credentials: `Bearer …` / `Api-Key …` headers, `api_key=…` style assignments, and keys whose prefix names their
# issuer (ours are `<8>.<32>` characters, and every key form is looked for only in text with a digit); the value
# alone is masked (the named group), so "Authorization: Bearer [SECRET]" still says what it was. A header value
# needs a digit or 20 characters, so prose ("the bearer instrument") stays as it is.
_SECRET_NAMED = re.compile(
    r"(?i:\b(?:bearer|api-key)\s+)(?P<v>(?=[A-Za-z._~+/=-]*\d)[A-Za-z0-9._~+/=-]{8,}|[A-Za-z0-9._~+/=-]{20,})"
    r"|(?i:\b(?:api[_-]?key|access[_-]?token|secret|password|passwd)\b[\"']?\s*[:=]\s*[\"']?)(?P<a>[^\s\"',;]{4,})")
_SECRET_WORDS = ("bearer", "api", "token", "secret", "passw")
# Keys whose prefix names their issuer, and the tail of ours (`<8 characters>.<32 characters>`): each pattern starts
# with a literal, so the scan skips ahead; what comes before a match is checked in Python (`_service_keys`).
_ISSUER_KEY = re.compile(
    r"(?:sk-[A-Za-z0-9_-]{16,}|sk_(?:live|test)_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{30,}|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})(?![\w-])")
_OUR_KEY_TAIL = re.compile(r"\.[A-Za-z0-9]{32}(?![\w-])")
_OUR_KEY_PREFIX = re.compile(r"[A-Za-z0-9]{8}")
# Digit groups joined by single spaces or dashes: the candidates for a card number.
_DIGIT_RUN = re.compile(r"\d+(?:[ -]\d+)*")
_DIGIT_GROUP = re.compile(r"\d+")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d|-\d)")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\.?\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# Separated groups only: a bare run of ten digits is as likely an order number as a phone number.
_PHONE = re.compile(r"(?<![\w+.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\d|[.-]\d)"
                    r"|(?<![\w+.])\+\d{1,3}(?:[ .-]\d{1,4}){2,5}(?!\d|[.-]\d)")
_NUMBER = re.compile(rf"(?<!\d)\d{{{LONG_NUMBER_DIGITS},}}(?!\d)")

Found = Iterator[tuple[int, int]]


def _matches(pattern: re.Pattern[str], valid: Callable[[str], bool] = lambda text: True) -> Callable[[str], Found]:
    """Spans of `pattern`'s matches (of its named group, when one matched) that `valid` accepts."""

    def find(text: str) -> Found:
        for match in pattern.finditer(text):
            group = next((name for name, value in match.groupdict().items() if value is not None), 0)
            start, end = match.span(group)
            if valid(text[start:end]):
                yield start, end

    return find


def _word_char_before(text: str, start: int) -> bool:
    return start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_-")


def _service_keys(text: str) -> Found:
    for match in _ISSUER_KEY.finditer(text):
        if not _word_char_before(text, match.start()):
            yield match.span()
    for match in _OUR_KEY_TAIL.finditer(text):
        start = match.start() - 8
        if (start >= 0 and _OUR_KEY_PREFIX.fullmatch(text, start, match.start())
                and not _word_char_before(text, start) and _DIGIT.search(text, start, match.end())):
            yield start, match.end()


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cards(text: str) -> Found:
    """Luhn-valid numbers of 13 to 19 digits. A run of digit groups ("4111 1111 1111 1111 12/25") is a card as a
    whole, or else its longest leftmost stretch of whole groups that is one; an unbroken run of more than 19 digits
    is an identifier of some other kind, and no card is looked for inside it."""
    for run in _DIGIT_RUN.finditer(text):
        groups = [(m.start() + run.start(), m.end() + run.start()) for m in _DIGIT_GROUP.finditer(run.group())]
        i = 0
        while i < len(groups):
            found = None
            for j in range(len(groups) - 1, i - 1, -1):
                digits = "".join(text[a:b] for a, b in groups[i:j + 1])
                if 13 <= len(digits) <= 19 and _luhn(digits):
                    found = j
                    break
            if found is None:
                i += 1
                continue
            yield groups[i][0], groups[found][1]
            i = found + 1


def _is_ipv6(text: str) -> bool:
    if sum(1 for group in text.split(":") if group) < 2:  # `a[::2]`, `std::`: slicing and scopes, not addresses
        return False
    try:
        return _personal(ipaddress.IPv6Address(text))
    except ValueError:
        return False


def _is_ipv4(text: str) -> bool:
    return _personal(ipaddress.IPv4Address(text))


def _personal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback and unspecified addresses name no one's machine, and an operator needs them in an error such as
    "connection to server at 127.0.0.1 failed"; every other address may be personal data."""
    return not (address.is_loopback or address.is_unspecified)


def _is_phone(text: str) -> bool:
    return 8 <= sum(char.isdigit() for char in text) <= 15


@dataclass(frozen=True)
class _Detector:
    """A detector runs over the whole text when `needs` says it is worth it, or, with `min_digits`, over each run of
    digits and separators (and 2 characters either side, all its lookarounds need) holding that many digits: prose
    has few such runs, so most of the text is scanned once, by `_DIGITISH`, instead of once per detector."""

    find: Callable[[str], Found]
    placeholder: str
    needs: Callable[[str, bool], bool] = lambda lower, has_digit: False  # (text in lower case, has a digit)
    min_digits: int = 0


# Every digit detector's match is 6 characters or more.
_DIGITISH = re.compile(r"[\d(+][\d .()+-]{5,}")
_CONTEXT = 2
_FEWEST_DIGITS = 4  # of any digit detector (an IPv4 address)


def _digit_runs(text: str) -> list[tuple[int, str, int]]:
    """`(offset, window, digits)` of every run that could hold a card, SSN, address, phone or number."""
    runs = []
    for match in _DIGITISH.finditer(text):
        digits = sum(map(str.isdecimal, match.group()))
        if digits >= _FEWEST_DIGITS:
            start = max(0, match.start() - _CONTEXT)
            runs.append((start, text[start:match.end() + _CONTEXT], digits))
    return runs


# In priority order: where two spans overlap, the earlier detector's wins.
_DETECTORS = (
    _Detector(_matches(_SECRET_NAMED), SECRET, needs=lambda lower, d: any(word in lower for word in _SECRET_WORDS)),
    _Detector(_service_keys, SECRET, needs=lambda lower, has_digit: has_digit),
    _Detector(_matches(_EMAIL), EMAIL, needs=lambda lower, d: "@" in lower),
    _Detector(_cards, CARD, min_digits=13),
    _Detector(_matches(_SSN), SSN, min_digits=9),
    _Detector(_matches(_IPV4, _is_ipv4), IP, min_digits=4),
    _Detector(_matches(_IPV6, _is_ipv6), IP, needs=lambda lower, d: lower.count(":") >= 2),
    _Detector(_matches(_PHONE, _is_phone), PHONE, min_digits=8),
)
_NUMBERS = _Detector(_matches(_NUMBER), NUMBER, min_digits=LONG_NUMBER_DIGITS)


def _found(detector: _Detector, text: str, lower: str, has_digit: bool,
           runs: list[tuple[int, str, int]]) -> Found:
    if not detector.min_digits:
        if detector.needs(lower, has_digit):
            yield from detector.find(text)
        return
    for offset, window, digits in runs:
        if digits >= detector.min_digits:
            for start, end in detector.find(window):
                yield offset + start, offset + end


def find_spans(text: str, *, mask_numbers: bool = False) -> list[Span]:
    """The non-overlapping spans of `text` to mask, sorted by position."""
    has_digit = _DIGIT.search(text) is not None
    lower = text.lower()
    runs = _digit_runs(text) if has_digit else []
    detectors = (*_DETECTORS, _NUMBERS) if mask_numbers else _DETECTORS
    taken: list[Span] = []
    for detector in detectors:
        for start, end in _found(detector, text, lower, has_digit, runs):
            if all(end <= span.start or start >= span.end for span in taken):
                taken.append(Span(start, end, detector.placeholder))
    return sorted(taken)


# Masking can put a placeholder where a letter blocked a match ("a@b.io4111 1111 1111 1111" holds a card, then an
# email once the card is masked), so masking repeats until nothing changes; two passes are the most seen.
_MAX_PASSES = 4


def scrub_text(text: str, *, mask_numbers: bool = False) -> str:
    """`text` with every span found replaced by its placeholder."""
    for _ in range(_MAX_PASSES):
        spans = find_spans(text, mask_numbers=mask_numbers)
        masked = _replace(text, spans)
        if masked == text:
            break
        text = masked
    return text


def _replace(text: str, spans: list[Span]) -> str:
    parts, position = [], 0
    for span in spans:
        parts += [text[position:span.start], span.placeholder]
        position = span.end
    parts.append(text[position:])
    return "".join(parts)


def scrub_tokens(tokens: Iterable[str], *, mask_numbers: bool = False) -> list[str]:
    """Mask the spans found in the tokens' joined text, keeping one token per position.

    A span's first token carries its placeholder in place of the span's characters; the other tokens it covers
    keep only their characters outside the span (often nothing). Joined again, the tokens read as `scrub_text` of
    the joined text.
    """
    tokens = list(tokens)
    for _ in range(_MAX_PASSES):
        masked = _replace_in_tokens(tokens, find_spans("".join(tokens), mask_numbers=mask_numbers))
        if masked == tokens:
            break
        tokens = masked
    return tokens


def _replace_in_tokens(tokens: list[str], spans: list[Span]) -> list[str]:
    if not spans:
        return tokens
    text = "".join(tokens)
    masked, start, index = [], 0, 0
    for token in tokens:
        end = start + len(token)
        while index < len(spans) and spans[index].end <= start:
            index += 1
        parts, position, i = [], start, index
        while i < len(spans) and spans[i].start < end:
            span = spans[i]
            if span.start > position:
                parts.append(text[position:span.start])
            if span.start >= start:
                parts.append(span.placeholder)
            position = max(position, min(span.end, end))
            i += 1
        if position < end:
            parts.append(text[position:end])
        masked.append("".join(parts))
        start = end
    return masked


def scrub_value(value: Any, *, mask_numbers: bool = False) -> Any:
    """A copy of a JSON-like value with every string in it scrubbed (keys kept): for log fields and audit details."""
    if isinstance(value, str):
        return scrub_text(value, mask_numbers=mask_numbers)
    if isinstance(value, dict):
        return {key: scrub_value(item, mask_numbers=mask_numbers) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_value(item, mask_numbers=mask_numbers) for item in value]
    return value
