"""Helpers shared by the Ray Data stages: column checks and row <-> batch conversion.

Stages receive batches in Ray Data's ``numpy`` format (a dict of equal-length arrays; ragged audio
arrives as an object array of 1-D arrays) and return the same shape.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from voice_core.errors import VoiceError


class PipelineError(VoiceError, RuntimeError):
    """A stage received data it cannot work on (a bug in how the stages are wired together)."""

    error_type = "pipeline_error"


def require_columns(batch: Mapping[str, Any], stage: str, columns: Sequence[str]) -> None:
    """Check that a batch carries the columns a stage needs.

    Args:
        batch: the incoming batch.
        stage: the stage's name, used in the message.
        columns: the columns it needs.

    Raises:
        PipelineError: some columns are missing; the message names the stage and them.
    """
    missing = [name for name in columns if name not in batch]
    if missing:
        raise PipelineError(
            f"data-prep stage '{stage}' needs input column(s) {missing} but the batch has {sorted(batch)}; "
            "it must run after the stage that produces them"
        )


def batch_rows(batch: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield the rows of a column batch as dicts of Python scalars (arrays stay arrays)."""
    keys = list(batch)
    size = len(batch[keys[0]]) if keys else 0
    for index in range(size):
        yield {key: _scalar(batch[key][index]) for key in keys}


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def rows_to_batch(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Turn rows (dicts with the same keys) into a column batch.

    Arrays of equal shape are stacked; arrays of different lengths become an object array of
    arrays (Ray Data stores those as a variable-shaped tensor column).

    Args:
        rows: at least one row.

    Returns:
        The batch.
    """
    batch: dict[str, np.ndarray] = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        if isinstance(values[0], np.ndarray):
            if len({value.shape for value in values}) == 1:
                batch[key] = np.stack(values)
            else:
                column = np.empty(len(values), dtype=object)
                for index, value in enumerate(values):
                    column[index] = value
                batch[key] = column
        else:
            batch[key] = np.asarray(values)
    return batch


def row_values(row: Mapping[str, Any], columns: Mapping[str, type]) -> dict[str, Any]:
    """Columns of one row as plain Python values (``{"index": int, "text": str}`` -> ``{"index": 3, ...}``)."""
    return {name: kind(row[name]) for name, kind in columns.items()}
