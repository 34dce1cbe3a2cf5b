"""Speech: ``/v1/audio/speech``, ``/tts`` and ``/tts/stream``.

The TTS replica (``service``), its engine and the batched decoder.
"""
