"""Spelling out transcripts for TTS training: numbers, simple dates, times, currency, abbreviations.

English (``en``) and Brazilian Portuguese (``pt``, num2words ``pt_BR``) are supported; other
languages only get their whitespace tidied. Case and punctuation are kept. The rules are
deliberately simple and ordered (dates before times before currency before plain numbers), which
covers what a recogniser writes for ordinary speech.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from num2words import num2words

_MONTHS = {
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    "pt": [
        "janeiro",
        "fevereiro",
        "março",
        "abril",
        "maio",
        "junho",
        "julho",
        "agosto",
        "setembro",
        "outubro",
        "novembro",
        "dezembro",
    ],
}

_ABBREVIATIONS = {
    "en": {
        "Mr.": "Mister",
        "Mrs.": "Missus",
        "Ms.": "Miss",
        "Dr.": "Doctor",
        "Prof.": "Professor",
        "Jr.": "Junior",
        "Sr.": "Senior",
        "St.": "Saint",
        "vs.": "versus",
        "etc.": "et cetera",
        "e.g.": "for example",
        "i.e.": "that is",
        "approx.": "approximately",
    },
    "pt": {
        "Sr.": "Senhor",
        "Sra.": "Senhora",
        "Srta.": "Senhorita",
        "Dr.": "Doutor",
        "Dra.": "Doutora",
        "Prof.": "Professor",
        "Profa.": "Professora",
        "Av.": "Avenida",
        "pág.": "página",
        "etc.": "et cetera",
        "nº": "número",
        "n.º": "número",
    },
}

# symbol -> (singular, plural, minor singular, minor plural)
_CURRENCIES = {
    "en": {
        "$": ("dollar", "dollars", "cent", "cents"),
        "US$": ("dollar", "dollars", "cent", "cents"),
        "€": ("euro", "euros", "cent", "cents"),
        "£": ("pound", "pounds", "penny", "pence"),
        "R$": ("real", "reais", "centavo", "centavos"),
    },
    "pt": {
        "R$": ("real", "reais", "centavo", "centavos"),
        "US$": ("dólar", "dólares", "centavo", "centavos"),
        "$": ("dólar", "dólares", "centavo", "centavos"),
        "€": ("euro", "euros", "cêntimo", "cêntimos"),
        "£": ("libra", "libras", "centavo", "centavos"),
    },
}

_WORDS = {
    "en": {"and": "and", "point": "point", "percent": "percent", "minus": "minus"},
    "pt": {"and": "e", "point": "vírgula", "percent": "por cento", "minus": "menos"},
}

_NUM2WORDS_LANG = {"en": "en", "pt": "pt_BR"}


def supported(language: str) -> bool:
    """Whether ``language`` has normalisation rules (``en``, ``pt``)."""
    return language in _NUM2WORDS_LANG


def cardinal(number: int | Decimal, language: str) -> str:
    """Spell a number (integer or decimal) in words."""
    words = num2words(number, lang=_NUM2WORDS_LANG[language])
    # num2words writes "one thousand, five hundred"; speech has no comma there.
    return words.replace(",", "") if language == "en" else words


def ordinal(number: int, language: str, feminine: bool = False) -> str:
    """Spell an ordinal (``21st`` -> ``twenty-first``; ``2ª`` -> ``segunda``)."""
    words = num2words(number, lang=_NUM2WORDS_LANG[language], to="ordinal").replace(",", "")
    if language == "pt" and feminine:
        words = " ".join(word[:-1] + "a" if word.endswith("o") else word for word in words.split())
    return words


def _year(number: int, language: str) -> str:
    if language == "en" and (1100 <= number <= 1999 or 2010 <= number <= 2099):
        return num2words(number, lang="en", to="year")
    return cardinal(number, language)


def _parse_number(text: str, language: str) -> Decimal | None:
    """Read ``1,234.5`` (en) or ``1.234,5`` (pt) into a Decimal; None when it is not a number."""
    group, point = (",", ".") if language == "en" else (".", ",")
    cleaned = text.replace(group, "") if re.fullmatch(rf"\d{{1,3}}(\{group}\d{{3}})+(\{point}\d+)?", text) else text
    cleaned = cleaned.replace(point, ".")
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


def _number_words(value: Decimal, language: str) -> str:
    if value == value.to_integral_value() and "." not in str(value):
        return cardinal(int(value), language)
    whole, _, fraction = str(value).partition(".")
    digits = " ".join(cardinal(int(d), language) for d in fraction)
    return f"{cardinal(int(whole), language)} {_WORDS[language]['point']} {digits}"


def _money(amount: Decimal, symbol: str, language: str) -> str:
    major_one, major_many, minor_one, minor_many = _CURRENCIES[language][symbol]
    whole = int(amount)
    cents = int(((amount - whole) * 100).to_integral_value())
    parts = []
    if whole or not cents:
        parts.append(f"{cardinal(whole, language)} {major_one if whole == 1 else major_many}")
    if cents:
        parts.append(f"{cardinal(cents, language)} {minor_one if cents == 1 else minor_many}")
    return f" {_WORDS[language]['and']} ".join(parts)


def _date(day: int, month: int, year: int, language: str) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    name = _MONTHS[language][month - 1]
    if language == "en":
        return f"{name} {ordinal(day, 'en')}, {_year(year, 'en')}"
    day_words = "primeiro" if day == 1 else cardinal(day, "pt")
    return f"{day_words} de {name} de {cardinal(year, 'pt')}"


def _time(hours: int, minutes: int, language: str) -> str | None:
    if not (0 <= hours <= 24 and 0 <= minutes <= 59):
        return None
    if language == "en":
        if minutes == 0:
            return f"{cardinal(hours, 'en')} o'clock"
        tail = f"oh {cardinal(minutes, 'en')}" if minutes < 10 else cardinal(minutes, "en")
        return f"{cardinal(hours, 'en')} {tail}"
    if minutes == 0:
        return f"{cardinal(hours, 'pt')} horas"
    return f"{cardinal(hours, 'pt')} e {cardinal(minutes, 'pt')}"


def _sub(pattern: str, text: str, replace: Callable[[re.Match[str]], str | None]) -> str:
    def wrapped(match: re.Match[str]) -> str:
        result = replace(match)
        return match.group(0) if result is None else result

    return re.sub(pattern, wrapped, text)


def normalize_text(text: str, language: str) -> str:
    """Spell out numbers, simple dates, times, currency, percentages and abbreviations.

    Args:
        text: a transcript.
        language: ``en`` or ``pt``; other codes only get whitespace tidied.

    Returns:
        The normalised text, single-spaced.
    """
    text = " ".join(text.split())
    if not supported(language):
        return text
    for short, long in sorted(_ABBREVIATIONS[language].items(), key=lambda item: -len(item[0])):
        text = re.sub(rf"(?<![\w.]){re.escape(short)}(?=\s|$)", long, text)
    if language == "en":
        text = _sub(r"\bNo\.\s?(?=\d)", text, lambda m: "number ")
        text = _sub(r"\b(\d{4})-(\d{2})-(\d{2})\b", text, lambda m: _date(int(m[3]), int(m[2]), int(m[1]), "en"))
        text = _sub(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b", text, lambda m: _date(int(m[2]), int(m[1]), int(m[3]), "en"))
    else:
        text = _sub(r"\b(\d{4})-(\d{2})-(\d{2})\b", text, lambda m: _date(int(m[3]), int(m[2]), int(m[1]), "pt"))
        text = _sub(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b", text, lambda m: _date(int(m[1]), int(m[2]), int(m[3]), "pt"))
    text = _sub(r"\b(\d{1,2}):(\d{2})\b", text, lambda m: _time(int(m[1]), int(m[2]), language))
    symbols = "|".join(re.escape(s) for s in sorted(_CURRENCIES[language], key=len, reverse=True))
    number = r"\d[\d.,]*\d|\d"

    def money(match: re.Match[str]) -> str | None:
        amount = _parse_number(match["amount"], language)
        return None if amount is None else _money(amount, match["symbol"], language)

    text = _sub(rf"(?P<symbol>{symbols})\s?(?P<amount>{number})", text, money)

    def percent(match: re.Match[str]) -> str | None:
        value = _parse_number(match[1], language)
        return None if value is None else f"{_number_words(value, language)} {_WORDS[language]['percent']}"

    text = _sub(rf"({number})\s?%", text, percent)
    if language == "en":
        text = _sub(r"\b(\d+)(st|nd|rd|th)\b", text, lambda m: ordinal(int(m[1]), "en"))
    else:
        text = _sub(r"\b(\d+)\s?([ºª°])", text, lambda m: ordinal(int(m[1]), "pt", feminine=m[2] == "ª"))
    text = text.replace("&", f" {_WORDS[language]['and']} ")

    def plain(match: re.Match[str]) -> str | None:
        value = _parse_number(match[0], language)
        if value is None:
            return None
        if re.fullmatch(r"\d{4}", match[0]):
            return _year(int(value), language)
        return _number_words(value, language)

    text = _sub(r"(?<!\S)-(?=\d)", text, lambda m: f"{_WORDS[language]['minus']} ")
    text = _sub(rf"(?<!\w){number}", text, plain)
    return " ".join(text.split())
