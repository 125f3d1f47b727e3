"""Concept extraction: exact spans in text order, code kept whole, fallbacks labelled, token positions covered."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

spacy = pytest.importorskip("spacy")

from attribution.concepts import FALLBACK, ConceptError, extract_concepts  # noqa: E402
from attribution.config import ConceptConfig  # noqa: E402

PROMPT = "Please `DROP TABLE users` in \"production database\" at New York City for 'Acme Corp'"


def spans(text: str, config: ConceptConfig | None = None) -> list[tuple[str, str, int, int]]:
    return [(c.text, c.label, c.start, c.end) for c in extract_concepts(text, config=config)]


@pytest.mark.parametrize("text, expected", [
    (PROMPT, [("DROP TABLE users", FALLBACK, 8, 24), ("production database", FALLBACK, 30, 49),
              ("New York City", "PROPER_NOUN", 54, 67), ("Acme Corp", "PROPER_NOUN", 73, 82)]),
    # Code identifiers and quantities; a sentence's first word is no proper noun, a later one is.
    ("Call parse_args() then os.path.join and getUserName with 5 kg in Paris.",
     [("parse_args", "CODE", 5, 15), ("os.path.join", "CODE", 23, 35), ("getUserName", "CODE", 40, 51),
      ("5 kg", "QUANTITY", 57, 61), ("Paris", "PROPER_NOUN", 65, 70)]),
    # Apostrophes are not quotes; short quoted phrases are not concepts.
    ("Don't say it's \"ok\" or 'no'.", []),
    # A fenced block is one concept (its inner text); nothing inside it is extracted; a line's first word is not a
    # proper noun.
    ("Run this:\n```python\nimport os\nprint(\"hello world\")\n```\nThen ask Alice Smith.",
     [("import os\nprint(\"hello world\")", FALLBACK, 20, 50), ("Alice Smith", "PROPER_NOUN", 64, 75)]),
    # Single quotes around a phrase, double quotes spanning no newline.
    ("the 'quarterly report' and \"two\nlines\"", [("quarterly report", FALLBACK, 5, 21)]),
    ("", []),
])
def test_concepts_of_a_prompt(text: str, expected: list) -> None:
    assert spans(text) == expected


def test_concepts_cover_the_tokens_their_characters_overlap() -> None:
    # Token offsets as a byte-level BPE gives them: " New" starts on the space before "New".
    text = "go to New York now"
    token_spans = [(0, 2), (2, 5), (5, 9), (9, 14), (14, 18)]
    [concept] = extract_concepts(text, token_spans=token_spans)
    assert (concept.text, concept.tokens) == ("New York", (2, 3))


def test_at_most_concept_max_are_kept_the_first_in_text_order() -> None:
    text = " and ".join(f"'item{i:02d}'" for i in range(20))
    concepts = extract_concepts(text, config=ConceptConfig(max_concepts=5))
    assert [c.text for c in concepts] == [f"item{i:02d}" for i in range(5)]
    assert [c.id for c in concepts] == ["c0", "c1", "c2", "c3", "c4"]


def test_a_trained_pipeline_named_by_spacy_model_gives_its_entities(tmp_path: Path) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "ORG", "pattern": "hypergraph sidecar"}])
    nlp.to_disk(tmp_path / "pipeline")
    config = ConceptConfig(spacy_model=str(tmp_path / "pipeline"))
    assert spans("ask the hypergraph sidecar about Paris", config) == [("hypergraph sidecar", "ORG", 8, 26)]


def test_a_spacy_model_that_is_not_installed_is_a_clear_error() -> None:
    with pytest.raises(ConceptError, match="SPACY_MODEL='en_core_web_nonexistent' is not an installed"):
        extract_concepts("text", config=ConceptConfig(spacy_model="en_core_web_nonexistent"))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(list("ab AB`'\"\n._(kg5") + ["New", "York", "```"]), max_size=40).map("".join))
def test_concepts_are_exact_distinct_and_in_text_order(text: str) -> None:
    concepts = extract_concepts(text)
    keys = [(c.start, c.end) for c in concepts]
    assert keys == sorted(keys)
    assert len({(c.start, c.end, c.text) for c in concepts}) == len(concepts)
    for i, c in enumerate(concepts):
        assert c.id == f"c{i}" and 0 <= c.start < c.end <= len(text) and c.text == text[c.start:c.end]
