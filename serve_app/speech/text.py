"""Text handling for synthesis: language codes and splitting long text into model-sized pieces."""

from __future__ import annotations

import re
import textwrap

from voice_core.errors import InvalidInputError

# Characters per piece XTTS handles well, per language (the limits coqui's tokenizer warns at).
CHAR_LIMITS: dict[str, int] = {
    "en": 250, "de": 253, "fr": 273, "es": 239, "it": 213, "pt": 203, "pl": 224, "zh-cn": 82, "ar": 166,
    "cs": 186, "ru": 182, "nl": 251, "tr": 226, "ja": 71, "hu": 224, "ko": 95, "hi": 150,
}  # fmt: skip
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+|\n{2,}")


def normalise_language(code: str, supported: list[str]) -> str:
    """Map a language code such as ``pt-BR``, ``en_US`` or ``zh-CN`` to the model's code.

    Args:
        code: what the caller sent.
        supported: the model's languages (``config.languages``).

    Returns:
        The matching code from ``supported``.

    Raises:
        InvalidInputError: the language is not supported; the message lists the supported ones.
    """
    cleaned = code.strip().replace("_", "-").lower()
    candidates = [cleaned, cleaned.split("-")[0]]
    if cleaned.startswith("zh"):
        candidates.insert(0, "zh-cn")
    for candidate in candidates:
        if candidate in supported:
            return candidate
    raise InvalidInputError(
        f"language {code!r} is not supported by this model; use one of: {', '.join(supported)} "
        "(region suffixes such as pt-BR are accepted)"
    )


def split_text(text: str, language: str, limit: int | None = None) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` characters, at sentence ends where possible.

    Sentences are packed together while they fit; a sentence longer than the limit is wrapped at
    spaces. Order is preserved and no text is dropped (only surrounding whitespace).

    Args:
        text: the input text.
        language: model language code (selects the default limit).
        limit: characters per piece; defaults to :data:`CHAR_LIMITS` for the language (250 if unknown).

    Returns:
        Non-empty pieces in reading order.
    """
    limit = limit or CHAR_LIMITS.get(language, 250)
    pieces: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE_END.split(text)):
        if not sentence:
            continue
        parts = [sentence] if len(sentence) <= limit else _wrap(sentence, limit)
        for part in parts:
            if pieces and len(pieces[-1]) + 1 + len(part) <= limit:
                pieces[-1] = f"{pieces[-1]} {part}"
            else:
                pieces.append(part)
    return pieces


def _wrap(sentence: str, limit: int) -> list[str]:
    # Prefer clause boundaries, then spaces; textwrap breaks words only if one is longer than the limit.
    clauses = re.split(r"(?<=[,;:])\s+", sentence)
    out: list[str] = []
    for clause in clauses:
        for line in textwrap.wrap(clause, width=limit, break_on_hyphens=False) or [clause]:
            if out and len(out[-1]) + 1 + len(line) <= limit:
                out[-1] = f"{out[-1]} {line}"
            else:
                out.append(line)
    return out
