"""The TTS deployment: owns XTTS engines on one replica (CUDA when the replica has a GPU).

The default model is loaded at start and pinned; other models (fine-tuned exports, LoRA adapters)
are loaded on demand through Serve model multiplexing, bounded per replica with LRU eviction.
Generation runs in a worker thread so the replica's event loop keeps answering.

Every request decodes through the batcher (``@serve.batch``): each sends its pieces of text, one after
the other, to :meth:`TTSDeployment._decode_batched`, which decodes the pieces waiting together
(:mod:`serve_app.speech.batch_decode`; a lone piece as a batch of one) and hands each request its own audio
as it is made. The batch size and wait come from the settings and the deployment's ``user_config``
(:meth:`TTSDeployment.reconfigure`). The synthesis metrics of every request (``/tts``, streams, jobs)
are recorded here, where the audio and its timings are known.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve

from serve_app.config import BatchingConfig
from serve_app.speech.batch_decode import DecodeEvent, DecodeItem
from serve_app.speech.engine import PIECE_GAP_S, EngineRequest, SynthesisStats, VoiceLatents, XttsEngine
from serve_app.speech.metrics import record_first_audio, record_synthesis
from serve_app.speech.profiles import resolve_params
from serve_app.speech.protocol import SynthesisRequest, SynthesisResult
from serve_app.voices.service import VoiceStore, choose_voice
from voice_core.errors import VoiceError
from voice_core.settings import Settings

log = logging.getLogger(__name__)

LATENTS_CACHE_SIZE = 256


@dataclass
class PieceJob:
    """One piece of one request, queued for a batch: the engine (model) it needs and what to decode."""

    engine: XttsEngine
    item: DecodeItem


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


async def _encoded(chunks: AsyncIterator[np.ndarray], encoder: Any) -> AsyncIterator[bytes]:
    """The non-empty encoded pieces of ``chunks`` through an ``AudioStreamEncoder``, its tail last."""
    async for chunk in chunks:
        data = encoder.encode(chunk)
        if data:
            yield data
    tail = encoder.finish()
    if tail:
        yield tail


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
        self._batch_sizes: Counter[int] = Counter()
        self.reconfigure({})

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply the batching of the deployment's ``user_config`` (Serve calls this on running replicas).

        Args:
            user_config: :class:`serve_app.config.BatchingConfig` fields; a missing one keeps the settings
                value.
        """
        config = BatchingConfig.model_validate(user_config or {})
        self._batch_max_size = config.batch_max_size or self._settings.batch_max_size
        self._batch_wait_s = self._settings.batch_wait_s if config.batch_wait_s is None else config.batch_wait_s
        self._decode_batched.set_max_batch_size(self._batch_max_size)
        self._decode_batched.set_batch_wait_timeout_s(self._batch_wait_s)
        log.info("batching: up to %d pieces, waiting up to %.3f s", self._batch_max_size, self._batch_wait_s)

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
            speaker = choose_voice(request.voice, self._settings).speaker
            builtin = engine.builtin_voice(speaker)
            if builtin is not None:
                return builtin, speaker
        return await asyncio.to_thread(self._computed_voice, engine, request)

    def _computed_voice(self, engine: XttsEngine, request: SynthesisRequest) -> tuple[VoiceLatents, str]:
        if request.references:
            return engine.compute_latents(request.references), "uploaded reference"
        choice = choose_voice(request.voice, self._settings)
        name = choice.name
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
        raise choice.unknown(engine.report.model_id, references_allowed=True)

    async def _prepare(
        self, request: SynthesisRequest, stream_unit: str | None
    ) -> tuple[XttsEngine, EngineRequest, SynthesisResult]:
        engine, used, fallback = await self._engine(request.model, request.allow_fallback)
        language = engine.language(request.language or self._settings.default_language)
        params = resolve_params(request.profile, request.overrides)
        engine.pieces(request.text, language, params)  # validates before any compute
        latents, voice = await self._voice(engine, request)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        from voice_core.encode import MEDIA_TYPES

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
        return engine, EngineRequest(request.text, language, latents, params, seed, stream_unit), result

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        """Synthesise a whole text and return encoded audio (or raw samples when ``request.raw``)."""
        from voice_core.encode import encode_audio

        engine, job, result = await self._prepare(request, stream_unit=None)
        stats = SynthesisStats()
        samples = np.concatenate([chunk async for chunk in self._audio(engine, job, stats)])
        if request.raw:
            result.samples = samples
        else:
            result.audio = await asyncio.to_thread(encode_audio, samples, engine.sample_rate, request.response_format)
        result.pieces, result.audio_seconds = stats.pieces, len(samples) / engine.sample_rate
        result.synth_seconds, result.first_chunk_s = stats.total_s, stats.first_chunk_s
        record_synthesis(
            result.model_used,
            result.audio_seconds,
            result.synth_seconds,
            result.first_chunk_s,
            bool(result.fallback_reason),
        )
        return result

    async def stream(self, request: SynthesisRequest) -> AsyncIterator[SynthesisResult | bytes]:
        """Yield a :class:`SynthesisResult` (metadata) first, then encoded audio chunks as they are made."""
        from voice_core.encode import AudioStreamEncoder

        started = time.perf_counter()
        engine, job, result = await self._prepare(request, request.stream_unit)
        yield result
        encoder = AudioStreamEncoder(request.response_format, engine.sample_rate)
        stats = SynthesisStats()
        first = True
        async for data in _encoded(self._audio(engine, job, stats), encoder):
            if first:  # time to the first audio byte, from the request's arrival here
                record_first_audio(time.perf_counter() - started)
                first = False
            yield data
        record_synthesis(result.model_used, stats.audio_seconds, stats.total_s, None, bool(result.fallback_reason))

    async def _audio(self, engine: XttsEngine, job: EngineRequest, stats: SynthesisStats) -> AsyncIterator[np.ndarray]:
        """One request's audio, its pieces sent through the batcher in reading order, gaps between them.

        A request that goes away (client disconnect, cancellation) marks its piece cancelled, so the
        batch drops it at the next step and the other requests decode on.
        """
        items = engine.items(job)
        started = time.perf_counter()
        gap = np.zeros(int(PIECE_GAP_S * engine.sample_rate), dtype=np.float32)
        for index, item in enumerate(items):
            if index:
                yield gap
            try:
                async for events in self._decode_batched(PieceJob(engine, item)):
                    for event in events:
                        stats.record_chunk(len(event.audio), engine.sample_rate, started)
                        yield event.audio
            finally:
                item.cancelled.set()  # no-op for a finished piece
            stats.pieces += 1
        stats.finish(started)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)  # replaced from the settings in reconfigure
    async def _decode_batched(self, jobs: list[PieceJob]) -> AsyncIterator[list[Any]]:
        """Decode queued pieces together; yield, per job, its newly made audio events (often none).

        Pieces of different models decode in separate batches, one model after the other. A job whose
        piece is complete gets ``StopIteration`` (Serve's end of that caller's stream).
        """
        self._batch_sizes[len(jobs)] += 1
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[int, DecodeEvent] | BaseException | None] = asyncio.Queue()
        groups: dict[int, list[int]] = {}
        for position, job in enumerate(jobs):
            groups.setdefault(id(job.engine), []).append(position)

        def decode() -> None:
            try:
                for members in groups.values():
                    engine = jobs[members[0]].engine
                    for event in engine.decode([jobs[m].item for m in members]):
                        loop.call_soon_threadsafe(events.put_nowait, (members[event.index], event))
            except BaseException as exc:
                loop.call_soon_threadsafe(events.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(events.put_nowait, None)

        worker = asyncio.ensure_future(asyncio.to_thread(decode))
        finished = [False] * len(jobs)
        try:
            while (got := await events.get()) is not None:
                if isinstance(got, BaseException):
                    raise got
                position, event = got
                out: list[Any] = [StopIteration if done else [] for done in finished]
                out[position] = [event]
                finished[position] = event.final
                yield out
            await worker
        finally:
            for job in jobs:  # stop decoding for nobody when this batch is abandoned
                job.item.cancelled.set()

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
            "batching": {
                "max_size": self._batch_max_size,
                "wait_s": self._batch_wait_s,
                "batch_sizes": {str(size): count for size, count in sorted(self._batch_sizes.items())},
            },
            "model": self._base.report.to_dict(),
        }

    def check_health(self) -> None:
        """Fail the Serve health check when the default model is gone or unusable."""
        if self._base is None or next(self._base.model.parameters(), None) is None:
            raise RuntimeError("the XTTS model is not loaded on this replica")
