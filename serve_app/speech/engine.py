"""The synthesis engine: one loaded XTTS model, thread-safe, deterministic per seed.

This is plain Python (no Ray) so it is tested directly and reused by the Serve deployment, the
benchmarks and the training samples. One lock per engine serialises generation: coqui's GPT keeps
per-call state (KV cache, torch RNG) that concurrent calls would corrupt.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from serve_app.speech.batch_decode import DecodeEvent, DecodeItem, decode_batch, encode_piece
from serve_app.speech.profiles import SamplingParams
from serve_app.speech.text import normalise_language, split_text
from voice_core.errors import InvalidInputError
from voice_core.xtts_model import LoadReport, fold_weight_norm

# Silence between synthesised pieces of a long text.
PIECE_GAP_S = 0.12
REFERENCE_SAMPLE_RATE = 22050


@dataclass
class VoiceLatents:
    """Conditioning of one voice: GPT latents and the decoder's speaker embedding (CPU tensors)."""

    gpt_cond_latent: Any
    speaker_embedding: Any


@dataclass
class SynthesisStats:
    """Timings of one synthesis, filled while it runs."""

    pieces: int = 0
    audio_seconds: float = 0.0
    first_chunk_s: float | None = None
    total_s: float = 0.0

    def record_chunk(self, samples: int, sample_rate: int, started: float) -> None:
        """Count a chunk of ``samples`` made since ``started`` (a ``time.perf_counter()`` value)."""
        if self.first_chunk_s is None:
            self.first_chunk_s = time.perf_counter() - started
        self.audio_seconds += samples / sample_rate

    def finish(self, started: float) -> None:
        """Close the stats: add the gaps between pieces and the total time since ``started``."""
        self.audio_seconds += PIECE_GAP_S * max(0, self.pieces - 1)
        self.total_s = time.perf_counter() - started


@dataclass
class BatchRequest:
    """One request of :meth:`XttsEngine.synthesize_batch` / :meth:`XttsEngine.stream_batch`.

    Attributes:
        text: the text to speak (split into pieces as :meth:`XttsEngine.synthesize` splits it).
        language: its language code.
        voice: the voice's latents.
        params: sampling parameters.
        seed: seed of the request's own random generator.
        stream_unit: None for whole audio; ``tokens`` or ``pieces`` as in :meth:`XttsEngine.stream`.
        max_new_tokens: audio tokens after which each piece ends; None: the model's limit.
    """

    text: str
    language: str
    voice: VoiceLatents
    params: SamplingParams
    seed: int
    stream_unit: str | None = None
    max_new_tokens: int | None = None


class XttsEngine:
    """Synthesis on one coqui ``Xtts`` model.

    Args:
        model: a loaded coqui ``Xtts`` in eval mode.
        report: its :class:`voice_core.xtts_model.LoadReport`.
    """

    def __init__(self, model: Any, report: LoadReport) -> None:
        fold_weight_norm(model.hifigan_decoder)
        self.model = model
        self.report = report
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        """Output sample rate (24 kHz for XTTS-v2)."""
        return self.report.sample_rate

    @property
    def languages(self) -> list[str]:
        """Languages of the model's config."""
        return self.report.languages

    @property
    def speakers(self) -> list[str]:
        """Built-in speaker names (from ``speakers_xtts.pth``)."""
        return self.report.speakers

    def language(self, code: str) -> str:
        """Normalise a language code against this model (``pt-BR`` -> ``pt``)."""
        return normalise_language(code, self.languages)

    def builtin_voice(self, name: str) -> VoiceLatents | None:
        """Latents of a built-in speaker, or None when the model has no such speaker."""
        manager = self.model.speaker_manager
        if manager is None or name not in manager.speakers:
            return None
        entry = manager.speakers[name]
        return VoiceLatents(entry["gpt_cond_latent"].cpu(), entry["speaker_embedding"].cpu())

    def compute_latents(self, references: list[np.ndarray], sample_rate: int = REFERENCE_SAMPLE_RATE) -> VoiceLatents:
        """Compute a voice's conditioning from reference recordings with coqui's own encoders.

        Args:
            references: mono float32 recordings.
            sample_rate: their sample rate.

        Returns:
            The voice's latents (averaged speaker embedding, GPT latents of the joined audio).
        """
        import torch

        config = self.model.config
        max_samples = int(sample_rate * config.max_ref_len)
        with self._lock, torch.inference_mode():
            device = self.model.device
            audios = [torch.from_numpy(np.ascontiguousarray(r[:max_samples]))[None].to(device) for r in references]
            embeddings = [self.model.get_speaker_embedding(audio, sample_rate) for audio in audios]
            gpt_latent = self.model.get_gpt_cond_latents(
                torch.cat(audios, dim=-1),
                sample_rate,
                length=config.gpt_cond_len,
                chunk_length=config.gpt_cond_chunk_len,
            )
            embedding = torch.stack(embeddings).mean(dim=0)
        return VoiceLatents(gpt_latent.cpu(), embedding.cpu())

    def _kwargs(self, params: SamplingParams) -> dict[str, Any]:
        return {
            "temperature": params.temperature,
            "length_penalty": params.length_penalty,
            "repetition_penalty": params.repetition_penalty,
            "top_k": params.top_k,
            "top_p": params.top_p,
            "do_sample": params.do_sample,
            "speed": params.speed,
            "enable_text_splitting": False,
        }

    def pieces(self, text: str, language: str, params: SamplingParams) -> list[str]:
        """Split ``text`` as synthesis will (validated non-empty)."""
        pieces = split_text(text, language, params.split_chars)
        if not pieces:
            raise InvalidInputError("text is empty; send at least one word to speak")
        return pieces

    def synthesize(
        self,
        text: str,
        language: str,
        voice: VoiceLatents,
        params: SamplingParams,
        seed: int,
        stats: SynthesisStats | None = None,
    ) -> np.ndarray:
        """Synthesise ``text`` whole; long text is split, spoken in order and joined.

        Returns:
            Mono float32 audio at :attr:`sample_rate`.
        """
        return np.concatenate(list(self._generate(text, language, voice, params, seed, stats, stream=False)))

    def stream(
        self,
        text: str,
        language: str,
        voice: VoiceLatents,
        params: SamplingParams,
        seed: int,
        stats: SynthesisStats | None = None,
        unit: str = "tokens",
    ) -> Iterator[np.ndarray]:
        """Yield audio chunks as they are made.

        With ``unit="tokens"`` a chunk leaves every ``params.stream_chunk_tokens`` GPT tokens (earliest
        audio; coqui re-decodes the growing latent sequence for each chunk, so it costs more compute).
        The tokens are those of :meth:`synthesize` with the same seed, so the joined chunks have its
        length and samples, except within about 1000 samples of each chunk seam, where coqui decodes a
        prefix and cross-fades into the next chunk. With ``unit="pieces"`` each sentence-sized piece
        leaves whole as soon as it is synthesised: the joined audio equals :meth:`synthesize` exactly.
        """
        _check_unit(unit)
        yield from self._generate(text, language, voice, params, seed, stats, stream=unit == "tokens")

    def _generate(
        self,
        text: str,
        language: str,
        voice: VoiceLatents,
        params: SamplingParams,
        seed: int,
        stats: SynthesisStats | None,
        *,
        stream: bool,
    ) -> Iterator[np.ndarray]:
        import torch

        stats = stats if stats is not None else SynthesisStats()
        language = self.language(language)
        pieces = self.pieces(text, language, params)
        gap = np.zeros(int(PIECE_GAP_S * self.sample_rate), dtype=np.float32)
        started = time.perf_counter()
        kwargs = self._kwargs(params)
        with self._lock, torch.inference_mode(), _seeded(seed):
            for index, piece in enumerate(pieces):
                if index:
                    yield gap
                if stream:
                    chunks = self.model.inference_stream(
                        piece,
                        language,
                        voice.gpt_cond_latent,
                        voice.speaker_embedding,
                        stream_chunk_size=params.stream_chunk_tokens,
                        **kwargs,
                    )
                else:
                    result = self.model.inference(
                        piece, language, voice.gpt_cond_latent, voice.speaker_embedding, **kwargs
                    )
                    chunks = iter([torch.as_tensor(result["wav"])])
                for chunk in chunks:
                    audio = to_numpy(chunk)
                    stats.record_chunk(len(audio), self.sample_rate, started)
                    yield audio
                stats.pieces += 1
        stats.finish(started)

    def piece_items(
        self,
        text: str,
        language: str,
        voice: VoiceLatents,
        params: SamplingParams,
        seed: int,
        unit: str | None = None,
    ) -> list[DecodeItem]:
        """The pieces of one request as batch-decoding items, sharing one generator seeded with ``seed``.

        Decoded in order, they draw the random numbers :meth:`synthesize` / :meth:`stream` draw.

        Args:
            text: the text to speak.
            language: its language code.
            voice: the voice's latents.
            params: sampling parameters.
            seed: seed of the request's generator.
            unit: None for whole pieces; ``tokens`` or ``pieces`` as in :meth:`stream`.

        Returns:
            One item per piece, in reading order.
        """
        import torch

        if unit is not None:
            _check_unit(unit)
        language = self.language(language)
        generator = torch.Generator(device=self.model.device).manual_seed(seed)
        chunk_tokens = params.stream_chunk_tokens if unit == "tokens" else None
        items = []
        for piece in self.pieces(text, language, params):
            tokens = encode_piece(self.model, piece, language)
            # coqui's inference asserts this; checked here so one bad piece cannot fail a whole batch.
            if tokens.shape[-1] >= self.model.args.gpt_max_text_tokens:
                raise InvalidInputError(
                    f"a piece of the text is {tokens.shape[-1]} tokens long; the model takes fewer than "
                    f"{self.model.args.gpt_max_text_tokens}: lower split_chars"
                )
            items.append(
                DecodeItem(tokens, voice.gpt_cond_latent, voice.speaker_embedding, params, generator, chunk_tokens)
            )
        return items

    def decode(self, items: list[DecodeItem]) -> Iterator[DecodeEvent]:
        """Decode pieces of several requests together (see :mod:`serve_app.speech.batch_decode`).

        Holds the engine's lock until the batch is done, so consume the iterator to the end (or
        close it) promptly. Event audio is numpy float32.
        """
        import torch

        with self._lock, torch.inference_mode():
            for event in decode_batch(self.model, items):
                yield DecodeEvent(event.index, to_numpy(event.audio), event.final)

    def synthesize_batch(self, requests: list[BatchRequest]) -> list[np.ndarray]:
        """Synthesise several requests with batched decoding: the whole audio of each, in order.

        Equals :meth:`synthesize` per request for greedy decoding, and for sampling where float
        rounding moves no draw (see :mod:`serve_app.speech.batch_decode`).
        """
        parts: list[list[np.ndarray]] = [[] for _ in requests]
        for index, audio in self.stream_batch(requests):
            parts[index].append(audio)
        return [np.concatenate(p) for p in parts]

    def stream_batch(self, requests: list[BatchRequest]) -> Iterator[tuple[int, np.ndarray]]:
        """Batched decoding of several requests, yielding ``(request index, audio)`` as audio is made.

        Requests advance piece by piece: round ``k`` decodes the ``k``-th piece of every request that
        has one, in one batch. Gaps between pieces are yielded as :meth:`stream` yields them.
        """
        items = [self.piece_items(r.text, r.language, r.voice, r.params, r.seed, r.stream_unit) for r in requests]
        for request, pieces in zip(requests, items, strict=True):
            for item in pieces:
                item.max_new_tokens = request.max_new_tokens
        gap = np.zeros(int(PIECE_GAP_S * self.sample_rate), dtype=np.float32)
        for round_index in range(max(len(i) for i in items)):
            owners = [n for n, pieces in enumerate(items) if round_index < len(pieces)]
            if round_index:
                for owner in owners:
                    yield owner, gap
            for event in self.decode([items[n][round_index] for n in owners]):
                yield owners[event.index], event.audio


def _check_unit(unit: str) -> None:
    if unit not in ("tokens", "pieces"):
        raise InvalidInputError(f"unknown stream unit {unit!r}; use 'tokens' or 'pieces'")


def to_numpy(audio: Any) -> np.ndarray:
    """Mono float32 numpy samples of a torch audio tensor (any device, any leading shape)."""
    return audio.detach().float().cpu().numpy().reshape(-1)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch (and CUDA) for one generation, restoring the previous CPU RNG state afterwards."""
    import torch

    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        torch.manual_seed(seed)
        yield
