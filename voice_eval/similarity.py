"""Speaker similarity: cosine between Resemblyzer (GE2E) embeddings of the clip and the reference.

The encoder is :class:`data_prep.speaker.SpeakerEncoder`, the one the dataset speaker filter uses,
loaded once per process by :func:`load_encoder`. Its embeddings are unit vectors, so the cosine is
their dot product: about 1 for the same voice, lower for other voices (see docs/quality.md for the
figures measured on real speech).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from data_prep.speaker import SpeakerEncoder

ENCODER_NAME = "resemblyzer 0.1.4 GE2E VoiceEncoder"
ENCODER_SAMPLE_RATE_HZ = 16_000


@lru_cache(maxsize=1)
def load_encoder() -> SpeakerEncoder:
    """The speaker encoder, loaded (and warmed up) once per process."""
    return SpeakerEncoder(device="cpu")


def speaker_similarity(encoder: SpeakerEncoder, clip: np.ndarray, reference: np.ndarray) -> float:
    """Cosine similarity of the voices in two 16 kHz mono signals.

    Args:
        encoder: the speaker encoder.
        clip: the scored clip.
        reference: the recording of the voice the clip imitates.

    Returns:
        A value in ``[-1, 1]``; higher is more alike.
    """
    return float(np.dot(encoder.embed(clip), encoder.embed(reference)))
