"""The metrics on real speech: a neural voice, espeak-ng speakers, damaged clips and the random-weight model.

Each test would fail with a broken metric: a WER that ignored the transcript could not separate the
Piper voice from reversed speech, and a constant similarity would give no margin between speakers.
Figures are printed (``pytest -s``) so docs/quality.md can quote them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.voice_eval.conftest import ESPEAK_VOICES, PIPER, SENTENCES, Corpus, babble, save
from voice_eval import asr, similarity
from voice_eval.__main__ import main
from voice_eval.score import ClipScore, score_clip

pytestmark = pytest.mark.slow

SPEAKERS = [PIPER, *ESPEAK_VOICES]
MIN_SPEAKER_MARGIN = 0.08


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("whisper-cache")


@pytest.fixture(scope="module")
def whisper(cache_dir: Path):
    return asr.load_asr("tiny.en", str(cache_dir))[0]


def _score(clip: Path | bytes, text: str, reference: Path, cache_dir: Path) -> ClipScore:
    result = score_clip(clip, text, "en", reference, asr_model="tiny.en", cache_dir=cache_dir)
    print(f"{getattr(clip, 'name', 'bytes')}: wer={result.wer:.3f} flags={result.flags} heard={result.transcript!r}")
    return result


def test_neural_voice_is_intelligible(corpus: Corpus, whisper) -> None:
    wers = []
    for index, text in enumerate(SENTENCES):
        heard = asr.transcribe(whisper, corpus.audio(PIPER, index), "en")
        wers.append(asr.error_rates(text, heard, "en").wer)
        print(f"piper {index}: wer={wers[-1]:.3f} heard={heard!r}")
    print("piper WER per sentence:", [round(w, 3) for w in wers], "mean", round(float(np.mean(wers)), 3))
    assert max(wers) <= 0.10


def test_same_speaker_scores_higher_than_other_speakers(corpus: Corpus) -> None:
    encoder = similarity.load_encoder()
    embeddings = {
        speaker: [encoder.embed(corpus.audio(speaker, i)) for i in range(len(SENTENCES))] for speaker in SPEAKERS
    }
    same, other = [], []
    for ref_speaker in SPEAKERS:
        reference = embeddings[ref_speaker][0]
        for speaker in SPEAKERS:
            values = [float(vector @ reference) for vector in embeddings[speaker][1:]]
            (same if speaker == ref_speaker else other).extend(values)
            print(f"reference {ref_speaker:9s} clips {speaker:9s}", np.round(values, 3).tolist())
    margin = min(same) - max(other)
    print(
        f"same speaker {min(same):.3f}..{max(same):.3f} (mean {np.mean(same):.3f}); "
        f"other speakers {min(other):.3f}..{max(other):.3f} (mean {np.mean(other):.3f}); margin {margin:.3f}"
    )
    assert margin >= MIN_SPEAKER_MARGIN
    # The function the score uses gives the same cosine as the embeddings above.
    direct = similarity.speaker_similarity(encoder, corpus.audio(PIPER, 1), corpus.audio(PIPER, 0))
    assert direct == pytest.approx(float(embeddings[PIPER][1] @ embeddings[PIPER][0]), abs=1e-5)


def test_good_clip_scores_well_end_to_end(corpus: Corpus, cache_dir: Path) -> None:
    result = _score(corpus.clips[PIPER][4], SENTENCES[4], corpus.clips[PIPER][0], cache_dir)
    assert result.wer <= 0.10
    assert result.flags == []
    assert result.similarity > 0.8
    assert result.mos is None
    assert result.models["asr"] == "faster-whisper tiny.en"


def test_reversed_speech_and_noise_are_unintelligible(corpus: Corpus, cache_dir: Path, tmp_path: Path) -> None:
    audio = corpus.audio(PIPER, 1)
    reference = corpus.clips[PIPER][0]
    reversed_clip = save(tmp_path / "reversed.wav", audio[::-1].copy())
    noise = save(tmp_path / "noise.wav", 0.1 * np.random.default_rng(1).standard_normal(audio.size))
    results = [_score(clip, SENTENCES[1], reference, cache_dir) for clip in (reversed_clip, noise)]
    for result in results:
        assert result.wer >= 0.8
        assert "unintelligible" in result.flags
    silent = _score(save(tmp_path / "silent.wav", np.zeros(audio.size)), SENTENCES[1], reference, cache_dir)
    assert (silent.wer, silent.similarity, silent.transcript) == (1.0, 0.0, "")
    assert silent.flags == ["silent", "unintelligible"]
    # Reversal keeps the voice's spectrum (Resemblyzer still hears the speaker); noise has no voice.
    print(f"similarity to the reference: reversed {results[0].similarity:.3f}, noise {results[1].similarity:.3f}")
    assert results[1].similarity < 0.8


def test_half_a_clip_is_truncated_and_babble_after_it_is_runaway(
    corpus: Corpus, cache_dir: Path, tmp_path: Path
) -> None:
    audio = corpus.audio(PIPER, 2)
    reference = corpus.clips[PIPER][0]
    half = _score(save(tmp_path / "half.wav", audio[: audio.size // 2]), SENTENCES[2], reference, cache_dir)
    assert "truncated" in half.flags
    padded = np.concatenate([audio, babble(5.0, level=0.5)])
    runaway = _score(save(tmp_path / "runaway.wav", padded), SENTENCES[2], reference, cache_dir)
    assert "runaway" in runaway.flags
    assert "truncated" not in runaway.flags


def test_random_weight_model_is_unintelligible(tiny_model_dir: Path, corpus: Corpus, cache_dir: Path) -> None:
    from benchmarks.engine_batch import synthesize_batch
    from serve_app.speech.engine import EngineRequest, XttsEngine
    from serve_app.speech.profiles import resolve_params
    from voice_core.encode import encode_audio
    from voice_core.xtts_model import load_xtts

    model, report = load_xtts(tiny_model_dir, device="cpu")
    engine = XttsEngine(model, report)
    voice = engine.builtin_voice(engine.speakers[0])
    assert voice is not None
    text = SENTENCES[0]
    [audio] = synthesize_batch(engine, [EngineRequest(text, "en", voice, resolve_params("balanced"), seed=1)])
    clip = encode_audio(np.asarray(audio, dtype=np.float32), engine.sample_rate, "wav")
    result = _score(clip, text, corpus.clips[PIPER][0], cache_dir)
    print(f"tiny model: {result.to_dict()}")
    assert result.wer >= 0.8
    assert "unintelligible" in result.flags


def test_score_command_json(corpus: Corpus, capsys: pytest.CaptureFixture[str], monkeypatch, cache_dir: Path) -> None:
    monkeypatch.setattr("voice_eval.score.default_cache_dir", lambda: cache_dir)
    clip, reference = corpus.clips[ESPEAK_VOICES[1]][1], corpus.clips[ESPEAK_VOICES[1]][0]
    argv = ["score", "--text", SENTENCES[1], "--language", "en", "--reference", str(reference), str(clip)]
    assert main([*argv, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {"wer", "cer", "similarity", "flags", "mos", "models"} <= record.keys()
    assert record["mos"] is None
    assert record["models"]["mos_unavailable_reason"].startswith("no MOS predictor")
    assert record["models"]["speaker_encoder"].startswith("resemblyzer")
    assert record["wer"] <= 0.2 and record["similarity"] > 0.8 and record["flags"] == []
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "WER" in text and "similarity" in text and "n/a (no MOS predictor" in text
