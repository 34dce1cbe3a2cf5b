"""The synthesis engine: one loaded XTTS model, thread-safe, deterministic per seed.

This is plain Python (no Ray) so it is tested directly and reused by the Serve deployment and the
benchmarks. Every synthesis goes through the batch decoder (:mod:`serve_app.speech.batch_decode`): a
request becomes one :class:`DecodeItem` per piece of its text (:meth:`XttsEngine.items`), and
:meth:`XttsEngine.decode` decodes the pieces of several requests together, a lone request as a batch of
one (which is coqui's ``Xtts.inference`` / ``inference_stream`` with the same seed). One lock per engine
serialises decoding: the GPT's KV cache and buffers are per-call state that concurrent calls would corrupt.
"""

from __future__ import annotations

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
class EngineRequest:
    """One synthesis for the engine: what to say, how, and with which random numbers.

    Attributes:
        text: the text to speak (split into pieces by :meth:`XttsEngine.pieces`).
        language: its language code (normalised against the model's).
        voice: the voice's latents.
        params: sampling parameters.
        seed: seed of the request's own random generator, shared by its pieces in reading order.
        stream_unit: None for whole pieces; ``tokens`` for a chunk every ``params.stream_chunk_tokens``
            GPT tokens (coqui's ``inference_stream``: earliest audio, and the same tokens as whole
            decoding, so the joined chunks equal the whole audio except within about 1000 samples of
            each seam, where coqui cross-fades); ``pieces`` for each piece whole as soon as it is made.
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

    def pieces(self, text: str, language: str, params: SamplingParams) -> list[str]:
        """Split ``text`` as synthesis will (validated non-empty)."""
        pieces = split_text(text, language, params.split_chars)
        if not pieces:
            raise InvalidInputError("text is empty; send at least one word to speak")
        return pieces

    def items(self, request: EngineRequest) -> list[DecodeItem]:
        """The pieces of ``request`` as batch-decoding items, sharing one generator seeded with its seed.

        Decoded in order, they draw the random numbers coqui's unbatched inference draws under
        ``torch.manual_seed(seed)``.

        Returns:
            One item per piece, in reading order.

        Raises:
            InvalidInputError: unknown language or stream unit, empty text, or a piece too long for the model.
        """
        import torch

        if request.stream_unit is not None and request.stream_unit not in ("tokens", "pieces"):
            raise InvalidInputError(f"unknown stream unit {request.stream_unit!r}; use 'tokens' or 'pieces'")
        language = self.language(request.language)
        params = request.params
        generator = torch.Generator(device=self.model.device).manual_seed(request.seed)
        chunk_tokens = params.stream_chunk_tokens if request.stream_unit == "tokens" else None
        voice = request.voice
        items = []
        for piece in self.pieces(request.text, language, params):
            tokens = encode_piece(self.model, piece, language)
            # coqui's inference asserts this; checked here so one bad piece cannot fail a whole batch.
            if tokens.shape[-1] >= self.model.args.gpt_max_text_tokens:
                raise InvalidInputError(
                    f"a piece of the text is {tokens.shape[-1]} tokens long; the model takes fewer than "
                    f"{self.model.args.gpt_max_text_tokens}: lower split_chars"
                )
            item = DecodeItem(tokens, voice.gpt_cond_latent, voice.speaker_embedding, params, generator, chunk_tokens)
            item.max_new_tokens = request.max_new_tokens
            items.append(item)
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


def to_numpy(audio: Any) -> np.ndarray:
    """Mono float32 numpy samples of a torch audio tensor (any device, any leading shape)."""
    return audio.detach().float().cpu().numpy().reshape(-1)
