"""Fixtures of the data-prep tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ray_head import RayHead, start_ray_head


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    """A private ``ray start --head`` cluster (2 CPUs, dashboard + Jobs API, auth off) for one module."""
    with start_ray_head(num_cpus=2) as head:
        yield head
