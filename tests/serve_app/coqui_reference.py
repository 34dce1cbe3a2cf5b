"""The reference the engine's decoding is checked against: coqui's own unbatched ``Xtts.inference``.

A request's pieces are spoken one by one with ``Xtts.inference`` (or ``inference_stream``), the
global torch generator seeded with the request's seed once for all of them, a silent gap between
pieces: what the service did before every request went through the batch decoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from serve_app.speech.engine import PIECE_GAP_S, EngineRequest, XttsEngine, to_numpy


def coqui_stream(engine: XttsEngine, request: EngineRequest) -> Iterator[np.ndarray]:
    """The audio of ``request`` from coqui's unbatched inference, chunk by chunk (with the gaps).

    ``stream_unit="tokens"`` streams with ``inference_stream``; otherwise each piece comes whole.
    """
    import torch

    params = request.params
    language = engine.language(request.language)
    kwargs: dict[str, Any] = {
        "temperature": params.temperature,
        "length_penalty": params.length_penalty,
        "repetition_penalty": params.repetition_penalty,
        "top_k": params.top_k,
        "top_p": params.top_p,
        "do_sample": params.do_sample,
        "speed": params.speed,
        "enable_text_splitting": False,
    }
    voice = request.voice
    model = engine.model
    gap = np.zeros(int(PIECE_GAP_S * engine.sample_rate), dtype=np.float32)
    devices = list(range(torch.cuda.device_count()))
    with engine._lock, torch.inference_mode(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(request.seed)
        for index, piece in enumerate(engine.pieces(request.text, language, params)):
            if index:
                yield gap
            if request.stream_unit == "tokens":
                chunks = model.inference_stream(
                    piece,
                    language,
                    voice.gpt_cond_latent,
                    voice.speaker_embedding,
                    stream_chunk_size=params.stream_chunk_tokens,
                    **kwargs,
                )
                yield from (to_numpy(chunk) for chunk in chunks)
            else:
                result = model.inference(piece, language, voice.gpt_cond_latent, voice.speaker_embedding, **kwargs)
                yield to_numpy(torch.as_tensor(result["wav"]))


def coqui_synthesize(engine: XttsEngine, request: EngineRequest) -> np.ndarray:
    """The whole audio of ``request`` from coqui's unbatched inference (chunks joined)."""
    return np.concatenate(list(coqui_stream(engine, request)))
