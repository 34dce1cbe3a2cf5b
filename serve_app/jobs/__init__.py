"""Synthesis jobs: long texts and subtitle files rendered in the background (``/jobs``), kept on disk."""
