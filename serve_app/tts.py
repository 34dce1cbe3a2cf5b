"""The TTS deployment: owns XTTS engines on one replica (CUDA when the replica has a GPU).

The default model is loaded at start and pinned; other models (fine-tuned exports, LoRA adapters)
are loaded on demand through Serve model multiplexing, bounded per replica with LRU eviction.
Generation runs in a worker thread so the replica's event loop keeps answering.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from serve_app.engine import SynthesisStats, VoiceLatents, XttsEngine
from serve_app.metrics import record_synthesis
from serve_app.profiles import resolve_params
from serve_app.protocol import SynthesisRequest, SynthesisResult
from serve_app.voices import VoiceStore
from voice_core.errors import InvalidInputError, VoiceError
from voice_core.settings import Settings

log = logging.getLogger(__name__)

LATENTS_CACHE_SIZE = 256


def load_engine(settings: Settings, model_id: str | None) -> XttsEngine:
    """Load a full model or a LoRA adapter (merged into its base) as an engine."""
    from voice_core.adapters import is_adapter_dir, merge_adapter, read_adapter_meta
    from voice_core.models import resolve_model
    from voice_core.storage import Storage
    from voice_core.xtts_model import load_xtts

    storage = Storage.from_settings(settings)
    roots = storage.allowed_roots()
    model_id, directory = resolve_model(settings, storage, model_id)
    if is_adapter_dir(directory):
        meta = read_adapter_meta(directory, roots)
        base_id, base_dir = resolve_model(settings, storage, meta["base_model"])
        model, report = load_xtts(base_dir, model_id=model_id, device=settings.device, allowed_roots=roots)
        merge_adapter(model, directory)
        report.normalisations.append(f"LoRA adapter merged into base model '{base_id}'")
        return XttsEngine(model, report)
    model, report = load_xtts(directory, model_id=model_id, device=settings.device, allowed_roots=roots)
    return XttsEngine(model, report)


@serve.deployment(name="TTSDeployment")
class TTSDeployment:
    """Synthesis, streaming and voice creation on one replica."""

    def __init__(self, settings: Settings, max_models_per_replica: int = 2) -> None:
        from voice_core.models import default_model_id
        from voice_core.storage import Storage

        self._settings = settings
        self._storage = Storage.from_settings(settings).ensure()
        self._voices = VoiceStore(self._storage)
        self._default_id = default_model_id(settings)
        self._base = load_engine(settings, self._default_id)
        self._started = time.time()
        self._last_error: str | None = None
        self._latents_computed = 0
        # Stored voices' latents kept in memory per (voice, model); the voice's existence is still
        # checked on disk for every request, so a deleted voice stops working at once.
        self._latents_cache: OrderedDict[tuple[str, str], VoiceLatents] = OrderedDict()
        self._cache_lock = threading.Lock()

        async def load(model_id: str) -> XttsEngine:
            return await asyncio.to_thread(load_engine, self._settings, model_id)

        self._load_multiplexed = serve.multiplexed(max_num_models_per_replica=max_models_per_replica)(load)
        self._multiplex_holder = load

    async def _engine(self, requested: str | None, allow_fallback: bool) -> tuple[XttsEngine, str, str | None]:
        model_id = requested or self._default_id
        if model_id == self._default_id:
            return self._base, model_id, None
        try:
            engine = await self._load_multiplexed(model_id)
            return engine, model_id, None
        except VoiceError as exc:
            self._last_error = f"loading {model_id}: {exc}"
            if not allow_fallback:
                raise
            log.warning("model %s unusable, falling back to %s: %s", model_id, self._default_id, exc)
            return self._base, self._default_id, f"model '{model_id}' could not be loaded: {exc}"

    async def _voice(self, engine: XttsEngine, request: SynthesisRequest) -> tuple[VoiceLatents, str]:
        """The request's voice and its name.

        A built-in speaker is a dictionary lookup, answered on the event loop; uploaded references and
        stored voices (disk reads, latents computed) go to a worker thread.
        """
        if not request.references:
            speaker = self._speaker(request)[1]
            builtin = engine.builtin_voice(speaker)
            if builtin is not None:
                return builtin, speaker
        return await asyncio.to_thread(self._computed_voice, engine, request)

    def _speaker(self, request: SynthesisRequest) -> tuple[str, str]:
        """The requested voice name and the speaker it maps to (OpenAI voice names map to built-ins)."""
        name = request.voice or self._settings.default_voice
        return name, self._settings.openai_voices.get(name, name)

    def _computed_voice(self, engine: XttsEngine, request: SynthesisRequest) -> tuple[VoiceLatents, str]:
        if request.references:
            return engine.compute_latents(request.references), "uploaded reference"
        name, speaker = self._speaker(request)
        if self._voices.exists(name):
            key = (name, engine.report.model_id)
            with self._cache_lock:
                latents = self._latents_cache.get(key)
            if latents is None:
                latents, computed = self._voices.latents(name, engine.report.model_id, engine.compute_latents)
                self._latents_computed += int(computed)
            with self._cache_lock:
                self._latents_cache[key] = latents
                self._latents_cache.move_to_end(key)
                while len(self._latents_cache) > LATENTS_CACHE_SIZE:
                    self._latents_cache.popitem(last=False)
            return latents, name
        hint = f" (OpenAI voice {name!r} maps to {speaker!r})" if speaker != name else ""
        raise InvalidInputError(
            f"unknown voice {name!r}{hint}: use a built-in speaker of model '{engine.report.model_id}' or a stored "
            "voice id (GET /voices), or upload reference audio"
        )

    async def _prepare(self, request: SynthesisRequest) -> tuple[XttsEngine, Any, SynthesisResult, Any]:
        engine, used, fallback = await self._engine(request.model, request.allow_fallback)
        language = engine.language(request.language or self._settings.default_language)
        params = resolve_params(request.profile, request.overrides)
        engine.pieces(request.text, language, params)  # validates before any compute
        latents, voice = await self._voice(engine, request)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        from voice_core.audio import MEDIA_TYPES

        result = SynthesisResult(
            audio=b"",
            media_type="application/octet-stream" if request.raw else MEDIA_TYPES[request.response_format],
            sample_rate=engine.sample_rate,
            model_requested=request.model or self._default_id,
            model_used=used,
            fallback_reason=fallback,
            seed=seed,
            language=language,
            voice=voice,
            untrained=engine.report.untrained,
        )
        return engine, latents, result, params

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        """Synthesise a whole text and return encoded audio (or raw samples when ``request.raw``)."""
        from voice_core.audio import encode_audio

        engine, latents, result, params = await self._prepare(request)
        stats = SynthesisStats()

        def synthesize_and_encode() -> tuple[Any, bytes]:  # one worker-thread hop for both
            samples = engine.synthesize(request.text, result.language, latents, params, result.seed, stats)
            return samples, b"" if request.raw else encode_audio(samples, engine.sample_rate, request.response_format)

        samples, result.audio = await asyncio.to_thread(synthesize_and_encode)
        if request.raw:
            result.samples = samples
        result.pieces, result.audio_seconds = stats.pieces, len(samples) / engine.sample_rate
        result.synth_seconds, result.first_chunk_s = stats.total_s, stats.first_chunk_s
        return result

    async def stream(self, request: SynthesisRequest) -> AsyncIterator[SynthesisResult | bytes]:
        """Yield a :class:`SynthesisResult` (metadata) first, then encoded audio chunks as they are made."""
        from voice_core.audio import AudioStreamEncoder

        engine, latents, result, params = await self._prepare(request)
        yield result
        encoder = AudioStreamEncoder(request.response_format, engine.sample_rate)
        stats = SynthesisStats()
        chunks = engine.stream(request.text, result.language, latents, params, result.seed, stats, request.stream_unit)
        done = object()
        try:
            while (chunk := await asyncio.to_thread(next, chunks, done)) is not done:
                data = encoder.encode(chunk)
                if data:
                    yield data
            tail = encoder.finish()
            if tail:
                yield tail
            # Streams are counted here, where the audio duration is known (the ingress sees only bytes).
            record_synthesis(result.model_used, stats.audio_seconds, stats.total_s, None, bool(result.fallback_reason))
        finally:
            chunks.close()

    async def create_voice(self, name: str, language: str, references: list[Any]) -> dict[str, Any]:
        """Compute a voice's latents once with the default model and store it."""
        language = self._base.language(language)
        latents = await asyncio.to_thread(self._base.compute_latents, references)
        self._latents_computed += 1
        return self._voices.create(name, language, references, model_id=self._default_id, latents=latents)

    def _multiplexed_ids(self) -> list[str]:
        # Serve keeps the LRU cache on the decorated function's holder; read it to report what is loaded.
        wrapper = getattr(self._multiplex_holder, "__serve_multiplex_wrapper", None)
        return list(getattr(wrapper, "models", {}).keys())

    async def info(self) -> dict[str, Any]:
        """Replica status for ``/health/engines``: device, model report, loaded models, last error.

        ``gpu_ids`` are the GPUs Ray assigned to the replica (``num_gpus`` > 0) and ``cuda_available``
        whether this process sees a CUDA device: a replica given a GPU on a node without CUDA runs on
        CPU and says so here.

        Async although it never awaits: Serve runs a replica's sync methods in a thread pool, a hop
        this lookup does not need.
        """
        import ray
        import torch

        context = serve.get_replica_context()
        return {
            "status": "ok",
            "replica": context.replica_id.unique_id,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self._started, 1),
            "device": self._base.report.device,
            "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()],
            "cuda_available": torch.cuda.is_available(),
            "sample_rate": self._base.sample_rate,
            "languages": self._base.languages,
            "default_model": self._default_id,
            "loaded_models": [self._default_id, *self._multiplexed_ids()],
            "latents_computed": self._latents_computed,
            "last_error": self._last_error,
            "model": self._base.report.to_dict(),
        }

    def check_health(self) -> None:
        """Fail the Serve health check when the default model is gone or unusable."""
        if self._base is None or next(self._base.model.parameters(), None) is None:
            raise RuntimeError("the XTTS model is not loaded on this replica")
