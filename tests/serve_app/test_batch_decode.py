"""Batched decoding on the tiny model (no Ray): per request it gives what unbatched decoding gives.

The references are coqui's own unbatched ``Xtts.inference`` and ``inference_stream``
(:mod:`tests.serve_app.coqui_reference`). Batched rows go through stacked, padded matrix products, so their audio may
differ from the references by float rounding only (seen: ~6e-8); a request that got another's tokens,
voice or random numbers would differ by far more (two seeds differ by ~7e-3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.engine_batch import stream_batch, synthesize_batch
from serve_app.speech.engine import EngineRequest, VoiceLatents, XttsEngine
from serve_app.speech.profiles import SamplingParams, resolve_params
from tests.serve_app.coqui_reference import coqui_stream, coqui_synthesize

ROUNDING = 1e-5
GREEDY = resolve_params("balanced", {"do_sample": False})
SAMPLED = resolve_params("balanced")


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> XttsEngine:
    from voice_core.xtts_model import load_xtts

    model, report = load_xtts(tiny_model_dir, device="cpu")
    return XttsEngine(model, report)


@pytest.fixture(scope="module")
def voices(engine: XttsEngine) -> list[VoiceLatents]:
    found = [engine.builtin_voice(name) for name in engine.speakers[:3]]
    assert all(v is not None for v in found)
    return found  # type: ignore[return-value]


@pytest.fixture(scope="module")
def mixed(voices: list[VoiceLatents]) -> list[EngineRequest]:
    """Three requests with different texts (lengths), languages and voices."""
    return [
        EngineRequest("Hello there, world.", "en", voices[0], GREEDY, seed=1),
        EngineRequest("Olá, tudo bem com você? Estou bem, obrigado.", "pt", voices[1], GREEDY, seed=2),
        EngineRequest("Uno dos.", "es", voices[2], GREEDY, seed=3),
    ]


def logits_processors(params: SamplingParams) -> Any:
    """The Hugging Face processors ``generate`` applies for these parameters, in its order.

    The reference :class:`BatchSampler`'s scores are checked against, row by row.
    """
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if params.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(float(params.repetition_penalty)))
    if params.do_sample:
        if params.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k != 0:
            processors.append(TopKLogitsWarper(top_k=params.top_k, min_tokens_to_keep=1))
        if params.top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p=params.top_p, min_tokens_to_keep=1))
    return processors


def test_batch_of_one_is_coquis_unbatched_decoding(engine: XttsEngine, mixed: list[EngineRequest]) -> None:
    for request in (mixed[0], EngineRequest(**{**mixed[1].__dict__, "params": SAMPLED})):
        [alone] = synthesize_batch(engine, [request])
        np.testing.assert_array_equal(alone, coqui_synthesize(engine, request))
    streamed = EngineRequest(**{**mixed[0].__dict__, "params": SAMPLED, "stream_unit": "tokens"})
    chunks = [audio for _, audio in stream_batch(engine, [streamed])]
    expected = list(coqui_stream(engine, streamed))
    assert len(chunks) == len(expected) > 1
    for chunk, reference in zip(chunks, expected, strict=True):
        np.testing.assert_array_equal(chunk, reference)


def test_greedy_batch_mixing_languages_and_voices_matches_unbatched(
    engine: XttsEngine, mixed: list[EngineRequest]
) -> None:
    batched = synthesize_batch(engine, mixed)
    references = [coqui_synthesize(engine, r) for r in mixed]
    for audio, reference in zip(batched, references, strict=True):
        assert audio.shape == reference.shape
        np.testing.assert_allclose(audio, reference, rtol=0, atol=ROUNDING)
    # Never mixed between requests: the three references differ far beyond the tolerance.
    assert np.abs(references[0] - references[1]).max() > 100 * ROUNDING


def test_sampled_batch_uses_each_requests_own_seed(engine: XttsEngine, voices: list[VoiceLatents]) -> None:
    requests = [EngineRequest("Hello there, world.", "en", voices[0], SAMPLED, seed=s) for s in (1, 2, 1)]
    batched = synthesize_batch(engine, requests)
    np.testing.assert_allclose(batched[0], coqui_synthesize(engine, requests[0]), rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(batched[1], coqui_synthesize(engine, requests[1]), rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(batched[2], batched[0], rtol=0, atol=ROUNDING)
    assert np.abs(batched[0] - batched[1]).max() > 100 * ROUNDING


def test_long_text_goes_through_the_batch_piece_by_piece(engine: XttsEngine, voices: list[VoiceLatents]) -> None:
    params = resolve_params("balanced", {"split_chars": 30})
    long = EngineRequest(
        "The first sentence is here. A second one follows it. And a third.", "en", voices[0], params, 5
    )
    short = EngineRequest("Hi.", "en", voices[1], params, 6)
    assert len(engine.pieces(long.text, "en", params)) == 3
    batched = synthesize_batch(engine, [long, short])
    # The long request's pieces draw from one generator in order, as its unbatched synthesis does.
    np.testing.assert_allclose(batched[0], coqui_synthesize(engine, long), rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(batched[1], coqui_synthesize(engine, short), rtol=0, atol=ROUNDING)


def test_streams_in_a_batch_get_their_own_chunks(engine: XttsEngine, voices: list[VoiceLatents]) -> None:
    fast = resolve_params("fast")  # 10-token chunks
    requests = [
        EngineRequest("Hello there, world.", "en", voices[0], SAMPLED, seed=1, stream_unit="tokens"),
        EngineRequest("Olá, tudo bem?", "pt", voices[1], fast, seed=2, stream_unit="tokens"),
        EngineRequest("Uno dos.", "es", voices[2], GREEDY, seed=3),
    ]
    got: list[list[np.ndarray]] = [[], [], []]
    for index, audio in stream_batch(engine, requests):
        got[index].append(audio)
    for request, chunks in zip(requests[:2], got[:2], strict=True):
        expected = list(coqui_stream(engine, request))
        assert len(chunks) == len(expected) > 2
        for chunk, reference in zip(chunks, expected, strict=True):
            np.testing.assert_allclose(chunk, reference, rtol=0, atol=ROUNDING)
    assert len(got[2]) == 1
    np.testing.assert_allclose(got[2][0], coqui_synthesize(engine, requests[2]), rtol=0, atol=ROUNDING)


def test_cancelled_and_early_finished_items_leave_the_others_untouched(
    engine: XttsEngine, mixed: list[EngineRequest]
) -> None:
    streamed = EngineRequest(**{**mixed[1].__dict__, "stream_unit": "tokens", "params": resolve_params("fast")})
    items = [engine.items(r)[0] for r in (mixed[0], streamed, mixed[2])]
    items[2].max_new_tokens = 12  # finishes long before the others
    events = []
    for event in engine.decode(items):
        events.append(event)
        if event.index == 1:
            items[1].cancelled.set()  # cancelled after its first chunk
    assert [e.index for e in events].count(1) == 1
    [first] = [e.audio for e in events if e.index == 0]
    np.testing.assert_allclose(first, coqui_synthesize(engine, mixed[0]), rtol=0, atol=ROUNDING)
    [short] = [e.audio for e in events if e.index == 2]
    alone = engine.items(EngineRequest(**{**mixed[2].__dict__, "max_new_tokens": 12}))
    [reference] = list(engine.decode(alone))
    np.testing.assert_allclose(short, reference.audio, rtol=0, atol=ROUNDING)
    assert len(short) < len(first)


def test_processors_follow_generate() -> None:
    names = [type(p).__name__ for p in logits_processors(SAMPLED)]
    assert names == [
        "RepetitionPenaltyLogitsProcessor",
        "TemperatureLogitsWarper",
        "TopKLogitsWarper",
        "TopPLogitsWarper",
    ]
    assert [type(p).__name__ for p in logits_processors(GREEDY)] == ["RepetitionPenaltyLogitsProcessor"]


def test_a_piece_too_long_for_the_model_is_refused_before_batching(
    engine: XttsEngine, voices: list[VoiceLatents]
) -> None:
    from voice_core.errors import InvalidInputError

    params = resolve_params("balanced", {"split_chars": 3000})
    with pytest.raises(InvalidInputError, match="lower split_chars"):
        engine.items(EngineRequest("word " * 600, "en", voices[0], params, seed=1))


def test_batch_sampler_scores_equal_the_processors_row_by_row() -> None:
    # Five rows with different parameters, including ones that skip each warper, and logits with
    # negative and positive values: each row's scores must be exactly what the HF processors give alone.
    import torch

    from serve_app.speech.sampler import BatchSampler

    params = [
        SAMPLED,
        GREEDY,
        resolve_params("balanced", {"temperature": 1.0, "top_k": 0, "top_p": 1.0}),
        resolve_params("balanced", {"temperature": 0.3, "top_k": 7, "top_p": 0.5, "repetition_penalty": 1.3}),
        resolve_params("balanced", {"top_k": 2000, "top_p": 0.99, "repetition_penalty": 1.0}),
    ]
    vocab = 1026
    source = torch.Generator().manual_seed(0)
    seen = [torch.randint(0, vocab, (n,), generator=source) for n in (3, 40, 1, 200, 12)]
    sampler = BatchSampler([(p, p.do_sample, s, None) for p, s in zip(params, seen, strict=True)], vocab, "cpu")
    for _ in range(3):
        logits = torch.randn(len(params), vocab, generator=source) * 4
        batched = sampler.scores(logits)
        for row, (p, ids) in enumerate(zip(params, seen, strict=True)):
            alone = logits_processors(p)(ids[None], logits[row : row + 1].clone())
            assert torch.equal(batched[row : row + 1], alone), p
    # Different parameters do give different scores: the comparison above is not vacuous.
    assert not torch.equal(batched[0], batched[3])


def test_batch_sampler_draws_from_each_rows_generator() -> None:
    import torch

    from serve_app.speech.sampler import BatchSampler

    vocab = 64
    logits = torch.ones(3, vocab)
    logits[1, 5] = 9.0  # the greedy row's arg-max
    rows = [
        (SAMPLED, True, torch.tensor([0]), torch.Generator().manual_seed(1)),
        (GREEDY, False, torch.tensor([0]), None),
        (SAMPLED, True, torch.tensor([0]), torch.Generator().manual_seed(1)),
    ]
    sampler = BatchSampler(rows, vocab, "cpu")
    first = sampler.choose(logits, [0, 1, 2])
    assert first[1] == 5
    assert first[0] == first[2]  # same seed, same scores: same draw
    # Drawn tokens are now seen: the greedy row's penalty moves its choice off token 5.
    assert bool(sampler.seen[1, 5]) and bool(sampler.seen[0, first[0]])
    sampler.keep(torch.tensor([1]))
    # 9 / 10 = 0.9 now scores below the unseen tokens' 1.0 (token 0 was seen from the start: 0.1).
    assert sampler.choose(logits[1:2], [0]) == [1]


def test_pool_threads_use_one_openmp_thread_and_leave_other_threads_theirs(
    engine: XttsEngine, mixed: list[EngineRequest]
) -> None:
    """Each pool thread runs its HiFiGAN call on one core; nobody else's thread count changes.

    Pool threads with the process's full OpenMP teams oversubscribed the cores, and a HiFiGAN call in
    the replica's own thread took twice as long (0.08 s against 0.04 s, tiny model) once the pool existed.
    ``torch.set_num_threads`` in a pool thread would also set the count threads started later take.
    """
    import threading

    import torch

    import serve_app.speech.batch_decode as batch_decode

    # The test process may run with one intra-op thread (the benchmark smoke tests set a one-CPU
    # replica's count), where a pool thread has one without any limit. With two, and a pool started
    # afresh, only the pool's own limit gives its threads one.
    before = torch.get_num_threads()
    earlier_pool = batch_decode._POOL
    torch.set_num_threads(2)
    batch_decode._POOL = None
    try:
        assert len(synthesize_batch(engine, mixed[:2])) == 2  # two rows: HiFiGAN runs on the pool
        pool = batch_decode._POOL
        assert pool is not None
        assert set(pool.map(lambda _: torch.get_num_threads(), range(8))) == {1}
        assert torch.get_num_threads() == 2
        later: list[int] = []
        thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert later == [2]
    finally:
        if batch_decode._POOL is not None:
            batch_decode._POOL.shutdown()
        batch_decode._POOL = earlier_pool
        torch.set_num_threads(before)
