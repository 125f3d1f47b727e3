"""PII masking: a table of what is masked and what must not be (numbers that look like PII and are not), and the
properties the callers rely on: token counts kept, masking twice is masking once, text without PII untouched."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from explainer.pii import find_spans, scrub_text, scrub_tokens, scrub_value

MASKED = [
    # (text, expected)
    ("mail john.doe+news@example.co.uk today", "mail [EMAIL] today"),
    ("a@b.io", "[EMAIL]"),
    ("call (555) 123-4567 now", "call [PHONE] now"),
    ("call 555-123-4567.", "call [PHONE]."),
    ("ring +44 20 7946 0958", "ring [PHONE]"),
    ("card 4111 1111 1111 1111 ok", "card [CARD] ok"),
    ("card 4111-1111-1111-1111", "card [CARD]"),
    ("card 4111111111111111", "card [CARD]"),
    ("amex 378282246310005.", "amex [CARD]."),
    ("4111 1111 1111 1111 12/25", "[CARD] 12/25"),  # a card then its expiry date
    ("ssn 123-45-6789", "ssn [SSN]"),
    ("from 192.168.1.20, again", "from [IP], again"),
    ("host 10.0.0.1.", "host [IP]."),
    ("v6 2001:db8::8a2e:370:7334 here", "v6 [IP] here"),
    ("link-local fe80::1", "link-local [IP]"),
    ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "full [IP]"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc123", "Authorization: Bearer [SECRET]"),
    ("Authorization: Api-Key wKqkjMbj.t7zRAAe6KCYXB3fgsKyaPR8biM0NUB1S", "Authorization: Api-Key [SECRET]"),
    ("key wKqkjMbj.t7zRAAe6KCYXB3fgsKyaPR8biM0NUB1S leaked", "key [SECRET] leaked"),
    ("api_key=hunter2hunter2; next", "api_key=[SECRET]; next"),
    ('"password": "correct horse"', '"password": "[SECRET] horse"'),
    ("OPENAI sk-proj1234567890abcdefXYZ", "OPENAI [SECRET]"),
    ("aws AKIAIOSFODNN7EXAMPLE", "aws [SECRET]"),
    ("gh ghp_0123456789abcdefghijklmnopqrstuvwxyz", "gh [SECRET]"),
]

UNCHANGED = [
    "1234 5678 9012 3456",  # card-shaped but fails Luhn
    "Order 1234567890 shipped",  # a bare digit run: an order number, not a phone
    "order #A-2024-000123",
    "on 2024-01-15 at 12:30:45",  # a date and a time
    "python 3.11.4 and 10.0.19045.2965",  # version strings
    "v1.2.3-beta",
    "192.168.100.1234",  # not an address: the last part is over 255
    "connection to server at 127.0.0.1, port 5432 failed",  # loopback names no one's machine
    "listening on 0.0.0.0:8000 and [::1]:8000",
    "999.1.1.1",
    "41111111111111111111234",  # a Luhn-valid card inside a longer unbroken run is an id, not a card
    "000-12-3456",  # no SSN starts with 000
    "a[::2] and std::vector",  # slicing and C++ scopes
    "the bearer instrument",
    "pi is 3.14159 and e is 2.71828",
    "ISBN 978-3-16-148410-0",
    "",
]


@pytest.mark.parametrize(("text", "expected"), MASKED)
def test_pii_is_masked(text, expected):
    assert scrub_text(text) == expected


@pytest.mark.parametrize("text", UNCHANGED)
def test_lookalikes_are_left_alone(text):
    assert scrub_text(text) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("account 12345678 and zip 90210", "account [NUMBER] and zip 90210"),
    ("Order 1234567890 shipped", "Order [NUMBER] shipped"),
    ("41111111111111111111234", "[NUMBER]"),
])
def test_long_digit_runs_only_when_asked(text, expected):
    assert scrub_text(text, mask_numbers=True) == expected
    assert scrub_text(text) == text


def test_tokens_keep_their_count_and_the_span_starts_at_its_first_token():
    tokens = ["Mail", " john", ".doe", "@ex", "ample", ".com", " now", " 4111", " 1111", " 1111", " 1111", "."]
    masked = scrub_tokens(tokens)
    assert masked == ["Mail", " [EMAIL]", "", "", "", "", " now", " [CARD]", "", "", "", "."]
    assert "".join(masked) == scrub_text("".join(tokens))


def test_a_token_keeps_what_it_has_outside_the_span():
    assert scrub_tokens(["to:a@b.io,", " ok"]) == ["to:[EMAIL],", " ok"]
    assert scrub_tokens(["x a", "@b.io y"]) == ["x [EMAIL]", " y"]


def test_values_are_scrubbed_deeply_and_keys_kept():
    value = {"email": "a@b.io", "list": ["ssn 123-45-6789", 7], "n": 1.5}
    assert scrub_value(value) == {"email": "[EMAIL]", "list": ["ssn [SSN]", 7], "n": 1.5}


PII_PIECES = st.sampled_from(["a@b.io", "jo.x@mail.example.org", "4111 1111 1111 1111", "123-45-6789",
                              "10.1.2.3", "fe80::1", "(555) 123-4567", "Bearer abc123def456", "key=s3cr3t99"])
WORDS = st.text(alphabet=st.sampled_from("abcdefghij .,-:@0123456789()"), max_size=12)
TEXT_WITH_PII = st.lists(st.one_of(WORDS, PII_PIECES), max_size=12).map("".join)


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in zip(points, points[1:])] or [""]


@settings(max_examples=300, deadline=None)
@given(TEXT_WITH_PII, st.lists(st.integers(min_value=0, max_value=200), max_size=30), st.booleans())
def test_token_count_is_kept_and_masking_is_idempotent(text, cuts, numbers):
    tokens = _split(text, cuts)
    masked = scrub_tokens(tokens, mask_numbers=numbers)
    assert len(masked) == len(tokens)
    assert "".join(masked) == scrub_text(text, mask_numbers=numbers)
    assert scrub_tokens(masked, mask_numbers=numbers) == masked
    assert scrub_text(scrub_text(text, mask_numbers=numbers), mask_numbers=numbers) == \
        scrub_text(text, mask_numbers=numbers)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="@:=")))
def test_text_without_digits_at_signs_or_assignments_is_unchanged(text):
    assert find_spans(text) == []
    assert scrub_text(text) == text
