"""The text normaliser and the error rates built on it (no models)."""

from __future__ import annotations

import jiwer
import pytest

from voice_core.errors import InvalidInputError
from voice_eval.asr import error_rates
from voice_eval.normalize import normalize_text

TEXT = "Hello, World! It's 9 o'clock; the train leaves at 10.30 from platform 21st-B."
# What an ASR model plausibly writes for the same speech: other case, other punctuation, numbers spelled.
HEARD = "hello world. its nine oclock, the Train leaves at ten point three zero from platform twenty-first B"


def test_case_and_punctuation_only_differences_score_zero() -> None:
    rates = error_rates(TEXT, HEARD, "en")
    assert rates.wer == 0.0
    assert rates.cer == 0.0
    assert rates.reference_normalized == rates.transcript_normalized


def test_without_normalisation_the_same_pair_scores_errors() -> None:
    # The raw strings differ in almost every token: the 0 above is the normaliser's work.
    assert jiwer.wer(TEXT, HEARD) > 0.5
    assert normalize_text(TEXT) != TEXT
    assert normalize_text(HEARD) == normalize_text(TEXT)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello,   WORLD!!", "hello world"),
        ("don't stop", "dont stop"),
        ("well-known café", "well known café"),
        ("1,200 people", "one thousand two hundred people"),
        ("3.5 km", "three point five km"),
        ("the 21st", "the twenty first"),
        ("«Quoted» — text…", "quoted text"),
        ("", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_other_languages_keep_digits_on_both_sides() -> None:
    assert normalize_text("Es ist 9 Uhr.", "de") == "es ist 9 uhr"


def test_real_differences_still_count() -> None:
    rates = error_rates("the cat sat on the mat", "the cat sat on a hat", "en")
    assert rates.wer == pytest.approx(2 / 6)
    assert 0 < rates.cer < rates.wer
    assert error_rates("the cat sat", "", "en").wer == 1.0


def test_text_without_words_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="no words"):
        error_rates("?!", "anything", "en")
