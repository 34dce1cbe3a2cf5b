"""The evaluation sentences: 20 short, phonetically varied sentences per supported language.

The sentences were written for this project (plus the English pangram "The quick brown fox jumps over
the lazy dog"), so they carry no licence restrictions. They ship as package data, one sentence a line,
in ``voice_eval/sentences/<language>.txt``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from voice_core.errors import InvalidInputError
from voice_eval.asr import language_code

LANGUAGES = ("en", "pt", "es", "fr", "de", "it")
"""Languages with an evaluation set (the languages the service's model speaks)."""


@cache
def _read(code: str) -> tuple[str, ...]:
    text = resources.files(__package__).joinpath(f"{code}.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def load(language: str, n: int | None = None) -> list[str]:
    """The first ``n`` evaluation sentences of ``language`` (all of them when ``n`` is ``None``).

    Args:
        language: a language code; region suffixes are accepted (``pt-BR`` reads ``pt``).
        n: how many sentences, at most the set's size.

    Returns:
        The sentences in their fixed order.

    Raises:
        InvalidInputError: the language has no set, or ``n`` is not between 1 and the set's size.
    """
    code = language_code(language)
    if code not in LANGUAGES:
        raise InvalidInputError(f"no evaluation sentences for language {language!r}; supported: {', '.join(LANGUAGES)}")
    sentences = _read(code)
    if n is not None and not 1 <= n <= len(sentences):
        raise InvalidInputError(f"n={n} sentences asked for {code!r}; give 1 to {len(sentences)}")
    return list(sentences if n is None else sentences[:n])
