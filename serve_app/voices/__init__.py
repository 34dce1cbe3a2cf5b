"""Voices: saved speakers (``/voices``), stored as reference clips plus their conditioning latents."""
