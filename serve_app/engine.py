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

from serve_app.profiles import SamplingParams
from serve_app.text import normalise_language, split_text
from voice_core.errors import InvalidInputError
from voice_core.xtts_model import LoadReport

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


class XttsEngine:
    """Synthesis on one coqui ``Xtts`` model.

    Args:
        model: a loaded coqui ``Xtts`` in eval mode.
        report: its :class:`voice_core.xtts_model.LoadReport`.
    """

    def __init__(self, model: Any, report: LoadReport) -> None:
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
        if unit not in ("tokens", "pieces"):
            raise InvalidInputError(f"unknown stream unit {unit!r}; use 'tokens' or 'pieces'")
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
                    audio = chunk.detach().float().cpu().numpy().reshape(-1)
                    if stats.first_chunk_s is None:
                        stats.first_chunk_s = time.perf_counter() - started
                    stats.audio_seconds += len(audio) / self.sample_rate
                    yield audio
                stats.pieces += 1
        stats.audio_seconds += PIECE_GAP_S * max(0, stats.pieces - 1)
        stats.total_s = time.perf_counter() - started


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch (and CUDA) for one generation, restoring the previous CPU RNG state afterwards."""
    import torch

    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        torch.manual_seed(seed)
        yield
