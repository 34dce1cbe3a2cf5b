"""XttsEngine on the tiny model, text splitting, language codes and quality profiles (no Ray).

A lone request decodes as a batch of one (:func:`synthesize`), as the TTS replica decodes it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from benchmarks.engine_batch import stream_batch, synthesize_batch
from serve_app.speech.engine import PIECE_GAP_S, EngineRequest, VoiceLatents, XttsEngine
from serve_app.speech.profiles import PROFILES, SamplingParams, resolve_params
from serve_app.speech.text import CHAR_LIMITS, normalise_language, split_text
from tests.serve_app.coqui_reference import coqui_synthesize
from voice_core.errors import InvalidInputError

TEXT = "Hello there, world."
LONG_TEXT = (
    "The first sentence opens the story and sets the scene for everything that follows later on. "
    "A second sentence adds detail about the weather, which was grey and windy all afternoon long. "
    "Then a third one describes the harbour, its boats, its gulls and the smell of salt in the air. "
    "The fourth sentence brings in a visitor who walks slowly along the quay looking for a friend. "
    "In the fifth, the friend finally appears, waving from the deck of a small blue fishing boat. "
    "The sixth and last sentence closes the scene as the two of them laugh and head into town."
)
MODEL_LANGUAGES = ["en", "pt", "es", "fr", "de", "it", "zh-cn"]


def synthesize(engine: XttsEngine, text: str, voice: VoiceLatents, params: SamplingParams, seed: int) -> np.ndarray:
    """English ``text`` decoded alone: a batch of one."""
    [audio] = synthesize_batch(engine, [EngineRequest(text, "en", voice, params, seed)])
    return audio


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> XttsEngine:
    from voice_core.xtts_model import load_xtts

    model, report = load_xtts(tiny_model_dir, device="cpu")
    return XttsEngine(model, report)


@pytest.fixture(scope="module")
def voice(engine: XttsEngine) -> VoiceLatents:
    latents = engine.builtin_voice(engine.speakers[0])
    assert latents is not None
    return latents


@pytest.fixture(scope="module")
def balanced_seed1(engine: XttsEngine, voice: VoiceLatents) -> np.ndarray:
    """The reference synthesis most tests compare against (balanced profile, seed 1)."""
    return synthesize(engine, TEXT, voice, resolve_params("balanced"), 1)


@pytest.fixture(scope="module")
def balanced_seed2(engine: XttsEngine, voice: VoiceLatents) -> np.ndarray:
    return synthesize(engine, TEXT, voice, resolve_params("balanced"), 2)


# --- engine -------------------------------------------------------------------------------------


def test_synthesis_is_mono_float_audio(engine: XttsEngine, balanced_seed1: np.ndarray) -> None:
    assert engine.sample_rate == 24000
    assert balanced_seed1.dtype == np.float32 and balanced_seed1.ndim == 1
    assert len(balanced_seed1) > engine.sample_rate // 2
    assert np.all(np.isfinite(balanced_seed1)) and np.abs(balanced_seed1).max() > 0


def test_same_seed_gives_identical_audio(engine: XttsEngine, voice: VoiceLatents, balanced_seed1: np.ndarray) -> None:
    again = synthesize(engine, TEXT, voice, resolve_params("balanced"), 1)
    np.testing.assert_array_equal(again, balanced_seed1)


def test_different_seed_samples_different_audio(balanced_seed1: np.ndarray, balanced_seed2: np.ndarray) -> None:
    n = min(len(balanced_seed1), len(balanced_seed2))
    assert not np.allclose(balanced_seed1[:n], balanced_seed2[:n], atol=1e-4)


def test_greedy_decoding_ignores_the_seed(engine: XttsEngine, voice: VoiceLatents) -> None:
    greedy = resolve_params("balanced", {"do_sample": False})
    first = synthesize(engine, TEXT, voice, greedy, 1)
    second = synthesize(engine, TEXT, voice, greedy, 2)
    np.testing.assert_array_equal(first, second)


def test_stream_joined_matches_whole(engine: XttsEngine, voice: VoiceLatents, balanced_seed1: np.ndarray) -> None:
    request = EngineRequest(TEXT, "en", voice, resolve_params("balanced"), 1, stream_unit="tokens")
    chunks = [audio for _, audio in stream_batch(engine, [request])]
    joined = np.concatenate(chunks)
    assert len(chunks) > 1, "the tiny model makes ~80 audio tokens: several 20-token chunks"
    assert len(joined) == len(balanced_seed1)
    # Same tokens, so the same audio; only around chunk seams does the stream differ, where coqui
    # decodes a prefix and cross-fades 1024 samples into the next chunk.
    seams = np.cumsum([len(c) for c in chunks])[:-1]
    away_from_seams = np.ones(len(joined), dtype=bool)
    for seam in seams:
        away_from_seams[max(0, seam - 2048) : seam + 2048] = False
    np.testing.assert_allclose(joined[away_from_seams], balanced_seed1[away_from_seams], atol=1e-4)
    assert np.abs(joined - balanced_seed1).max() < 0.1 * np.abs(balanced_seed1).max()


def test_long_text_is_split_and_spoken_in_order(engine: XttsEngine, voice: VoiceLatents) -> None:
    params = resolve_params("balanced")
    pieces = engine.pieces(LONG_TEXT, "en", params)
    assert len(pieces) > 1
    audio = synthesize(engine, LONG_TEXT, voice, params, 3)
    # Piece by piece, one generator for all of them: coqui's unbatched inference, bit for bit.
    np.testing.assert_array_equal(audio, coqui_synthesize(engine, EngineRequest(LONG_TEXT, "en", voice, params, 3)))
    # Each piece is synthesised on its own, in reading order, with a silent gap between pieces.
    gap = int(PIECE_GAP_S * engine.sample_rate)
    first_piece = synthesize(engine, pieces[0], voice, params, 3)
    np.testing.assert_array_equal(audio[: len(first_piece)], first_piece)
    assert not audio[len(first_piece) : len(first_piece) + gap].any()


def test_concurrent_threads_match_sequential_runs(
    engine: XttsEngine, voice: VoiceLatents, balanced_seed1: np.ndarray, balanced_seed2: np.ndarray
) -> None:
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(seed: int) -> None:
        try:
            start.wait(timeout=30)
            results[seed] = synthesize(engine, TEXT, voice, resolve_params("balanced"), seed)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    # Generation is serialised by the engine's lock, so each thread gets its own seed's audio. It is
    # not bit-identical to the main-thread runs: torch sizes its intra-op (OpenMP) team per calling
    # thread, which changes float reduction order (seen in CI: max difference 3e-8). A request that
    # leaked into the other's generation would differ far beyond the tolerance, as the two seeds do
    # (about 7e-3 with the tiny model's random weights).
    assert np.abs(balanced_seed1[: len(balanced_seed2)] - balanced_seed2[: len(balanced_seed1)]).max() > 1e-3
    np.testing.assert_allclose(results[1], balanced_seed1, rtol=0, atol=1e-5)
    np.testing.assert_allclose(results[2], balanced_seed2, rtol=0, atol=1e-5)


def test_compute_latents_shapes(engine: XttsEngine, voice: VoiceLatents, speech_wav: Path) -> None:
    from voice_core.decode import decode_audio

    reference = decode_audio(speech_wav, 22050)
    one = engine.compute_latents([reference])
    two = engine.compute_latents([reference, reference[: len(reference) // 2]])
    for latents in (one, two):
        # Same shapes as the model's built-in speakers, which inference is known to accept.
        assert latents.gpt_cond_latent.shape == voice.gpt_cond_latent.shape
        assert latents.speaker_embedding.shape == voice.speaker_embedding.shape
        assert latents.gpt_cond_latent.device.type == "cpu"
    assert voice.gpt_cond_latent.shape[-1] == engine.model.config.model_args.gpt_n_model_channels
    # Speaker embeddings of several references are averaged, so a second, different file changes it.
    assert not np.allclose(one.speaker_embedding.numpy(), two.speaker_embedding.numpy())


def test_engine_rejects_unknown_language_and_empty_text(engine: XttsEngine, voice: VoiceLatents) -> None:
    with pytest.raises(InvalidInputError, match="'xx' is not supported"):
        engine.items(EngineRequest(TEXT, "xx", voice, resolve_params("balanced"), 1))
    with pytest.raises(InvalidInputError, match="empty"):
        engine.items(EngineRequest("   \n\n  ", "en", voice, resolve_params("balanced"), 1))
    with pytest.raises(InvalidInputError, match="unknown stream unit"):
        engine.items(EngineRequest(TEXT, "en", voice, resolve_params("balanced"), 1, stream_unit="words"))


# --- text -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [("pt-BR", "pt"), ("en_US", "en"), ("EN", "en"), (" fr ", "fr"), ("zh-CN", "zh-cn"), ("zh", "zh-cn")],
)
def test_normalise_language(code: str, expected: str) -> None:
    assert normalise_language(code, MODEL_LANGUAGES) == expected


def test_unknown_language_lists_the_supported_ones() -> None:
    with pytest.raises(InvalidInputError) as info:
        normalise_language("xx", MODEL_LANGUAGES)
    message = str(info.value)
    assert "'xx'" in message
    assert all(language in message for language in MODEL_LANGUAGES)


@pytest.mark.parametrize("limit", [40, 80, None])
def test_split_text_respects_limit_and_keeps_every_word_in_order(limit: int | None) -> None:
    pieces = split_text(LONG_TEXT, "en", limit)
    assert len(pieces) > 1
    assert all(0 < len(piece) <= (limit or CHAR_LIMITS["en"]) for piece in pieces)
    assert " ".join(pieces).split() == LONG_TEXT.split()


def test_split_text_packs_sentences_and_wraps_long_ones() -> None:
    assert split_text("One. Two. Three.", "en", 250) == ["One. Two. Three."]
    long_sentence = "word " * 100  # 500 characters, no sentence end
    pieces = split_text(long_sentence, "pt")
    assert all(len(piece) <= CHAR_LIMITS["pt"] for piece in pieces)
    assert " ".join(pieces).split() == long_sentence.split()
    assert split_text("First clause, second clause; third.", "en", 20) == [
        "First clause,",
        "second clause;",
        "third.",
    ]


def test_split_text_drops_only_whitespace() -> None:
    assert split_text("  \n\n ", "en") == []
    assert split_text("A.\n\n\nB?  C!", "en", 3) == ["A.", "B?", "C!"]


# --- profiles -------------------------------------------------------------------------------------


def test_resolve_params_applies_overrides_on_the_profile() -> None:
    params = resolve_params("fast", {"temperature": 0.3, "speed": 1.5, "top_k": None})
    assert params.temperature == 0.3 and params.speed == 1.5
    assert params.top_k == PROFILES["fast"].top_k  # None means "not set"
    assert params.split_chars == PROFILES["fast"].split_chars
    assert PROFILES["fast"].temperature == 0.65  # the profile itself is unchanged
    assert resolve_params("balanced") == PROFILES["balanced"]


def test_a_vanishing_temperature_is_refused() -> None:
    """5e-324 passed ``gt=0`` and made the sampler's softmax NaN (a 500 found by schemathesis)."""
    with pytest.raises(InvalidInputError, match="temperature 5e-324 is too small"):
        resolve_params("balanced", {"temperature": 5e-324})
    assert resolve_params("balanced", {"temperature": 0.01}).temperature == 0.01


def test_resolve_params_rejects_unknown_profile_and_override() -> None:
    with pytest.raises(InvalidInputError, match=r"unknown quality profile 'turbo'.*ultra_quality"):
        resolve_params("turbo")
    with pytest.raises(InvalidInputError, match="stream_chunk_tokens"):
        resolve_params("balanced", {"stream_chunk_tokens": 5})
    with pytest.raises(InvalidInputError, match="beam_size"):
        resolve_params("balanced", {"beam_size": 2})
