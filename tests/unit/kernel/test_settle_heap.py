"""A serving process leaves what start-up built out of later garbage collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from transact.kernel.core import settle_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # this test process builds many kernels: let them be collected again


def test_settling_moves_the_live_heap_out_of_collections(unfrozen: None) -> None:
    gc.unfreeze()
    built_at_start = [object() for _ in range(100)]
    settle_heap()
    assert gc.get_freeze_count() >= len(built_at_start)
