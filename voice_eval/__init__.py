"""Voice quality metrics for one synthesised clip: intelligibility, speaker similarity, signal checks.

``python -m voice_eval score --text T --language L --reference REF.wav CLIP.wav [--json]`` scores an
existing clip; :func:`voice_eval.score.score_clip` is the same as a function. Heavy imports (whisper,
Resemblyzer) happen inside the factories that load the models, so importing this package is cheap.
"""
