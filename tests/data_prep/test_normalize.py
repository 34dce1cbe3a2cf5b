"""Text normalisation: numbers, dates, times, currency, percentages, abbreviations (en, pt)."""

from __future__ import annotations

import pytest

from data_prep.normalize import normalize_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I have 3 apples.", "I have three apples."),
        ("It costs $5.50 today.", "It costs five dollars and fifty cents today."),
        ("Only £1 left.", "Only one pound left."),
        ("In 1990 and 2024, not 2005.", "In nineteen ninety and twenty twenty-four, not two thousand and five."),
        ("About 1,500 people, 50% of them.", "About one thousand five hundred people, fifty percent of them."),
        ("Mr. Smith met Dr. Jones.", "Mister Smith met Doctor Jones."),
        ("She came 2nd on the 21st.", "She came second on the twenty-first."),
        ("Born 2024-01-15 at 10:30.", "Born January fifteenth, twenty twenty-four at ten thirty."),
        ("On 12/25/2023 at 9:00.", "On December twenty-fifth, twenty twenty-three at nine o'clock."),
        ("It is 3.25 km and -5 degrees.", "It is three point two five km and minus five degrees."),
        ("Room No. 7 & more.", "Room number seven and more."),
        ("  spaced   out  ", "spaced out"),
    ],
)
def test_english(text: str, expected: str) -> None:
    assert normalize_text(text, "en") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tenho 3 maçãs.", "Tenho três maçãs."),
        ("Custa R$ 10,50 hoje.", "Custa dez reais e cinquenta centavos hoje."),
        ("Foram 1.500 pessoas.", "Foram mil e quinhentos pessoas."),
        ("Subiu 3,5% no ano.", "Subiu três vírgula cinco por cento no ano."),
        ("O Sr. Silva e a Dra. Ana.", "O Senhor Silva e a Doutora Ana."),
        ("Em 15/01/2024 às 10:30.", "Em quinze de janeiro de dois mil e vinte e quatro às dez e trinta."),
        ("Na 2ª vez, no 1º dia.", "Na segunda vez, no primeiro dia."),
        ("A casa nº 5.", "A casa número cinco."),
    ],
)
def test_portuguese(text: str, expected: str) -> None:
    assert normalize_text(text, "pt") == expected


def test_unknown_language_only_tidies_spaces() -> None:
    assert normalize_text(" Ich habe  3 Äpfel ", "de") == "Ich habe 3 Äpfel"


def test_words_without_numbers_are_untouched() -> None:
    text = "Well, that's it: nothing to change here!"
    assert normalize_text(text, "en") == text
