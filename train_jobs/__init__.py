"""Ray Train jobs that fine-tune XTTS (not built yet)."""
