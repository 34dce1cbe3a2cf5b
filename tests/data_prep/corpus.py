"""Test recordings made with espeak-ng: one main voice, a second voice, noise and broken files."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.conftest import espeak

SAMPLE_RATE = 22050

MAIN_A = [
    "The weather was warm and sunny all afternoon.",
    "She opened the window to let in some fresh air.",
    "We will meet at the library after lunch.",
    "My brother bought a new bicycle last week.",
    "Please put the books back on the shelf.",
    "The children played in the garden until dinner.",
]
MAIN_B = [
    "He drank a cup of hot tea before going to bed.",
    "They walked along the river and talked about music.",
    "I forgot my umbrella at the office today.",
    "The old man sat quietly on the wooden bench.",
]
OTHER = [
    "Nobody knew where the old map had been hidden.",
    "The garden gate was painted bright green.",
]
MORE = [
    "The coffee shop on the corner opens early.",
    "Our neighbours have a friendly black dog.",
]
PAUSES_S = (0.6, 0.8, 0.7, 0.9, 0.65, 0.75)


def speak_recording(
    path: Path, sentences: list[str], voice: str = "en-us", lead_s: float = 0.4, seed: int = 0
) -> tuple[Path, list[tuple[float, float]]]:
    """Speak sentences one by one, join them with pauses over a -60 dBFS noise floor, write ``path``.

    Returns:
        The path and where each sentence is audible, ``(start_s, end_s)`` in the recording.
    """
    pieces, spans, cursor = [np.zeros(int(lead_s * SAMPLE_RATE), np.float32)], [], lead_s
    with tempfile.TemporaryDirectory() as tmp:
        for index, sentence in enumerate(sentences):
            import soundfile

            wav, rate = soundfile.read(espeak(Path(tmp) / f"{index}.wav", sentence, voice), dtype="float32")
            assert rate == SAMPLE_RATE
            pieces.append(wav)
            audible = np.flatnonzero(np.abs(wav) > 0.01)  # espeak pads its files with silence
            spans.append((cursor + audible[0] / SAMPLE_RATE, cursor + audible[-1] / SAMPLE_RATE))
            cursor += wav.size / SAMPLE_RATE
            pause = np.zeros(int(PAUSES_S[index % len(PAUSES_S)] * SAMPLE_RATE), np.float32)
            pieces.append(pause)
            cursor += pause.size / SAMPLE_RATE
    audio = np.concatenate(pieces)
    audio = audio + 1e-3 * np.random.default_rng(seed).standard_normal(audio.size).astype(np.float32)
    write(path, audio)
    return path, spans


def write(path: Path, audio: np.ndarray) -> Path:
    """Write mono audio at 22.05 kHz; the format follows the suffix (wav PCM16, flac)."""
    import soundfile

    subtype = "PCM_16"
    soundfile.write(str(path), np.clip(audio, -1, 1), SAMPLE_RATE, subtype=subtype)
    return path


@dataclass
class Corpus:
    """The input directory and what is known about it."""

    root: Path
    texts: dict[str, list[str]] = field(default_factory=dict)
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def make_corpus(root: Path) -> Corpus:
    """The standard input directory: main voice (wav + flac), a second voice, noise, broken files."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(root)
    for stem, name, sentences, voice in (
        ("main_a", "main_a.wav", MAIN_A, "en-us"),
        ("main_b", "main_b.flac", MAIN_B, "en-us"),
        ("other", "other.wav", OTHER, "en-us+f3"),
    ):
        _, corpus.spans[stem] = speak_recording(root / name, sentences, voice, seed=len(corpus.texts))
        corpus.texts[stem] = sentences
    noise = 0.1 * np.random.default_rng(7).standard_normal(4 * SAMPLE_RATE).astype(np.float32)
    write(root / "noise.wav", noise)
    (root / "broken.wav").write_bytes(np.random.default_rng(3).bytes(20_000))
    (root / "notes.txt").write_text("not audio\n")
    return corpus
