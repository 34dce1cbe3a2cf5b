"""Speaker embeddings (Resemblyzer's GE2E encoder, weights inside its wheel) and the main speaker.

The main speaker of a dataset is found without labels: starting from the mean of all clip
embeddings, the centroid is recomputed a few times from the half of the clips closest to it, which
settles on the voice that holds most of the clips.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EMBEDDING_DIM = 256
# Resemblyzer pads shorter input; below this, its own silence trimming may leave nothing.
_MIN_TRIMMED_SAMPLES = 8_000


class SpeakerEncoder:
    """Resemblyzer's voice encoder, loaded once.

    Args:
        device: ``cpu`` or ``cuda``.
    """

    def __init__(self, device: str = "cpu") -> None:
        from resemblyzer import VoiceEncoder

        self.encoder: Any = VoiceEncoder(device=device, verbose=False)
        # The first call compiles librosa's numba kernels (seconds); pay that here, not on a clip.
        self.embed(np.zeros(16_000, dtype=np.float32) + 1e-3 * np.sin(np.arange(16_000, dtype=np.float32)))

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """Embed 16 kHz mono speech.

        Args:
            audio: the clip.

        Returns:
            A unit-length ``float32`` vector of :data:`EMBEDDING_DIM` values.
        """
        from resemblyzer import preprocess_wav

        wav = preprocess_wav(np.asarray(audio, dtype=np.float32))
        if wav.size < _MIN_TRIMMED_SAMPLES:
            wav = np.asarray(audio, dtype=np.float32)
        vector = np.asarray(self.encoder.embed_utterance(wav), dtype=np.float32)
        return unit(vector)


def unit(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to length 1 (zero stays zero)."""
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def main_speaker(embeddings: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Centroid of the dominant voice among clip embeddings.

    Args:
        embeddings: ``(n, dim)`` unit vectors, ``n >= 1``.
        iterations: refinement rounds, each keeping the closer half.

    Returns:
        A unit vector.
    """
    vectors = np.asarray(embeddings, dtype=np.float64)
    centroid = unit(vectors.mean(axis=0))
    for _ in range(iterations):
        similarity = vectors @ centroid
        closest = vectors[similarity >= np.median(similarity)]
        centroid = unit(closest.mean(axis=0))
    return centroid


def similarities(embeddings: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """Cosine similarity of each embedding to the centroid."""
    return np.asarray(embeddings, dtype=np.float64) @ centroid
