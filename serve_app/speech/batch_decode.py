"""Batched XTTS decoding: several pieces of text, one GPT decoding loop, per-item everything else.

Plain Python (no Ray). Each item brings its own text tokens, voice, sampling parameters and random
generator; the loop runs coqui's GPT2 over all of them at once with one KV cache:

- prefixes (voice latents + text embeddings, as coqui's ``GPT.compute_embeddings`` builds them) are
  LEFT-padded and masked, so every row starts audio at the same step. XTTS's GPT2 has null position
  embeddings (text and audio positions come from their own learned tables), so padding shifts no
  position and a padded row computes what it computes alone, up to float reduction order;
- each row's scores go through the arithmetic of the Hugging Face processors ``generate`` uses for
  one sequence, in its order (repetition penalty over the prompt ids and the generated tokens, then
  temperature, top-k, top-p when sampling), applied to all rows at once with per-row parameters
  (:class:`serve_app.speech.sampler.BatchSampler`; its rows equal what the processors give one by
  one), and are sampled with the item's own ``torch.Generator`` (greedy when ``do_sample`` is false);
- a row leaves the batch (and the KV cache) when it emits the stop token, reaches the token limit
  or is cancelled; the others continue untouched;
- audio is made per item as coqui makes it: the latent forward pass (``return_latent=True``) and
  HiFiGAN for a whole piece, or HiFiGAN over the growing streamed latents with coqui's own
  ``handle_chunks`` cross-fade for a streamed one. On a GPU, HiFiGAN calls of the same step are
  batched when their latent lengths are equal (exact: no padding).

Equality with unbatched coqui decoding: a batch of one reproduces ``Xtts.inference`` /
``inference_stream`` with the same seed. In a larger batch the attention and matrix products run
over padded, stacked rows, so logits differ from the unbatched ones by float rounding (~1e-6); greedy
decoding therefore gives the same tokens except at an exact near-tie, and sampled decoding the same
tokens unless a rounding difference moves a draw across a bucket boundary of the cumulative
distribution.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from serve_app.speech.profiles import SamplingParams
from serve_app.speech.sampler import BatchSampler

# Samples coqui cross-fades between consecutive streamed chunks (its ``overlap_wav_len`` default).
STREAM_OVERLAP_SAMPLES = 1024
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


@dataclass
class DecodeItem:
    """One piece of text to decode within a batch.

    Attributes:
        text_tokens: 1-D int tensor from the model's tokenizer for the piece's language.
        gpt_cond_latent: the voice's GPT conditioning latents, ``(1, n, d)``.
        speaker_embedding: the voice's HiFiGAN speaker embedding, ``(1, 512, 1)``.
        params: sampling parameters of the request.
        generator: the request's random generator; pieces of one request share it, in order, as the
            global generator is shared by the pieces of an unbatched synthesis.
        stream_chunk_tokens: None for a whole piece; otherwise audio tokens per streamed chunk.
        cancelled: set by the requester to drop the item from the batch at the next step.
        max_new_tokens: audio tokens after which the piece ends without a stop token; None: the
            model's limit (what unbatched decoding uses).
    """

    text_tokens: Any
    gpt_cond_latent: Any
    speaker_embedding: Any
    params: SamplingParams
    generator: Any
    stream_chunk_tokens: int | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    max_new_tokens: int | None = None


@dataclass
class DecodeEvent:
    """Audio for one item: a streamed chunk, or the whole piece (``final``)."""

    index: int
    audio: Any
    final: bool


@dataclass
class _Row:
    """Decoding state of one live item."""

    index: int
    item: DecodeItem
    limit: int
    tokens: list[int] = field(default_factory=list)
    latents: list[Any] = field(default_factory=list)
    since_chunk: int = 0
    wav_prev: Any = None
    wav_overlap: Any = None


def encode_piece(model: Any, text: str, language: str) -> Any:
    """Text tokens of one piece as coqui's inference makes them (stripped, lower case, language tag).

    Args:
        model: a loaded coqui ``Xtts``.
        text: the piece.
        language: a language code of the model (``en``, ``pt``, ...).

    Returns:
        A 1-D int tensor.
    """
    import torch

    return torch.IntTensor(model.tokenizer.encode(text.strip().lower(), lang=language.split("-")[0]))


def decode_batch(model: Any, items: list[DecodeItem]) -> Iterator[DecodeEvent]:
    """Decode ``items`` together on a coqui ``Xtts`` model, yielding audio as it is ready.

    The caller holds the model (no other generation may run on it meanwhile) and an inference-mode
    context. Whole pieces yield one final event when their row finishes; streamed pieces yield a
    chunk every ``stream_chunk_tokens`` tokens and a final chunk. Cancelled items yield nothing more.

    Args:
        model: a loaded coqui ``Xtts`` in eval mode.
        items: the pieces to decode.

    Yields:
        :class:`DecodeEvent` per chunk or finished piece, in the order the audio becomes ready.
    """
    import torch

    gpt = model.gpt
    rows, sampler, embeds, mask = _prompt(model, items)
    cache = None
    step = 0
    while rows:
        # After the prompt, a step's query attends to every earlier position a row has: the padding mask
        # alone, given as the 4-D boolean mask Hugging Face would build from it each step (the same mask,
        # so the same floats; 0.8 against 1.0 ms a step for 8 tiny-model rows). A batch of one keeps the
        # 2-D mask, with which it is coqui's decoding bit for bit.
        step_mask = mask[:, None, None, :].bool() if cache is not None and len(rows) > 1 else mask
        out = gpt.gpt(inputs_embeds=embeds, attention_mask=step_mask, past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        latents = gpt.final_norm(out.last_hidden_state[:, -1])
        step += 1
        keep, next_tokens = yield from _advance(model, rows, sampler, latents)
        if not keep:
            return
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=model.device)
            cache.batch_select_indices(index)
            sampler.keep(index)
            mask = mask[index]
            rows = [rows[position] for position in keep]
        tokens = torch.tensor(next_tokens, device=model.device)[:, None]
        embeds = gpt.mel_embedding(tokens) + gpt.mel_pos_embedding.get_fixed_embedding(step, model.device)
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)


def _prompt(model: Any, items: list[DecodeItem]) -> tuple[list[_Row], BatchSampler, Any, Any]:
    """The rows, sampler, first step's input embeddings and padding mask of a batch.

    Prefixes (voice latents + text embeddings, as coqui's ``GPT.compute_embeddings`` builds them) are
    left-padded, then every row gets the start-of-audio embedding.
    """
    import torch

    gpt = model.gpt
    device = model.device
    rows: list[_Row] = []
    prefixes = []
    sampled: list[tuple[SamplingParams, bool, Any, Any]] = []
    for index, item in enumerate(items):
        fake_inputs = gpt.compute_embeddings(item.gpt_cond_latent.to(device), item.text_tokens[None].to(device))
        prefixes.append(gpt.gpt_inference.cached_prefix_emb[0])
        # generate's repetition penalty also sees the prompt ids coqui passes (1s and the start token).
        seen = torch.unique(fake_inputs[0])
        # coqui's streaming generator draws even when greedy (with no warpers), so a streamed row draws too.
        draws = item.params.do_sample or item.stream_chunk_tokens is not None
        sampled.append((item.params, draws, seen, item.generator))
        limit = min(item.max_new_tokens or gpt.max_gen_mel_tokens, gpt.max_gen_mel_tokens)
        rows.append(_Row(index, item, limit))

    width = max(p.shape[0] for p in prefixes)
    start = gpt.mel_embedding(torch.tensor([gpt.start_audio_token], device=device)) + gpt.mel_pos_embedding.emb(
        torch.tensor([0], device=device)
    )
    embeds = torch.zeros(len(rows), width + 1, prefixes[0].shape[-1], dtype=prefixes[0].dtype, device=device)
    mask = torch.zeros(len(rows), width + 1, dtype=torch.long, device=device)
    for row, prefix in enumerate(prefixes):
        embeds[row, width - prefix.shape[0] : width] = prefix
        mask[row, width - prefix.shape[0] :] = 1
    embeds[:, width] = start
    return rows, BatchSampler(sampled, gpt.mel_head.out_features, device), embeds, mask


def _advance(
    model: Any, rows: list[_Row], sampler: BatchSampler, latents: Any
) -> Generator[DecodeEvent, None, tuple[list[int], list[int]]]:
    """One step's tokens for the live rows; yields the audio the step completes.

    Returns:
        The positions of the rows that go on and the tokens they feed to the next step.
    """
    gpt = model.gpt
    logits = gpt.mel_head(latents).float()
    keep: list[int] = []
    finished: list[_Row] = []
    chunks: list[_Row] = []
    next_tokens: list[int] = []
    live = [position for position, row in enumerate(rows) if not row.item.cancelled.is_set()]
    for position, token in zip(live, sampler.choose(logits, live), strict=True):
        row = rows[position]
        row.tokens.append(token)
        chunk_tokens = row.item.stream_chunk_tokens
        if chunk_tokens is not None:
            row.latents.append(latents[position])
            row.since_chunk += 1
            if chunk_tokens > 0 and row.since_chunk >= chunk_tokens:
                chunks.append(row)
        if token == gpt.stop_audio_token or len(row.tokens) >= row.limit:
            finished.append(row)
            continue
        keep.append(position)
        next_tokens.append(token)
    yield from _stream_chunks(model, chunks, final=False)
    yield from _stream_chunks(model, [r for r in finished if r.item.stream_chunk_tokens is not None], final=True)
    yield from _whole_pieces(model, [r for r in finished if r.item.stream_chunk_tokens is None])
    return keep, next_tokens


def _stretch(latents: Any, speed: float) -> Any:
    """Apply the speaking rate to GPT latents ``(1, n, d)`` as coqui's inference does."""
    import torch.nn.functional as F

    length_scale = 1.0 / max(speed, 0.05)
    if length_scale == 1.0:
        return latents
    return F.interpolate(latents.transpose(1, 2), scale_factor=length_scale, mode="linear").transpose(1, 2)


def _cpu_pool() -> ThreadPoolExecutor:
    """The process's thread pool for per-row work on a CPU (latent pass, HiFiGAN).

    One thread per torch intra-op thread, each running its calls on one core (:func:`_one_intra_op_thread`):
    the rows are the parallelism. Pool threads with full OpenMP teams oversubscribed the cores and left
    them slower for everyone: once the pool had run, a HiFiGAN call in the replica's own thread took
    twice as long (tiny model, 2 cores: 0.08 s against 0.04 s), and eight calls on the pool 0.27 s
    against 0.22 s with one-thread teams.
    """
    global _POOL
    import torch

    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(
                max(1, torch.get_num_threads()), thread_name_prefix="avs-vocoder", initializer=_one_intra_op_thread
            )
        return _POOL


def _one_intra_op_thread() -> None:
    """Give the calling pool thread an OpenMP team of one.

    ``threadpoolctl`` sets the calling thread's own OpenMP setting. ``torch.set_num_threads`` would also
    change the count every thread started later takes, the replica's request threads among them. Torch
    sets a thread's count on its first parallel call, to the process's count once anything has called
    ``torch.set_num_threads``; asking for the count first makes that happen before the limit, not after.
    """
    import torch
    from threadpoolctl import threadpool_limits

    torch.get_num_threads()
    threadpool_limits(1, user_api="openmp")


def _map_rows(model: Any, work: Any, items: list[Any]) -> list[Any]:
    """``work`` over ``items`` in inference mode; on a CPU, several run side by side on :func:`_cpu_pool`.

    XTTS's per-row work (HiFiGAN's convolutions, the tiny model's small matrix products) leaves cores
    idle within one call: one HiFiGAN call of the tiny model took the same time with 1 and 2 intra-op
    threads, while calls side by side, one core each, ran close to 2x faster than one after the other
    on 2 cores. A single item runs in the calling thread, as unbatched decoding runs it.
    """
    import torch

    def run(item: Any) -> Any:
        with torch.inference_mode():
            return work(item)

    if len(items) > 1 and model.device.type == "cpu":
        return list(_cpu_pool().map(run, items))
    return [run(item) for item in items]


def _vocode(model: Any, latents: list[Any], embeddings: list[Any]) -> list[Any]:
    """HiFiGAN over each ``(1, n, d)`` latent.

    On a GPU, calls with equal lengths share one batched forward (exact: no padding). On a CPU each
    latent runs alone (a batched HiFiGAN does the same arithmetic there and was measured slower: 4
    release-size latents of 77 tokens, 8.7 s batched, 5.7 s one by one, 2 cores), side by side with
    the others (:func:`_map_rows`).
    """
    import torch

    if model.device.type == "cpu":
        return _map_rows(
            model,
            lambda i: model.hifigan_decoder(latents[i], g=embeddings[i].to(model.device)).squeeze(),
            list(range(len(latents))),
        )
    waves: list[Any] = [None] * len(latents)
    groups: dict[int, list[int]] = {}
    for position, latent in enumerate(latents):
        groups.setdefault(latent.shape[1], []).append(position)
    for members in groups.values():
        batch = torch.cat([latents[m] for m in members])
        speakers = torch.cat([embeddings[m].to(model.device) for m in members])
        out = model.hifigan_decoder(batch, g=speakers)
        for row, member in enumerate(members):
            waves[member] = out[row].squeeze()
    return waves


def _stream_chunks(model: Any, rows: list[_Row], *, final: bool) -> Iterator[DecodeEvent]:
    """Chunks of streamed rows: HiFiGAN over all their latents so far, cut as coqui's stream cuts them."""
    import torch

    if not rows:
        return
    latents = [_stretch(torch.stack(r.latents)[None], r.item.params.speed) for r in rows]
    waves = _vocode(model, latents, [r.item.speaker_embedding for r in rows])
    for row, wave in zip(rows, waves, strict=True):
        chunk, row.wav_prev, row.wav_overlap = model.handle_chunks(
            wave, row.wav_prev, row.wav_overlap, STREAM_OVERLAP_SAMPLES, is_final=final
        )
        row.since_chunk = 0
        yield DecodeEvent(row.index, chunk, final)


def _whole_pieces(model: Any, rows: list[_Row]) -> Iterator[DecodeEvent]:
    """Whole pieces of finished rows: coqui's latent forward pass per row, then HiFiGAN."""
    import torch

    if not rows:
        return
    gpt = model.gpt

    def latent_of(row: _Row) -> Any:
        codes = torch.tensor([row.tokens], device=model.device)
        text = row.item.text_tokens[None].to(model.device)
        latent = gpt(
            text,
            torch.tensor([text.shape[-1]], device=model.device),
            codes,
            torch.tensor([codes.shape[-1] * gpt.code_stride_len], device=model.device),
            cond_latents=row.item.gpt_cond_latent.to(model.device),
            return_attentions=False,
            return_latent=True,
        )
        return _stretch(latent, row.item.params.speed)

    latents = _map_rows(model, latent_of, rows)
    waves = _vocode(model, latents, [r.item.speaker_embedding for r in rows])
    for row, wave in zip(rows, waves, strict=True):
        yield DecodeEvent(row.index, wave, True)
