"""Shared core of the Audio Voice Service: settings, storage, audio I/O, XTTS loading, checkpoints."""
