"""The evaluation sentences ship for the six supported languages and are distinct."""

from __future__ import annotations

import pytest

from voice_core.errors import InvalidInputError
from voice_eval import sentences


def test_every_language_loads_twenty_distinct_sentences() -> None:
    seen: set[str] = set()
    for language in sentences.LANGUAGES:
        lines = sentences.load(language)
        assert len(lines) == 20, language
        assert len(set(lines)) == 20, f"{language} repeats a sentence"
        assert all(line == line.strip() and len(line.split()) >= 5 for line in lines), language
        assert not seen & set(lines), f"{language} shares sentences with another language"
        seen |= set(lines)
    assert sentences.LANGUAGES == ("en", "pt", "es", "fr", "de", "it")


def test_first_n_and_region_suffix() -> None:
    assert sentences.load("pt-BR", 3) == sentences.load("pt")[:3]
    assert sentences.load("de", 1) == ["Der Hund schläft unter dem großen Tisch."]


def test_unknown_language_names_the_supported_ones() -> None:
    with pytest.raises(InvalidInputError, match=r"'nl'.*en, pt, es, fr, de, it"):
        sentences.load("nl")
    with pytest.raises(InvalidInputError, match="give 1 to 20"):
        sentences.load("en", 21)
    with pytest.raises(InvalidInputError, match="give 1 to 20"):
        sentences.load("en", 0)
