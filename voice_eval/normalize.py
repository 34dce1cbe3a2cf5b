"""The text normaliser applied to both the input text and the ASR transcript before WER and CER.

Both sides go through the same function, so a transcript that differs from the text only in case,
punctuation, spacing or the way a number is written ("42" against "forty-two") scores 0.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

# Digits with optional thousands separators and a decimal part ("1,200", "3.5"), and English ordinals ("21st").
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?(?![\w])")
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _inflect() -> Any:
    import inflect

    return inflect.engine()


def _spell_number(match: re.Match[str]) -> str:
    whole, decimals, ordinal = match.group(1).replace(",", ""), match.group(2), match.group(3)
    engine = _inflect()
    if ordinal and decimals is None:
        return " " + engine.number_to_words(engine.ordinal(int(whole))) + " "
    words = engine.number_to_words(int(whole))
    if decimals is not None:
        words += " point " + " ".join(engine.number_to_words(int(d)) for d in decimals)
    return " " + words + " "


def normalize_text(text: str, language: str = "en") -> str:
    """Text reduced to lowercase words separated by single spaces.

    Steps, in order: Unicode NFKC; for English, numbers written in digits become words (cardinals,
    decimals, ordinals like "21st"; other languages keep their digits, on both sides alike);
    lowercase; apostrophes are dropped inside words ("don't" → "dont"); every other punctuation
    or symbol character becomes a space (so "well-known" is two words, as Whisper often writes it);
    whitespace collapses.

    Args:
        text: the input text or a transcript.
        language: the text's language code (only ``en`` spells numbers).

    Returns:
        The normalised text; empty when ``text`` holds no letters or digits.
    """
    text = unicodedata.normalize("NFKC", text)
    if language.split("-")[0].lower() == "en":
        text = _NUMBER.sub(_spell_number, text)
    text = text.lower()
    text = re.sub(r"(?<=\w)['’](?=\w)", "", text)
    text = "".join(" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in text)
    return _SPACES.sub(" ", text).strip()
