"""Several engine requests decoded together in-process (no Serve): for benchmarks and tests.

The service batches through Serve (``TTSDeployment._decode_batched``); this drives
:meth:`serve_app.speech.engine.XttsEngine.decode` directly, as a replica given the same requests at once
would: requests advance piece by piece, round ``k`` decoding the ``k``-th piece of every request that has
one in one batch, with the silent gap between pieces that the replica puts there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def stream_batch(engine: Any, requests: list[Any]) -> Iterator[tuple[int, np.ndarray]]:
    """Decode ``requests`` (:class:`serve_app.speech.engine.EngineRequest`) together.

    Args:
        engine: a :class:`serve_app.speech.engine.XttsEngine`.
        requests: the requests, decoded in one batch per round of pieces.

    Yields:
        ``(request index, audio)`` as audio is made: streamed chunks, whole pieces and gaps.
    """
    from serve_app.speech.engine import PIECE_GAP_S

    items = [engine.items(request) for request in requests]
    gap = np.zeros(int(PIECE_GAP_S * engine.sample_rate), dtype=np.float32)
    for round_index in range(max(len(i) for i in items)):
        owners = [n for n, pieces in enumerate(items) if round_index < len(pieces)]
        if round_index:
            for owner in owners:
                yield owner, gap
        for event in engine.decode([items[n][round_index] for n in owners]):
            yield owners[event.index], event.audio


def synthesize_batch(engine: Any, requests: list[Any]) -> list[np.ndarray]:
    """The whole audio of each of ``requests`` decoded together (:func:`stream_batch`), in order."""
    parts: list[list[np.ndarray]] = [[] for _ in requests]
    for index, audio in stream_batch(engine, requests):
        parts[index].append(audio)
    return [np.concatenate(p) for p in parts]
