"""The one set of status words of work that runs in the background (synthesis jobs, training runs, builds).

Each API keeps the words its clients know: a training run says ``finished`` for :attr:`Status.SUCCEEDED`
and a dataset says ``building``/``ready``; those map onto these states at the edge (see
:class:`serve_app.runs.ManagedRun`). A :class:`Status` is a ``str``, so it compares equal to the stored
word and is written to JSON as that word.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where a piece of background work stands."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"


ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})
